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
#   ROUNDS=3 (plaintext and mTLS alternate; medians are reported),
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
ROUNDS=${ROUNDS:-3}
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

# Rows of "rps p50 p99 cpu non2xx" per (mode, conns) in $OUT/rows-<mode>-<conns>.
for round in $(seq "$ROUNDS"); do
  for mode in DISABLE STRICT; do
    log "round $round/$ROUNDS: mesh with sidecar mtls: $mode"
    start_up "$mode" "$OUT/$mode-$round"
    measure "$mode-$round-c1" 1 >>"$OUT/rows-$mode-1"
    measure "$mode-$round-c$SAT_CONNS" "$SAT_CONNS" >>"$OUT/rows-$mode-$SAT_CONNS"
    if [ "$mode" = STRICT ] && [ "$round" = 1 ]; then
      # A client certificate of the mesh CA, made with openssl (SPIFFE URI SAN).
      ca=$OUT/$mode-$round/.infermesh/ca
      openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$OUT/client.key"
      openssl req -new -key "$OUT/client.key" -subj "/O=bench" -out "$OUT/client.csr" 2>/dev/null
      printf 'subjectAltName=URI:spiffe://cluster.local/ns/bench/sa/client\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n' >"$OUT/client.ext"
      openssl x509 -req -in "$OUT/client.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -CAcreateserial \
        -days 1 -extfile "$OUT/client.ext" -out "$OUT/client.pem" 2>/dev/null
      before=$(cpu_ticks "$UP_PID")
      "${LOAD_PIN[@]}" openssl s_time -connect "127.0.0.1:$SC" -new -time "$DURATION" \
        -cert "$OUT/client.pem" -key "$OUT/client.key" >"$OUT/s_time.txt" 2>&1 || true
      after=$(cpu_ticks "$UP_PID")
      HS_N=$(awk '/connections in [0-9.]+s;/ {print $1; exit}' "$OUT/s_time.txt")
      HS_CPU=$(python3 -c "print(round(($after-$before)/$TICKS*1e6/max(${HS_N:-0},1),1))")
    fi
    stop_up
  done
done

python3 - "$OUT" "$SAT_CONNS" "$ROUNDS" "$DURATION" "${HS_N:-0}" "${HS_CPU:-0}" "$PINNING" "$STAMP" <<'PY' | tee "$OUT/summary.md"
import os, statistics, sys
out, sat, rounds, duration, hs_n, hs_cpu, pinning, stamp = sys.argv[1:]
def rows(mode, conns):
    with open(os.path.join(out, f"rows-{mode}-{conns}")) as f:
        return [list(map(float, line.split())) for line in f if line.strip()]
def med(mode, conns):
    r = rows(mode, conns)
    return [statistics.median(col) for col in zip(*r)], sum(x[4] for x in r)
cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip()
print(f"mTLS benchmark {stamp} on {os.cpu_count()} CPUs ({cpu}); pinning: {pinning}; "
      f"load average at the end {open('/proc/loadavg').read().split()[0]}")
print(f"REST predict through the gateway, wrk {duration} s per row, medians of {rounds} rounds "
      "(plaintext and mTLS meshes alternate)")
print()
print("| hop | conns | req/s | p50 ms | p99 ms | CPU µs/req (whole `up`) | non-2xx (all rounds) |")
print("|---|---:|---:|---:|---:|---:|---:|")
res = {}
for conns in ("1", sat):
    for mode, name in (("DISABLE", "plaintext"), ("STRICT", "mTLS")):
        m, bad = med(mode, conns)
        res[(mode, conns)] = m
        print(f"| {name} | {conns} | {m[0]:.0f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:.1f} | {bad:.0f} |")
def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"
d1, s1, ds, ss = res[("DISABLE", "1")], res[("STRICT", "1")], res[("DISABLE", sat)], res[("STRICT", sat)]
print()
print(f"mTLS ÷ plaintext: p50 at 1 conn {ratio(s1[1], d1[1])} (+{(s1[1] - d1[1]) * 1000:.0f} µs), "
      f"CPU/req at 1 conn {ratio(s1[3], d1[3])}, throughput at {sat} conns {ratio(ss[0], ds[0])}, "
      f"CPU/req at {sat} conns {ratio(ss[3], ds[3])}")
n = int(hs_n or 0)
print(f"new mTLS handshakes at the STRICT sidecar (openssl s_time -new, client certificate, one "
      f"client, {duration} s): {n} = {n / float(duration):.0f}/s; the `up` process spent "
      f"{hs_cpu} µs CPU per handshake")
PY
