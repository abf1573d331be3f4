#!/usr/bin/env bash
# Authentication interop through the real mesh: tokens minted by third-party code are
# sent to the gateway of `infermesh up --config <tmp mesh.yaml>` (gateway → sidecar →
# embedded model server, examples/models/models.config) on free 127.0.0.1 ports; the
# mesh trusts the test's issuer, allows its request principals to predict
# half_plus_two, and denies everything else (default deny). REST and gRPC statuses are
# asserted (valid → 200 / OK; bad token → 401 + `WWW-Authenticate: Bearer
# error="invalid_token"` / UNAUTHENTICATED; no token → 403 / PERMISSION_DENIED).
#   (a) PyJWT (+ cryptography) tokens, JWKS from a loopback HTTP server (jwks_uri):
#       every algorithm, every rejection case, JWKS outage, key rotation → pyjwt_cases.py
#   (b) a real OIDC provider (npm oidc-provider, oidc_provider.mjs) on 127.0.0.1,
#       client-credentials grant, JWT access tokens, keys by OIDC discovery;
#       outage and rotation                                          → oidc_provider_cases.py
#
#   tests/interop/authn/run.sh
#
# Environment:
#   INFERMESH_BIN      the binary to test (default: cargo build -p infermesh, then
#                      ${CARGO_TARGET_DIR:-<repo>/target}/debug/infermesh)
#   INFERMESH_VENV     venv shared with ../run.sh (default ~/.cache/infermesh/venv). It
#                      needs grpc + tensorflow-serving-api (set up by ../run.sh, which is
#                      run here to prepare it if they are missing) and PyJWT
#                      (requirements.txt here, added if missing).
# Node/npm missing → part (b) is skipped with a reason (not a failure).
# Prints `authn-interop: N passed, N failed` (checks summed over the parts) last; exits
# non-zero on any failure. Each part runs under `timeout`; the parts stop every process
# they start (and those die with them if they are killed).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${INFERMESH_VENV:-$HOME/.cache/infermesh/venv}"
PART_TIMEOUT_S=300
log() { printf '[authn-interop] %s\n' "$*" >&2; }

# --- the binary ---
if [ -z "${INFERMESH_BIN:-}" ]; then
  log "building: cargo build -p infermesh"
  (cd "$root" && cargo build -q -p infermesh)
  INFERMESH_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/infermesh"
fi
[ -x "$INFERMESH_BIN" ] || { log "infermesh binary not found: $INFERMESH_BIN"; exit 1; }
export INFERMESH_BIN
log "binary: $INFERMESH_BIN"

# --- the venv ---
if ! "$venv/bin/python" -c 'import grpc, tensorflow_serving.apis.predict_pb2' >/dev/null 2>&1; then
  log "venv $venv lacks grpc / tensorflow-serving-api: preparing it with ../run.sh --collect-only"
  INFERMESH_VENV="$venv" bash "$here/../run.sh" --collect-only -q >/dev/null
fi
if ! "$venv/bin/python" -c 'import jwt, cryptography' >/dev/null 2>&1; then
  log "installing PyJWT into $venv"
  "$venv/bin/python" -m pip --disable-pip-version-check --no-input install -q -r "$here/requirements.txt"
fi

passed=0; failed=0
run_part() { # name, command...: adds the part's "<name>: N passed, N failed" to the totals
  local name="$1"; shift
  local out rc summary
  out="$(mktemp)"
  set +e
  (cd "$here" && TF_CPP_MIN_LOG_LEVEL=2 timeout -k 10 "$PART_TIMEOUT_S" "$@") 2>&1 | tee "$out" \
    | grep -v -e 'oneDNN custom operations' -e 'cpu_feature_guard' -e 'To enable the following instructions'
  rc=${PIPESTATUS[0]}
  set -e
  summary="$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed$" "$out" | tail -n 1 || true)"
  rm -f "$out"
  if [ -n "$summary" ]; then
    passed=$((passed + $(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$summary")))
    failed=$((failed + $(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$summary")))
  fi
  if [ "$rc" -ne 0 ] && { [ -z "$summary" ] || [ "$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$summary")" -eq 0 ]; }; then
    failed=$((failed + 1))  # crashed or timed out without reporting its failures
    log "$name: exited with $rc (124: timed out after ${PART_TIMEOUT_S}s)"
  fi
  log "part $name: exit $rc${summary:+ ($summary)}"
}

# --- (a) PyJWT ---
run_part pyjwt "$venv/bin/python" pyjwt_cases.py

# --- (b) oidc-provider ---
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "SKIP oidc-provider: node/npm not installed (apt-get install nodejs npm)"
else
  want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
  stamp="$here/node_modules/.infermesh-lock-sha256"
  if [ ! -d "$here/node_modules/oidc-provider" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "npm ci (oidc-provider, pinned in package-lock.json)"
    (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" > "$stamp"
  fi
  run_part oidc-provider "$venv/bin/python" oidc_provider_cases.py
fi

echo "authn-interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
