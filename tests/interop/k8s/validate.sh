#!/usr/bin/env bash
# Validates `infermesh export k8s` output against the Kubernetes OpenAPI schemas with
# the PyPI package kubernetes-validate (offline, strict: unknown fields are errors),
# and so the core kinds of `infermesh export istio` output (the ext_authz server:
# Namespace, ServiceAccount, ConfigMap, Deployment, Service, PodDisruptionBudget; the
# Istio kinds are filtered out first, as kubernetes-validate does not know Istio's
# CRDs: crates/infermesh-export/tests validate those against the CRD schemas). Checks
# that the committed deploy/k8s/infermesh.yaml is what the export writes, and that
# `kubectl kustomize deploy/k8s` renders the kustomize base into manifests that
# validate too (kubectl: any version with kustomize built in, e.g. Debian's
# kubernetes-client, which .ci/run installs). Ends with "N passed, M failed".
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
passed=0
failed=0
ok() { log "ok: $*"; passed=$((passed + 1)); }
fail() { log "FAILED: $*"; failed=$((failed + 1)); }
validate() { "$venv/bin/kubernetes-validate" --strict -k "$k8s_version" "$@"; }

for mesh in examples/kubernetes/mesh.yaml examples/quickstart/mesh.yaml; do
  file="$out/$(echo "$mesh" | tr / _)"
  (cd "$root" && "$INFERMESH_BIN" export k8s --config "$mesh" -o "$file" 2>/dev/null)
  if validate "$file"; then ok "export k8s $mesh"; else fail "export k8s $mesh"; fi
done

# export istio: keep the documents of no *.istio.io group (the ext_authz server both
# examples get, since their policies name models) and validate those.
for mesh in examples/kubernetes/mesh.yaml examples/quickstart/mesh.yaml; do
  file="$out/istio_$(echo "$mesh" | tr / _)"
  (cd "$root" && "$INFERMESH_BIN" export istio --config "$mesh" -o "$file" 2>/dev/null)
  if ! "$venv/bin/python" - "$file" "$file.core" <<'PY'
import sys
import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def istio(d):
    group = d.get("apiVersion", "").partition("/")[0]
    return group.endswith(".istio.io")
core = [d for d in docs if not istio(d)]
kinds = sorted({d["kind"] for d in core})
want = sorted(["ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget",
               "Service", "ServiceAccount"])
if kinds != want:
    sys.exit(f"core kinds {kinds}, expected {want}")
with open(sys.argv[2], "w") as f:
    yaml.safe_dump_all(core, f, sort_keys=False)
print(f"[k8s-validate] export istio: {len(core)} core of {len(docs)} documents",
      file=sys.stderr)
PY
  then
    fail "export istio $mesh: filtering the core kinds"
  elif validate "$file.core"; then
    ok "export istio $mesh (core kinds)"
  else
    fail "export istio $mesh (core kinds)"
  fi
done

(cd "$root" && "$INFERMESH_BIN" export k8s --config examples/kubernetes/mesh.yaml -o "$out/deploy.yaml" 2>/dev/null)
if diff -u "$root/deploy/k8s/infermesh.yaml" "$out/deploy.yaml"; then
  ok "deploy/k8s/infermesh.yaml is current"
else
  fail "deploy/k8s/infermesh.yaml is stale: regenerate it (see deploy/k8s/kustomization.yaml)"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  fail "kubectl not found (install Debian's kubernetes-client)"
elif ! (cd "$root" && kubectl kustomize deploy/k8s >"$out/kustomized.yaml"); then
  fail "kubectl kustomize deploy/k8s"
else
  # The base must render every exported object, with the image the kustomization sets.
  want="$(grep -c '^kind: ' "$out/deploy.yaml")"
  got="$(grep -c '^kind: ' "$out/kustomized.yaml")"
  if [ "$want" != "$got" ]; then
    fail "kustomize rendered $got objects, the export has $want"
  elif ! grep -q 'image: infermesh:0.1.0' "$out/kustomized.yaml"; then
    fail "kustomize output lacks the kustomization's image infermesh:0.1.0"
  elif validate "$out/kustomized.yaml"; then
    ok "kubectl kustomize deploy/k8s ($got objects)"
  else
    fail "kubectl kustomize deploy/k8s output"
  fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
