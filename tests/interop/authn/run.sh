#!/usr/bin/env bash
# Authentication interop tests: tokens minted by third-party code, verified by the
# infermesh Authenticator (`cargo run -p infermesh-authn --example verify`).
#   (a) PyJWT (+ cryptography) tokens: every algorithm, every rejection case,
#       JWKS outage, key rotation                              → pyjwt_cases.py
#   (b) a real OIDC provider (npm oidc-provider) on 127.0.0.1, client-credentials
#       grant, JWT access tokens; outage and rotation          → oidc_provider_cases.mjs
#
#   tests/interop/authn/run.sh
#
# Environment:
#   INFERMESH_VENV     venv shared with ../run.sh (default ~/.cache/infermesh/venv);
#                      PyJWT is added to it if missing (requirements.txt here)
#   AUTHN_VERIFY_BIN   prebuilt verify example (default: cargo build it)
# Node/npm missing → part (b) is skipped with a reason (not a failure).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${INFERMESH_VENV:-$HOME/.cache/infermesh/venv}"
log() { printf '[authn-interop] %s\n' "$*" >&2; }

# --- the verifier ---
if [ -z "${AUTHN_VERIFY_BIN:-}" ]; then
  log "building: cargo build -p infermesh-authn --example verify"
  (cd "$root" && cargo build -q -p infermesh-authn --example verify)
  AUTHN_VERIFY_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/examples/verify"
fi
[ -x "$AUTHN_VERIFY_BIN" ] || { log "verify binary not found: $AUTHN_VERIFY_BIN"; exit 1; }

passed=0; failed=0; skipped=0
tally() { # name, exit code
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); log "$1: ok"; else failed=$((failed + 1)); log "$1: FAILED"; fi
}

# --- (a) PyJWT ---
if [ ! -x "$venv/bin/python" ]; then
  py="$(command -v python3.11 || command -v python3 || true)"
  [ -n "$py" ] || { log "no python3 found"; exit 1; }
  log "creating venv $venv"
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import jwt, cryptography' >/dev/null 2>&1; then
  log "installing PyJWT into $venv"
  "$venv/bin/python" -m pip --disable-pip-version-check --no-input install -q -r "$here/requirements.txt"
fi
set +e
timeout 120 "$venv/bin/python" "$here/pyjwt_cases.py" "$AUTHN_VERIFY_BIN"
tally pyjwt $?
set -e

# --- (b) oidc-provider ---
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "SKIP oidc-provider: node/npm not installed (apt-get install nodejs npm)"
  skipped=$((skipped + 1))
else
  want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
  stamp="$here/node_modules/.infermesh-lock-sha256"
  if [ ! -d "$here/node_modules/oidc-provider" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "npm ci (oidc-provider, pinned in package-lock.json)"
    (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" > "$stamp"
  fi
  set +e
  (cd "$here" && timeout 120 node oidc_provider_cases.mjs "$AUTHN_VERIFY_BIN")
  tally oidc-provider $?
  set -e
fi

echo "authn-interop: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
