#!/usr/bin/env bash
# infermesh audit benchmark: REST Predict of half_plus_two through gateway → sidecar →
# model server at 64 concurrent connections, with the audit trail off, relaxed and
# strict, side by side in one run (the modes alternate within each round). Prints
# req/s and p99 per mode and the ratio to "off", paired per round, median over rounds.
# See "Audit trail: off vs relaxed vs strict" in bench/README.md.
#
# Usage: bench/audit.sh [--no-build]
# Settings (environment):
#   CONNS=64 connections   THREADS=2 wrk threads   DURATION=6 seconds per measurement
#   WARMUP=2 seconds       ROUNDS=3                INFERMESH=<binary> (default: the
#   release binary of $CARGO_TARGET_DIR or target/)
#   HOPS=2: gateway → sidecar → model server, both proxies auditing (default);
#   HOPS=1: gateway → model server (the workload's endpoint is the model server), one
#           auditing proxy
#   HOPS=up: gateway → sidecar → embedded model server, all in one `infermesh up`
#           process: the quickstart's topology, both hops writing one trail
# Raw output: bench/audit/out/<UTC timestamp>/ (bench/audit/out/latest points at it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
HOPS=${HOPS:-2}
INFERMESH=${INFERMESH:-${CARGO_TARGET_DIR:-$ROOT/target}/release/infermesh}
REST_PATH=/v1/models/half_plus_two/versions/1:predict
REST_BODY='{"instances": [1.0, 2.0, 5.0]}'
REST_EXPECT='{"predictions":[2.5,3.0,4.5]}'
TOOL=(python3 "$ROOT/bench/mesh/tool.py")

log() { echo "[audit-bench] $*" >&2; }
die() { echo "[audit-bench] error: $*" >&2; exit 1; }

command -v wrk >/dev/null || {
  [ "$(id -u)" = 0 ] || die "missing wrk: apt-get install wrk"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
if [ "$BUILD" = 1 ]; then
  log "cargo build --release -p infermesh"
  cargo build --release -p infermesh || die "release build failed"
fi
[ -x "$INFERMESH" ] || die "$INFERMESH not built"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/audit/out/$STAMP
mkdir -p "$OUT"
ln -sfn "$STAMP" "$ROOT/bench/audit/out/latest"
ln "$INFERMESH" "$OUT/infermesh" 2>/dev/null || cp "$INFERMESH" "$OUT/infermesh"
INFERMESH=$OUT/infermesh
RESULTS=$OUT/results.tsv
printf 'round\tmode\treq_s\tp50_ms\tp99_ms\terrors\n' >"$RESULTS"

PIDS=()
stop_pids() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  PIDS=()
}
MS_PID=
cleanup() { stop_pids; [ -z "$MS_PID" ] || kill -TERM "$MS_PID" 2>/dev/null || true; rm -f "$OUT/infermesh"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # what timeout command...
  local what=$1 deadline=$((SECONDS + $2)); shift 2
  while [ $SECONDS -lt $deadline ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.3; done
  die "$what did not answer in time (see $OUT/*.stderr)"
}
rest_ok() {
  [ "$(curl -s --max-time 2 -X POST -H 'Content-Type: application/json' -d "$REST_BODY" "$1" | tr -d ' \r\n')" = "$REST_EXPECT" ]
}

mapfile -t P < <("${TOOL[@]}" ports 4)
MS_REST=${P[0]} MS_GRPC=${P[1]} SIDECAR=${P[2]} GATEWAY=${P[3]}
if [ "$HOPS" != up ]; then
  log "starting the model server (REST $MS_REST)"
  "$INFERMESH" model-server --port "$MS_GRPC" --rest-api-port "$MS_REST" \
    --model-config-file "$ROOT/examples/models/models.config" \
    >"$OUT/model-server.stdout" 2>"$OUT/model-server.stderr" &
  MS_PID=$!
  wait_for "model server" 120 rest_ok "http://127.0.0.1:$MS_REST$REST_PATH"
fi

mesh_yaml() { # mode dir
  cat <<YAML
workloads:
  - name: tfserving-a
    listen: 127.0.0.1:$SIDECAR
    upstream: {rest: 127.0.0.1:$MS_REST, grpc: 127.0.0.1:$MS_GRPC}
$([ "$HOPS" = 1 ] && echo "    endpoints: [127.0.0.1:$MS_REST]")
$([ "$HOPS" = up ] && echo "    model_server: {model_config_file: $ROOT/examples/models/models.config}")
models:
  - name: half_plus_two
    served_by: tfserving-a
    versions: [{version: 1, label: stable}, {version: 2, label: canary}]
    route: {split: {stable: 100}, timeout: 10s}
gateway: {listen: [127.0.0.1:$GATEWAY]}
authorization: {default_deny: false}
YAML
  if [ "$1" != off ]; then
    echo "audit: {dir: $2/audit, durability: $1}"
  fi
}

wrk_ms() { # "12.34ms" | "870.00us" | "1.20s" -> milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}

measure() { # round mode
  local round=$1 mode=$2 dir=$OUT/$1-$2
  mkdir -p "$dir"
  mesh_yaml "$mode" "$dir" >"$dir/mesh.yaml"
  if [ "$HOPS" = up ]; then # one process; its log stands in for the gateway's
    "$INFERMESH" up --config "$dir/mesh.yaml" --state-dir "$dir/state" \
      >"$dir/gateway.stdout" 2>"$dir/gateway.stderr" &
    PIDS+=($!)
  else
    if [ "$HOPS" = 2 ]; then
      "$INFERMESH" sidecar --config "$dir/mesh.yaml" --workload tfserving-a \
        >"$dir/sidecar.stdout" 2>"$dir/sidecar.stderr" &
      PIDS+=($!)
    fi
    "$INFERMESH" gateway --config "$dir/mesh.yaml" >"$dir/gateway.stdout" 2>"$dir/gateway.stderr" &
    PIDS+=($!)
  fi
  local url=http://127.0.0.1:$GATEWAY$REST_PATH
  wait_for "gateway ($mode)" 60 rest_ok "$url"
  wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s bench/wrk/predict.lua "$url" >/dev/null
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s bench/wrk/predict.lua "$url" >"$dir/wrk.txt"
  stop_pids
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$dir/wrk.txt")
  p50=$(wrk_ms "$(awk '$1 == "50%" { print $2 }' "$dir/wrk.txt")")
  p99=$(wrk_ms "$(awk '$1 == "99%" { print $2 }' "$dir/wrk.txt")")
  errors=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) n += $i } END { print n + 0 }' "$dir/wrk.txt")
  if [ "$mode" != off ]; then
    "$INFERMESH" audit verify "$dir/audit" --public-key "$dir/audit/audit.pub" >"$dir/verify.txt" \
      || die "the $mode trail does not verify: $(cat "$dir/verify.txt")"
    du -sh "$dir/audit" >"$dir/trail-size.txt"
    rm -rf "$dir/audit" # hundreds of MB per measurement
  fi
  local commits=
  if [ "$mode" != off ]; then # the gateway's "audit trail closed" line: records per fsync
    commits=$(grep -h "audit trail closed" "$dir/gateway.stderr" | sed 's/\x1b\[[0-9;]*m//g' \
      | grep -o 'records=[0-9]* fsyncs=[0-9]*' | head -1)
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$rps" "$p50" "$p99" "$errors" >>"$RESULTS"
  log "round $round $mode: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors $errors${commits:+, gateway trail: $commits}"
}

fsync_probe() { # p50 / p99 of 300 write(3 KB) + fdatasync on the trail's file system
  python3 - "$OUT/fsync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
ts = []
for _ in range(300):
    t = time.perf_counter(); os.write(fd, b"x" * 3000); os.fdatasync(fd); ts.append(time.perf_counter() - t)
os.close(fd); os.remove(sys.argv[1]); ts.sort()
print("p50 %.2f ms, p99 %.2f ms" % (ts[150] * 1e3, ts[297] * 1e3))
PY
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "fdatasync of 3 KB before: $(fsync_probe)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "filesystem of the trail: $(df -T "$OUT" | awk 'NR == 2 { print $2 }')"
  case "$HOPS" in
    1) echo "topology: HOPS=1 (gateway → model server)" ;;
    up) echo "topology: HOPS=up (gateway → sidecar → embedded model server, one process, one trail)" ;;
    *) echo "topology: HOPS=2 (gateway → sidecar → model server, two trails)" ;;
  esac
  echo "wrk: $CONNS connections, $THREADS threads, ${DURATION}s per measurement, ${ROUNDS} rounds"
} >"$OUT/machine.txt"

for round in $(seq "$ROUNDS"); do
  for mode in off relaxed strict; do measure "$round" "$mode"; done
done

python3 - "$RESULTS" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault(r["mode"], {})[r["round"]] = r
off = by["off"]
print("| mode | req/s (median) | p50 ms | p99 ms | errors | ratio to off (paired, median) |")
print("|---|---|---|---|---|---|")
for mode in ["off", "relaxed", "strict"]:
    rs = by[mode]
    med = lambda k: statistics.median(float(r[k]) for r in rs.values())
    ratios = [float(rs[k]["req_s"]) / float(off[k]["req_s"]) for k in rs if k in off]
    errs = sum(int(r["errors"]) for r in rs.values())
    print(f"| {mode} | {med('req_s'):.0f} | {med('p50_ms'):.2f} | {med('p99_ms'):.2f} | {errs} | {statistics.median(ratios):.2f} |")
PY
echo "fdatasync of 3 KB after: $(fsync_probe)" >>"$OUT/machine.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2
log "raw output: $OUT"
