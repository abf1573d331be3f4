#!/usr/bin/env bash
# Validates `infermesh export k8s` output against the Kubernetes OpenAPI schemas with
# the PyPI package kubernetes-validate (offline, strict: unknown fields are errors),
# and checks that the committed deploy/k8s/infermesh.yaml is what the export writes.
#
#   tests/interop/k8s/validate.sh
#
# Environment (as tests/interop/run.sh):
#   INFERMESH_VENV   venv to install into (default: ~/.cache/infermesh/venv; created
#                    with python3 if missing)
#   INFERMESH_BIN    binary to test (default: cargo build -p infermesh)
#   K8S_VERSION      Kubernetes schema version (default: 1.32)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${INFERMESH_VENV:-$HOME/.cache/infermesh/venv}"
k8s_version="${K8S_VERSION:-1.32}"
log() { printf '[k8s-validate] %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating venv $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
  log "installing kubernetes-validate"
  "$venv/bin/python" -m pip --disable-pip-version-check --no-input install -q 'kubernetes-validate==1.37.0'
fi

if [ -z "${INFERMESH_BIN:-}" ]; then
  (cd "$root" && cargo build -q -p infermesh)
  INFERMESH_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/infermesh"
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
rc=0
for mesh in examples/kubernetes/mesh.yaml examples/quickstart/mesh.yaml; do
  file="$out/$(echo "$mesh" | tr / _)"
  (cd "$root" && "$INFERMESH_BIN" export k8s --config "$mesh" -o "$file" 2>/dev/null)
  if "$venv/bin/kubernetes-validate" --strict -k "$k8s_version" "$file"; then
    log "ok: $mesh"
  else
    log "FAILED: $mesh"; rc=1
  fi
done
(cd "$root" && "$INFERMESH_BIN" export k8s --config examples/kubernetes/mesh.yaml -o "$out/deploy.yaml" 2>/dev/null)
if ! diff -u "$root/deploy/k8s/infermesh.yaml" "$out/deploy.yaml"; then
  log "deploy/k8s/infermesh.yaml is stale: regenerate it (see deploy/k8s/kustomization.yaml)"
  rc=1
fi
if [ "$rc" -eq 0 ]; then echo "2 passed, 0 failed"; fi
exit "$rc"
