#!/usr/bin/env bash
# Validates `infermesh export k8s` output against the Kubernetes OpenAPI schemas with
# the PyPI package kubernetes-validate (offline, strict: unknown fields are errors),
# checks that the committed deploy/k8s/infermesh.yaml is what the export writes, and
# that `kubectl kustomize deploy/k8s` renders the kustomize base into manifests that
# validate too (kubectl: any version with kustomize built in, e.g. Debian's
# kubernetes-client, which .ci/run installs).
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
if ! command -v kubectl >/dev/null 2>&1; then
  log "FAILED: kubectl not found (install Debian's kubernetes-client)"; rc=1
elif ! (cd "$root" && kubectl kustomize deploy/k8s >"$out/kustomized.yaml"); then
  log "FAILED: kubectl kustomize deploy/k8s"; rc=1
else
  # The base must render every exported object, with the image the kustomization sets.
  want="$(grep -c '^kind: ' "$out/deploy.yaml")"
  got="$(grep -c '^kind: ' "$out/kustomized.yaml")"
  if [ "$want" != "$got" ]; then
    log "FAILED: kustomize rendered $got objects, the export has $want"; rc=1
  elif ! grep -q 'image: infermesh:0.1.0' "$out/kustomized.yaml"; then
    log "FAILED: kustomize output lacks the kustomization's image infermesh:0.1.0"; rc=1
  elif "$venv/bin/kubernetes-validate" --strict -k "$k8s_version" "$out/kustomized.yaml"; then
    log "ok: kubectl kustomize deploy/k8s ($got objects)"
  else
    log "FAILED: kubectl kustomize deploy/k8s output"; rc=1
  fi
fi
if [ "$rc" -eq 0 ]; then echo "3 passed, 0 failed"; fi
exit "$rc"
