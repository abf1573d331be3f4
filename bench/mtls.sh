#!/usr/bin/env bash
# infermesh mTLS benchmark: what the gateway → sidecar mTLS hop adds over a plaintext
# hop, side by side in one run on 127.0.0.1. Two `infermesh up` meshes, one after the
# other, differ only in the sidecar's `mtls` mode (DISABLE: plaintext hop; STRICT: mTLS
# hop); each gets REST predicts through the gateway with wrk, at one connection
# (latency) and at saturation (throughput), and the CPU time of the whole `up` process
# per request. Then the rate of new mTLS handshakes the STRICT sidecar completes
# (`openssl s_time -new` with a client certificate of the mesh CA), and its CPU per
# handshake. Results and ratios: "mTLS hop vs plaintext hop" in bench/README.md.
#
# Usage: bench/mtls.sh [--no-build]
# Settings (environment): DURATION=10 (s per measurement), SAT_CONNS=32, WARMUP=2,
#   PIN=1 (up on CPU 1, load tool on CPU 0, with taskset)
# Raw output: bench/mtls/out/<UTC timestamp>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
DURATION=${DURATION:-10}
SAT_CONNS=${SAT_CONNS:-32}
WARMUP=${WARMUP:-2}
PIN=${PIN:-1}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
INFERMESH=$TARGET/release/infermesh
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  SERVER_PIN=(taskset -c 1) LOAD_PIN=(taskset -c 0)
  PINNING="up on CPU 1, load tool on CPU 0"
else
  SERVER_PIN=() LOAD_PIN=() PINNING="none"
fi
log() { echo "[mtls-bench] $*" >&2; }
die() { echo "[mtls-bench] error: $*" >&2; exit 1; }
for tool in wrk openssl curl python3; do
  command -v "$tool" >/dev/null || die "missing $tool (apt-get install wrk openssl curl python3)"
done
if [ "$BUILD" = 1 ]; then
  log "cargo build --release -p infermesh"
  cargo build --release -p infermesh >&2
fi
[ -x "$INFERMESH" ] || die "no $INFERMESH (build it, or set CARGO_TARGET_DIR)"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/mtls/out/$STAMP
mkdir -p "$OUT"
PATH_REST=/v1/models/half_plus_two/versions/1:predict
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

UP_PID=
stop_up() {
  if [ -n "$UP_PID" ]; then kill "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; UP_PID=; fi
}
trap stop_up EXIT

# cpu_ticks PID: utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)

# start_up MODE DIR: writes a mesh and starts `infermesh up` in DIR; sets GW, SC.
start_up() {
  local mode=$1 dir=$2
  mkdir -p "$dir"
  GW=$(port) SC=$(port)
  local rest grpc
  rest=$(port) grpc=$(port)
  cat > "$dir/mesh.yaml" <<EOF
workloads:
  - name: tfserving-a
    namespace: ml
    service_account: tfserving
    listen: 127.0.0.1:$SC
    mtls: $mode
    upstream: {rest: 127.0.0.1:$rest, grpc: 127.0.0.1:$grpc}
    model_server: {model_config_file: $ROOT/examples/models/models.config}
models:
  - {name: half_plus_two, served_by: tfserving-a, versions: [1, 2]}
gateway: {listen: [127.0.0.1:$GW]}
authorization: {default_deny: false}
EOF
  (cd "$dir" && INFERMESH_LOG=warn exec "${SERVER_PIN[@]}" "$INFERMESH" up --config mesh.yaml \
     >"$dir/up.out" 2>"$dir/up.err") &
  UP_PID=$!
  for _ in $(seq 100); do
    if curl -sf -X POST "http://127.0.0.1:$GW$PATH_REST" -d '{"instances":[1.0]}' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  die "mesh ($mode) did not start: $(tail -5 "$dir/up.err")"
}

# measure NAME CONNS: wrk through the gateway; prints "rps p50_ms p99_ms cpu_us_per_req".
measure() {
  local name=$1 conns=$2 threads=1
  "${LOAD_PIN[@]}" wrk -t1 -c"$conns" -d"${WARMUP}s" -s bench/wrk/predict.lua \
    "http://127.0.0.1:$GW$PATH_REST" >/dev/null
  local before after
  before=$(cpu_ticks "$UP_PID")
  "${LOAD_PIN[@]}" wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s bench/wrk/predict.lua \
    "http://127.0.0.1:$GW$PATH_REST" >"$OUT/$name.wrk"
  after=$(cpu_ticks "$UP_PID")
  python3 - "$OUT/$name.wrk" "$((after - before))" "$TICKS" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
pct = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)", text, re.M)}
reqs = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
bad = int(errors.group(1)) if errors else 0
cpu_us = ticks / hz * 1e6 / max(reqs, 1)
print(f"{rps:.0f} {pct['50']:.3f} {pct['99']:.3f} {cpu_us:.1f} {bad}")
PY
}

declare -A RESULT
for mode in DISABLE STRICT; do
  log "mesh with sidecar mtls: $mode"
  start_up "$mode" "$OUT/$mode"
  RESULT[$mode.c1]=$(measure "$mode-c1" 1)
  RESULT[$mode.sat]=$(measure "$mode-c$SAT_CONNS" "$SAT_CONNS")
  if [ "$mode" = STRICT ]; then
    # A client certificate of the mesh CA, made with openssl (SPIFFE URI SAN).
    ca=$OUT/$mode/.infermesh/ca
    openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$OUT/client.key"
    openssl req -new -key "$OUT/client.key" -subj "/O=bench" -out "$OUT/client.csr" 2>/dev/null
    printf 'subjectAltName=URI:spiffe://cluster.local/ns/bench/sa/client\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n' >"$OUT/client.ext"
    openssl x509 -req -in "$OUT/client.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -CAcreateserial \
      -days 1 -extfile "$OUT/client.ext" -out "$OUT/client.pem" 2>/dev/null
    before=$(cpu_ticks "$UP_PID")
    "${LOAD_PIN[@]}" openssl s_time -connect "127.0.0.1:$SC" -new -time "$DURATION" \
      -cert "$OUT/client.pem" -key "$OUT/client.key" >"$OUT/s_time.txt" 2>&1 || true
    after=$(cpu_ticks "$UP_PID")
    conns=$(awk '/connections in [0-9.]+s;/ {print $1; exit}' "$OUT/s_time.txt")
    rate=$(awk '/connections\/user sec/ {print $0; exit}' "$OUT/s_time.txt" | grep -o '[0-9.]* connections/user sec' | awk '{print $1}')
    RESULT[handshakes]="${conns:-0} ${rate:-0} $(python3 -c "print(round(($after-$before)/$TICKS*1e6/max(${conns:-0},1),1))")"
  fi
  stop_up
done

read -r d1_rps d1_p50 d1_p99 d1_cpu d1_bad <<<"${RESULT[DISABLE.c1]}"
read -r s1_rps s1_p50 s1_p99 s1_cpu s1_bad <<<"${RESULT[STRICT.c1]}"
read -r ds_rps ds_p50 ds_p99 ds_cpu ds_bad <<<"${RESULT[DISABLE.sat]}"
read -r ss_rps ss_p50 ss_p99 ss_cpu ss_bad <<<"${RESULT[STRICT.sat]}"
read -r hs_n hs_rate hs_cpu <<<"${RESULT[handshakes]}"
ratio() { python3 -c "print(f'{$1/$2:.2f}' if $2 else 'n/a')"; }
{
  echo "mTLS benchmark $STAMP on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); pinning: $PINNING"
  echo "REST predict through the gateway, wrk ${DURATION}s per row (non-2xx in the last column)"
  echo
  echo "| hop | conns | req/s | p50 ms | p99 ms | CPU µs/req (whole up) | non-2xx |"
  echo "|---|---|---|---|---|---|---|"
  echo "| plaintext | 1 | $d1_rps | $d1_p50 | $d1_p99 | $d1_cpu | $d1_bad |"
  echo "| mTLS | 1 | $s1_rps | $s1_p50 | $s1_p99 | $s1_cpu | $s1_bad |"
  echo "| plaintext | $SAT_CONNS | $ds_rps | $ds_p50 | $ds_p99 | $ds_cpu | $ds_bad |"
  echo "| mTLS | $SAT_CONNS | $ss_rps | $ss_p50 | $ss_p99 | $ss_cpu | $ss_bad |"
  echo
  echo "mTLS ÷ plaintext: p50 at 1 conn $(ratio "$s1_p50" "$d1_p50"), CPU/req at 1 conn $(ratio "$s1_cpu" "$d1_cpu"), throughput at $SAT_CONNS conns $(ratio "$ss_rps" "$ds_rps"), CPU/req at $SAT_CONNS conns $(ratio "$ss_cpu" "$ds_cpu")"
  echo "new mTLS handshakes at the STRICT sidecar (openssl s_time -new, ${DURATION}s, client cert): $hs_n in ${DURATION}s, $hs_rate/s per client CPU second, sidecar-side CPU $hs_cpu µs/handshake"
} | tee "$OUT/summary.md"
