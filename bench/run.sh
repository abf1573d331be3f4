#!/usr/bin/env bash
# infermesh model-server benchmark: REST and gRPC Predict of half_plus_two against
# `infermesh model-server` and against the ceiling (a minimal hyper server answering a
# fixed body), side by side in one run on 127.0.0.1. See bench/README.md.
#
# Usage: bench/run.sh [--ceiling-only] [--no-build] [--perf]
#   --ceiling-only  measure only the ceiling (when infermesh does not build)
#   --no-build      use the binaries already in target/release
#   --perf          after the measurements, record a `perf` profile of infermesh under
#                   REST load at the highest connection count (not part of the numbers)
# Settings (environment):
#   DURATION=6       seconds per measurement      WARMUP=3   seconds of warm-up per target
#   CONNS="1 16 64"  connection counts            ROUNDS=3   repeat the whole set (medians)
#   PIN=1            pin servers and load tool to separate CPUs with taskset (0: don't)
#   SERVER_CPUS=1 LOAD_CPUS=0   comma-separated CPU lists used when pinning (2-CPU defaults)
# Raw output goes to bench/out/<UTC timestamp>/ (bench/out/latest points at it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CEILING_ONLY=0 BUILD=1 PERF=0
for arg in "$@"; do
  case "$arg" in
    --ceiling-only) CEILING_ONLY=1 ;;
    --no-build) BUILD=0 ;;
    --perf) PERF=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

DURATION=${DURATION:-6}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-"1 16 64"}
ROUNDS=${ROUNDS:-3}
PIN=${PIN:-1}
NPROC=$(nproc)
if [ "$PIN" = 1 ] && [ "$NPROC" -ge 2 ] && command -v taskset >/dev/null; then
  SERVER_CPUS=${SERVER_CPUS:-1}
  LOAD_CPUS=${LOAD_CPUS:-0}
  SERVER_PIN=(taskset -c "$SERVER_CPUS")
  LOAD_PIN=(taskset -c "$LOAD_CPUS")
  LOAD_THREADS=$(taskset -c "$LOAD_CPUS" nproc)
  PINNING="servers on CPU $SERVER_CPUS, load tool on CPU $LOAD_CPUS (taskset)"
else
  SERVER_PIN=() LOAD_PIN=()
  LOAD_THREADS=$NPROC
  PINNING="none (servers and load tool share all $NPROC CPUs)"
fi

REST_PATH=/v1/models/half_plus_two/versions/1:predict
REST_BODY='{"instances": [1.0, 2.0, 5.0]}'
REST_EXPECT='{"predictions":[2.5,3.0,4.5]}'
GRPC_PATH=/tensorflow.serving.PredictionService/Predict
GRPC_BODY=bench/grpc/predict_request.grpc
# float_val (field 5, packed, 12 bytes) = 2.5, 3.0, 4.5 as little-endian floats
GRPC_EXPECT_HEX=2a0c000020400000404000009040
MODEL_CONFIG=examples/models/models.config
INFERMESH=target/release/infermesh
CEILING=target/release/ceiling

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------
need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
{ command -v h2load >/dev/null && command -v nghttp >/dev/null; } || need_pkgs+=(nghttp2-client)
command -v curl >/dev/null || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need_pkgs[*]}: apt-get install ${need_pkgs[*]}"
  log "installing ${need_pkgs[*]} with apt-get"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# --- build ---------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  if [ "$CEILING_ONLY" = 1 ]; then
    log "cargo build --release -p infermesh-bench-ceiling"
    cargo build --release -p infermesh-bench-ceiling
  else
    log "cargo build --release -p infermesh -p infermesh-bench-ceiling"
    cargo build --release -p infermesh -p infermesh-bench-ceiling \
      || die "release build failed (use --ceiling-only to measure the ceiling alone)"
  fi
fi
[ -x "$CEILING" ] || die "$CEILING not built"
if [ "$CEILING_ONLY" = 0 ]; then
  [ -x "$INFERMESH" ] || die "$INFERMESH not built"
  [ -f examples/models/half_plus_two/1/model.onnx ] \
    || die "examples/models/half_plus_two/1/model.onnx is missing"
fi

# --- output --------------------------------------------------------------------------
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=bench/out/$STAMP
mkdir -p "$OUT"
ln -sfn "$STAMP" bench/out/latest
RESULTS=$OUT/results.tsv
: >"$RESULTS"

# --- servers -------------------------------------------------------------------------
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # url pattern timeout-seconds
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    if curl -s --max-time 2 "$1" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.3
  done
  return 1
}

log "starting the ceiling"
"${SERVER_PIN[@]}" "$CEILING" --port 0 >"$OUT/ceiling.stdout" 2>"$OUT/ceiling.stderr" &
PIDS+=($!)
declare -A PID_OF
PID_OF[ceiling]=$!
for _ in $(seq 50); do grep -q listening "$OUT/ceiling.stdout" && break; sleep 0.1; done
CEIL_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$OUT/ceiling.stdout")
[ -n "$CEIL_PORT" ] || die "ceiling did not start (see $OUT/ceiling.stderr)"
TARGETS=(ceiling)
declare -A REST_URL GRPC_URL
REST_URL[ceiling]=http://127.0.0.1:$CEIL_PORT$REST_PATH
GRPC_URL[ceiling]=http://127.0.0.1:$CEIL_PORT$GRPC_PATH

if [ "$CEILING_ONLY" = 0 ]; then
  IM_REST=$(free_port)
  IM_GRPC=$(free_port)
  while [ "$IM_GRPC" = "$IM_REST" ]; do IM_GRPC=$(free_port); done
  log "starting infermesh model-server (REST $IM_REST, gRPC $IM_GRPC)"
  RUST_LOG=${RUST_LOG:-warn} "${SERVER_PIN[@]}" "$INFERMESH" model-server \
    --port "$IM_GRPC" --rest-api-port "$IM_REST" --model-config-file "$MODEL_CONFIG" \
    >"$OUT/infermesh.stdout" 2>"$OUT/infermesh.stderr" &
  PIDS+=($!)
  PID_OF[infermesh]=$!
  wait_http "http://127.0.0.1:$IM_REST/v1/models/half_plus_two/versions/1" AVAILABLE 120 \
    || die "infermesh did not report half_plus_two version 1 AVAILABLE (see $OUT/infermesh.stderr)"
  TARGETS+=(infermesh)
  REST_URL[infermesh]=http://127.0.0.1:$IM_REST$REST_PATH
  GRPC_URL[infermesh]=http://127.0.0.1:$IM_GRPC$GRPC_PATH
fi

# --- correctness: one request of each kind per target --------------------------------
for t in "${TARGETS[@]}"; do
  got=$(curl -s -X POST -H 'Content-Type: application/json' -d "$REST_BODY" "${REST_URL[$t]}" | tr -d ' \n')
  [ "$got" = "$REST_EXPECT" ] || die "$t REST predict answered '$got', expected '$REST_EXPECT'"
  nghttp -v -d "$GRPC_BODY" -H 'content-type: application/grpc' -H 'te: trailers' \
    "${GRPC_URL[$t]}" >"$OUT/grpc-check-$t.txt" 2>&1 || true
  grep -aq 'grpc-status: 0' "$OUT/grpc-check-$t.txt" \
    || die "$t gRPC Predict did not end with grpc-status 0 (see $OUT/grpc-check-$t.txt)"
  nghttp -d "$GRPC_BODY" -H 'content-type: application/grpc' -H 'te: trailers' \
    "${GRPC_URL[$t]}" 2>/dev/null | od -An -v -tx1 | tr -d ' \n' >"$OUT/grpc-check-$t.hex"
  grep -q "$GRPC_EXPECT_HEX" "$OUT/grpc-check-$t.hex" \
    || die "$t gRPC Predict response lacks float_val [2.5, 3, 4.5] (see $OUT/grpc-check-$t.hex)"
  log "$t answers REST and gRPC Predict correctly"
done

# --- measurements --------------------------------------------------------------------
to_ms() { # wrk latency like 812.00us / 1.25ms / 1.02s -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

# CPU use during a measurement: the server process (% of one CPU, from /proc/PID/stat)
# and, when pinned, how busy the load tool's CPUs were (all processes, from /proc/stat).
CLK_TCK=$(getconf CLK_TCK)
cpu_snapshot() { # pid -> "wallclock server_ticks load_busy load_total server_ctxt_switches"
  local cpus=${LOAD_CPUS:-all}
  awk -v pid_ticks="$(awk '{print $14 + $15}' "/proc/$1/stat")" -v cpus=",$cpus," \
      -v now="$(date +%s.%N)" -v cs="$(cat /proc/"$1"/task/*/status 2>/dev/null \
        | awk '/^(non)?voluntary_ctxt_switches:/ {s += $2} END {print s + 0}')" '
    $1 ~ /^cpu[0-9]+$/ {
      n = substr($1, 4)
      if (cpus != ",all," && index(cpus, "," n ",") == 0) next
      t = 0; for (i = 2; i <= 9; i++) t += $i
      busy += t - $5 - $6; total += t }
    END { printf "%s %d %d %d %d", now, pid_ticks, busy, total, cs }' /proc/stat
}
cpu_usage() { # "before" "after" requests -> "server% load% ctxt_switches_per_request"
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    printf "%.0f %.0f %.2f", 100 * (y[2] - x[2]) / hz / (y[1] - x[1]),
      (y[4] > x[4]) ? 100 * (y[3] - x[3]) / (y[4] - x[4]) : 0, (n > 0) ? (y[5] - x[5]) / n : 0 }'
}

run_wrk() { # target conns file [record]
  local t=$1 c=$2 f=$3 threads=$LOAD_THREADS before after cpu
  [ "$threads" -le "$c" ] || threads=$c
  before=$(cpu_snapshot "${PID_OF[$t]}")
  timeout $((DURATION + 30)) "${LOAD_PIN[@]}" wrk -t"$threads" -c"$c" -d"${DURATION}s" \
    --timeout 10s --latency -s bench/wrk/predict.lua "${REST_URL[$t]}" >"$f" 2>&1 \
    || die "wrk failed against $t (see $f)"
  after=$(cpu_snapshot "${PID_OF[$t]}")
  [ "${4:-}" = record ] || return 0
  local rps p50 p99 non2xx sockerr
  cpu=$(cpu_usage "$before" "$after" "$(awk '/ requests in / {print $1}' "$f")")
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
  sockerr=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$f")
  printf '%s\tREST\twrk\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$t" "$c" "$rps" "$p50" "$p99" \
    "$(( ${non2xx:-0} + ${sockerr:-0} ))" $cpu >>"$RESULTS"
}

run_h2load() { # target conns file [record]
  local t=$1 c=$2 f=$3 threads=$LOAD_THREADS d=$DURATION before after cpu
  [ "$threads" -le "$c" ] || threads=$c
  [ "${4:-}" = record ] || d=$WARMUP
  before=$(cpu_snapshot "${PID_OF[$t]}")
  timeout $((d + 30)) "${LOAD_PIN[@]}" h2load -t"$threads" -c"$c" -m1 -D"$d" \
    -d "$GRPC_BODY" -H 'content-type: application/grpc' -H 'te: trailers' \
    --log-file="$f.log" "${GRPC_URL[$t]}" >"$f" 2>&1 \
    || die "h2load failed against $t (see $f)"
  after=$(cpu_snapshot "${PID_OF[$t]}")
  [ "${4:-}" = record ] || { rm -f "$f.log"; return 0; }
  cpu=$(cpu_usage "$before" "$after" "$(awk '$1 == "requests:" {gsub(/,/, ""); print $8}' "$f")")
  local rps failed non2xx pcts
  rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$f")
  failed=$(awk '$1 == "requests:" {gsub(/,/, ""); print $10 + $12 + $14}' "$f")
  non2xx=$(awk '$1 == "status" && $2 == "codes:" {gsub(/,/, ""); print $5 + $7 + $9}' "$f")
  # latency percentiles (nearest rank) from the per-request log, microseconds -> ms
  pcts=$(cut -f3 "$f.log" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "nan nan"; exit }
    i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
    printf "%.3f %.3f", v[i50] / 1000, v[i99] / 1000 }')
  gzip -f "$f.log"
  printf '%s\tgRPC\th2load\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$t" "$c" "$rps" "${pcts% *}" \
    "${pcts#* }" "$(( ${failed:-0} + ${non2xx:-0} ))" $cpu >>"$RESULTS"
}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc: $NPROC"
  echo "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -sr)"
  echo "rustc: $(rustc -V 2>/dev/null || echo unknown)"
  echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}'); h2load: $(h2load --version | awk '{print $2}')"
  echo "pinning: $PINNING; load tool threads: $LOAD_THREADS"
  echo "settings: ${DURATION}s per measurement, ${WARMUP}s warm-up per target, connections: $CONNS, rounds: $ROUNDS"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
{ ps -eo pcpu,comm --sort=-pcpu | head -8; } >"$OUT/busiest-processes-at-start.txt" || true

log "warm-up: ${WARMUP}s per target and API"
for t in "${TARGETS[@]}"; do
  DURATION=$WARMUP run_wrk "$t" 16 "$OUT/warmup-rest-$t.txt"
  run_h2load "$t" 16 "$OUT/warmup-grpc-$t.txt"
done

for ROUND in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    for t in "${TARGETS[@]}"; do
      log "round $ROUND: REST $t, $c connections, ${DURATION}s"
      run_wrk "$t" "$c" "$OUT/r$ROUND-rest-$t-c$c.txt" record
    done
  done
  for c in $CONNS; do
    for t in "${TARGETS[@]}"; do
      log "round $ROUND: gRPC $t, $c connections, ${DURATION}s"
      run_h2load "$t" "$c" "$OUT/r$ROUND-grpc-$t-c$c.txt" record
    done
  done
done
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

if [ "$PERF" = 1 ] && [ "$CEILING_ONLY" = 0 ]; then
  if command -v perf >/dev/null; then
    c=${CONNS##* }
    log "perf: profiling infermesh under REST load, $c connections (not part of the numbers)"
    perf record -F 999 -g -o "$OUT/perf-infermesh-rest.data" -p "${PIDS[1]}" \
      -- sleep "$DURATION" >"$OUT/perf-record.txt" 2>&1 &
    perf_pid=$!
    run_wrk infermesh "$c" "$OUT/perf-rest-load.txt"
    wait "$perf_pid" || true
    perf report -i "$OUT/perf-infermesh-rest.data" --no-children --percent-limit 1 \
      --sort dso,symbol -g none --stdio >"$OUT/perf-infermesh-rest.txt" 2>/dev/null || true
    log "perf report: $OUT/perf-infermesh-rest.txt"
  else
    log "perf not installed (apt-get install linux-perf); skipping the profile"
  fi
fi

cleanup

# --- report --------------------------------------------------------------------------
{
  python3 bench/report.py "$RESULTS"
  echo
  sed 's/^/    /' "$OUT/machine.txt"
} >"$OUT/results.md"

cat "$OUT/results.md"
log "raw output: $OUT"
