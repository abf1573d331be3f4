#!/usr/bin/env bash
# Runs the interoperability tests: the real TensorFlow Serving Python client
# (tensorflow-serving-api) against the infermesh binary.
#
#   tests/interop/run.sh [pytest args...]
#
# Environment:
#   INFERMESH_VENV        venv to create/reuse (default: ~/.cache/infermesh/venv, outside the clone)
#   INFERMESH_PYTHON      interpreter for a new venv (default: python3.11, else python3)
#   INFERMESH_BIN         binary to test (default: build it with `cargo build -p infermesh`
#                         and use ${CARGO_TARGET_DIR:-<repo>/target}/debug/infermesh)
#   INFERMESH_SHARED_DIR  shared/ folder with the TF test models (default: <repo>/../shared)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${INFERMESH_VENV:-$HOME/.cache/infermesh/venv}"

log() { printf '[interop] %s\n' "$*" >&2; }

pick_python() {
  if [ -n "${INFERMESH_PYTHON:-}" ]; then echo "$INFERMESH_PYTHON"; return; fi
  for p in python3.11 python3; do
    if command -v "$p" >/dev/null 2>&1; then command -v "$p"; return; fi
  done
  log "no python3 found"; exit 1
}

# --- the venv (reused while the pinned requirements are unchanged) ---
stamp_of() {
  cat "$here/requirements.txt" "$here/requirements-nodeps.txt" "$here/constraints.txt" \
    | sha256sum | cut -d' ' -f1
}
want_stamp="$(stamp_of)"
stamp_file="$venv/.infermesh-requirements"

venv_ok() {
  [ -x "$venv/bin/python" ] \
    && [ "$(cat "$stamp_file" 2>/dev/null)" = "$want_stamp" ] \
    && "$venv/bin/python" -c 'import grpc, pytest, requests, tensorflow_serving.apis.predict_pb2' >/dev/null 2>&1
}

if venv_ok; then
  log "reusing venv $venv"
else
  py="$(pick_python)"
  if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "python venv module missing; installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  log "creating venv $venv with $("$py" --version 2>&1)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv"
  pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
  "${pip[@]}" install -q -r "$here/requirements.txt" -c "$here/constraints.txt"
  "${pip[@]}" install -q --no-deps -r "$here/requirements-nodeps.txt"
  "$venv/bin/python" -c 'import tensorflow_serving.apis.predict_pb2, grpc, tensorflow as tf; print("tensorflow", tf.__version__, "grpcio", grpc.__version__)' 2>/dev/null
  echo "$want_stamp" > "$stamp_file"
fi

# --- the binary ---
if [ -z "${INFERMESH_BIN:-}" ]; then
  log "building the binary: cargo build -p infermesh"
  (cd "$root" && cargo build -p infermesh)
  export INFERMESH_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/infermesh"
fi
if [ ! -x "$INFERMESH_BIN" ]; then
  log "binary not found: $INFERMESH_BIN"; exit 1
fi
log "binary: $INFERMESH_BIN"

# --- the tests ---
cd "$here"
set +e
TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  log "pytest collected no tests: treated as a failure"
  exit 1
fi
exit "$rc"
