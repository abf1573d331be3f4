#!/usr/bin/env bash
# infermesh data-plane benchmark: REST and gRPC Predict of half_plus_two, side by side in
# one run on 127.0.0.1, over five paths to one `infermesh model-server`:
#   direct  | sidecar → model server | gateway → sidecar → model server
#           | nginx B → model server | nginx A → nginx B → model server
# at a fixed rate (latency) and at saturation (throughput), with each proxy's CPU time per
# request and peak RSS. See "Data plane: gateway and sidecar vs nginx" in bench/README.md.
#
# Usage: bench/mesh.sh [--no-build] [--perf]
#   --no-build  use target/release/infermesh as it is (default: cargo build --release -p
#               infermesh first, which does nothing when the binary is up to date)
#   --perf      after the measurements, record a perf profile of the gateway and the
#               sidecar under saturating load through the gateway (not part of the numbers;
#               keeps the hard link bench/mesh/out/<stamp>/infermesh for perf report)
# Settings (environment):
#   RATE=1000          fixed rate, requests/s in total      RATE_CLIENTS=10 connections for it
#   RATE_REQUESTS=8000 requests per fixed-rate measurement  (8 s at 1000/s)
#   SAT_DURATION=6     seconds per saturation measurement   SAT_CONNS=32 connections for it
#   WARMUP=2           seconds of warm-up per path and API  ROUNDS=3 repeat the whole set
#   PIN=1              pin all servers to SERVER_CPUS=1 and the load tool to LOAD_CPUS=0
# Raw output: bench/mesh/out/<UTC timestamp>/ (bench/mesh/out/latest points at it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD=1 PERF=0
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    --perf) PERF=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

RATE=${RATE:-1000}
RATE_CLIENTS=${RATE_CLIENTS:-10}
RATE_REQUESTS=${RATE_REQUESTS:-8000}
SAT_DURATION=${SAT_DURATION:-6}
SAT_CONNS=${SAT_CONNS:-32}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
PIN=${PIN:-1}
NPROC=$(nproc)
if [ "$PIN" = 1 ] && [ "$NPROC" -ge 2 ] && command -v taskset >/dev/null; then
  SERVER_CPUS=${SERVER_CPUS:-1}
  LOAD_CPUS=${LOAD_CPUS:-0}
  SERVER_PIN=(taskset -c "$SERVER_CPUS")
  LOAD_PIN=(taskset -c "$LOAD_CPUS")
  PINNING="all servers and proxies on CPU $SERVER_CPUS, load tool on CPU $LOAD_CPUS (taskset)"
else
  SERVER_PIN=() LOAD_PIN=()
  PINNING="none (everything shares all $NPROC CPUs)"
fi
[ $((RATE % RATE_CLIENTS)) = 0 ] || { echo "RATE must be a multiple of RATE_CLIENTS" >&2; exit 2; }

REST_PATH=/v1/models/half_plus_two/versions/1:predict
REST_BODY='{"instances": [1.0, 2.0, 5.0]}'
REST_EXPECT='{"predictions":[2.5,3.0,4.5]}'
GRPC_PATH=/tensorflow.serving.PredictionService/Predict
GRPC_BODY=bench/grpc/predict_request.grpc   # made by bench/grpc/make_bodies.py; read only
# float_val (field 5, packed, 12 bytes) = 2.5, 3.0, 4.5 as little-endian floats
GRPC_EXPECT_HEX=2a0c000020400000404000009040
MODEL_CONFIG=$ROOT/examples/models/models.config
INFERMESH=$ROOT/target/release/infermesh
TOOL=(python3 "$ROOT/bench/mesh/tool.py")

log() { echo "[mesh-bench] $*" >&2; }
die() { echo "[mesh-bench] error: $*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------
need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx)
{ command -v h2load >/dev/null && command -v nghttp >/dev/null; } || need_pkgs+=(nghttp2-client)
command -v curl >/dev/null || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need_pkgs[*]}: apt-get install ${need_pkgs[*]}"
  log "installing ${need_pkgs[*]} with apt-get"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  # the Debian package may start a system nginx; this benchmark runs its own
fi
[ -f "$GRPC_BODY" ] || die "$GRPC_BODY is missing"

# --- build ---------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  log "cargo build --release -p infermesh"
  cargo build --release -p infermesh || die "release build failed (--no-build uses the binary as it is)"
fi
[ -x "$INFERMESH" ] || die "$INFERMESH not built"

# --- output --------------------------------------------------------------------------
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/mesh/out/$STAMP
mkdir -p "$OUT"
ln -sfn "$STAMP" "$ROOT/bench/mesh/out/latest"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
# Run a hard link of the binary, not target/release/infermesh itself: a cargo build during
# the run (the machine is shared) replaces that file, and perf could then no longer find
# the symbols of the running processes. Same filesystem as target/, so no copy is made.
ln "$INFERMESH" "$OUT/infermesh" 2>/dev/null || cp "$INFERMESH" "$OUT/infermesh"
INFERMESH=$OUT/infermesh
printf '%s' "$REST_BODY" >"$OUT/rest_body.json"

# --- processes -----------------------------------------------------------------------
PIDS=()
NGINX_DIR=
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  PIDS=()
  [ -z "$NGINX_DIR" ] || rm -rf "$NGINX_DIR"
  [ -z "${OUT:-}" ] || [ "$PERF" = 1 ] || rm -f "$OUT/infermesh"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # description timeout-seconds command...
  local what=$1 deadline=$((SECONDS + $2)); shift 2
  while [ $SECONDS -lt $deadline ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.3
  done
  die "$what did not answer correctly in time; last answer: $(cat "$OUT/last-answer.txt" 2>/dev/null) (see $OUT/*.stderr)"
}
rest_ok() { # url
  curl -s -i --max-time 2 -X POST -H 'Content-Type: application/json' -d "$REST_BODY" "$1" \
    >"$OUT/last-answer.txt" 2>&1 || true
  [ "$(sed '1,/^\r\?$/d' "$OUT/last-answer.txt" | tr -d ' \r\n')" = "$REST_EXPECT" ]
}

mapfile -t P < <("${TOOL[@]}" ports 9)
MS_REST=${P[0]} MS_GRPC=${P[1]} SIDECAR=${P[2]} GATEWAY=${P[3]}
NB_REST=${P[4]} NB_GRPC=${P[5]} NA_REST=${P[6]} NA_GRPC=${P[7]} SPARE=${P[8]}
: "$SPARE"

log "starting infermesh model-server (REST $MS_REST, gRPC $MS_GRPC)"
"${SERVER_PIN[@]}" "$INFERMESH" model-server --port "$MS_GRPC" --rest-api-port "$MS_REST" \
  --model-config-file "$MODEL_CONFIG" >"$OUT/model-server.stdout" 2>"$OUT/model-server.stderr" &
PIDS+=($!)
PID_MS=$!
wait_for "model server" 120 sh -c \
  "curl -s --max-time 2 http://127.0.0.1:$MS_REST/v1/models/half_plus_two/versions/1 | grep -q AVAILABLE"

# The mesh: one workload whose sidecar fronts the external model server above, one
# gateway listener (REST and gRPC on one port), and one ALLOW policy (authorization is
# deny-by-default) that lets anyone predict with half_plus_two. So every request is
# authorized against a policy at both hops; no issuers, so no JWT is verified.
cat >"$OUT/mesh.yaml" <<EOF
# generated by bench/mesh.sh
trust_domain: cluster.local
workloads:
  - name: bench
    namespace: bench
    service_account: model-server
    listen: 127.0.0.1:$SIDECAR
    upstream: {rest: 127.0.0.1:$MS_REST, grpc: 127.0.0.1:$MS_GRPC}
models:
  - name: half_plus_two
    served_by: bench
    versions: [1, 2]
gateway:
  listen: [127.0.0.1:$GATEWAY]
policies:
  - name: bench-anyone-may-predict
    action: ALLOW
    rules:
      - to: [{models: [half_plus_two], apis: [predict]}]
EOF

log "starting infermesh sidecar (127.0.0.1:$SIDECAR) and gateway (127.0.0.1:$GATEWAY)"
"${SERVER_PIN[@]}" "$INFERMESH" sidecar --config "$OUT/mesh.yaml" --workload bench \
  >"$OUT/sidecar.stdout" 2>"$OUT/sidecar.stderr" &
PIDS+=($!)
PID_SIDECAR=$!
"${SERVER_PIN[@]}" "$INFERMESH" gateway --config "$OUT/mesh.yaml" \
  >"$OUT/gateway.stdout" 2>"$OUT/gateway.stderr" &
PIDS+=($!)
PID_GATEWAY=$!
wait_for "infermesh sidecar" 30 rest_ok "http://127.0.0.1:$SIDECAR$REST_PATH"
wait_for "infermesh gateway" 30 rest_ok "http://127.0.0.1:$GATEWAY$REST_PATH"

# nginx: two instances as the same two hops. nginx 1.22 serves HTTP/2 on a cleartext
# port only with prior knowledge ("listen ... http2" refuses HTTP/1.1 there), so each
# instance has a REST (HTTP/1.1) listener and a gRPC (h2c) listener.
nginx_conf() { # dir rest-port grpc-port upstream-rest-port upstream-grpc-port
  local d=$1
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
# generated by bench/mesh.sh
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  # the defaults (1000) close client and upstream connections every 1000 requests;
  # infermesh never does, so neither does nginx here
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  upstream rest_upstream {
    server 127.0.0.1:$4;
    keepalive 64;
    keepalive_requests 1000000;
  }
  upstream grpc_upstream {
    server 127.0.0.1:$5;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://rest_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:$3 http2;
    location / {
      grpc_pass grpc://grpc_upstream;
    }
  }
}
EOF
}
# as root, run nginx as nobody: an unprivileged process with no "user" switch of its own
AS_USER=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  AS_USER=(setpriv --reuid=nobody --regid="$(id -gn nobody)" --clear-groups)
fi
start_nginx() { # name dir
  local d=$2
  "${AS_USER[@]}" nginx -t -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$OUT/$1.conftest" 2>&1 \
    || die "nginx rejects $d/nginx.conf (see $OUT/$1.conftest)"
  "${SERVER_PIN[@]}" "${AS_USER[@]}" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" \
    -g 'daemon off;' >"$OUT/$1.stdout" 2>"$OUT/$1.stderr" &
  PIDS+=($!)
}
NGINX_DIR=$(mktemp -d /tmp/infermesh-mesh-bench.XXXXXX)
nginx_conf "$NGINX_DIR/b" "$NB_REST" "$NB_GRPC" "$MS_REST" "$MS_GRPC"
nginx_conf "$NGINX_DIR/a" "$NA_REST" "$NA_GRPC" "$NB_REST" "$NB_GRPC"
cp "$NGINX_DIR/a/nginx.conf" "$OUT/nginx-a.conf"
cp "$NGINX_DIR/b/nginx.conf" "$OUT/nginx-b.conf"
[ ${#AS_USER[@]} = 0 ] || chown -R nobody "$NGINX_DIR"
log "starting nginx B (REST $NB_REST, gRPC $NB_GRPC) and nginx A (REST $NA_REST, gRPC $NA_GRPC)"
start_nginx nginx-b "$NGINX_DIR/b"
PID_NB=$!
start_nginx nginx-a "$NGINX_DIR/a"
PID_NA=$!
wait_for "nginx B" 30 rest_ok "http://127.0.0.1:$NB_REST$REST_PATH"
wait_for "nginx A" 30 rest_ok "http://127.0.0.1:$NA_REST$REST_PATH"
nginx_pids() { # master pid -> master,worker...
  local kids
  kids=$(pgrep -P "$1" | paste -sd, -)
  echo "$1${kids:+,$kids}"
}
NB_PIDS=$(nginx_pids "$PID_NB")
NA_PIDS=$(nginx_pids "$PID_NA")
[[ $NB_PIDS == *,* && $NA_PIDS == *,* ]] || die "nginx has no worker process"
PROCS=(model_server="$PID_MS" sidecar="$PID_SIDECAR" gateway="$PID_GATEWAY"
       nginx_b="$NB_PIDS" nginx_a="$NA_PIDS")

TARGETS=(direct sidecar gateway nginx-b nginx-a)
declare -A REST_URL GRPC_URL
REST_URL[direct]=http://127.0.0.1:$MS_REST$REST_PATH
GRPC_URL[direct]=http://127.0.0.1:$MS_GRPC$GRPC_PATH
REST_URL[sidecar]=http://127.0.0.1:$SIDECAR$REST_PATH
GRPC_URL[sidecar]=http://127.0.0.1:$SIDECAR$GRPC_PATH
REST_URL[gateway]=http://127.0.0.1:$GATEWAY$REST_PATH
GRPC_URL[gateway]=http://127.0.0.1:$GATEWAY$GRPC_PATH
REST_URL[nginx-b]=http://127.0.0.1:$NB_REST$REST_PATH
GRPC_URL[nginx-b]=http://127.0.0.1:$NB_GRPC$GRPC_PATH
REST_URL[nginx-a]=http://127.0.0.1:$NA_REST$REST_PATH
GRPC_URL[nginx-a]=http://127.0.0.1:$NA_GRPC$GRPC_PATH

# --- correctness: one request of each kind per path ----------------------------------
for t in "${TARGETS[@]}"; do
  rest_ok "${REST_URL[$t]}" || die "$t: REST predict did not answer $REST_EXPECT"
  nghttp -v -d "$GRPC_BODY" -H 'content-type: application/grpc' -H 'te: trailers' \
    "${GRPC_URL[$t]}" >"$OUT/grpc-check-$t.txt" 2>&1 || true
  grep -aq 'grpc-status: 0' "$OUT/grpc-check-$t.txt" \
    || die "$t: gRPC Predict did not end with grpc-status 0 (see $OUT/grpc-check-$t.txt)"
  nghttp -d "$GRPC_BODY" -H 'content-type: application/grpc' -H 'te: trailers' \
    "${GRPC_URL[$t]}" 2>/dev/null | od -An -v -tx1 | tr -d ' \n' >"$OUT/grpc-check-$t.hex"
  grep -q "$GRPC_EXPECT_HEX" "$OUT/grpc-check-$t.hex" \
    || die "$t: gRPC Predict response lacks float_val [2.5, 3, 4.5] (see $OUT/grpc-check-$t.hex)"
done
log "all five paths answer REST and gRPC Predict correctly"

# --- measurements --------------------------------------------------------------------
load() { # api target file h2load-args... ; one bounded h2load run
  local api=$1 t=$2 f=$3; shift 3
  local url args=()
  if [ "$api" = REST ]; then
    url=${REST_URL[$t]}
    args=(--h1 -d "$OUT/rest_body.json" -H 'content-type: application/json')
  else
    url=${GRPC_URL[$t]}
    args=(-d "$GRPC_BODY" -H 'content-type: application/grpc' -H 'te: trailers')
  fi
  timeout 120 "${LOAD_PIN[@]}" h2load -t1 -m1 "${args[@]}" "$@" --log-file="$f.log" "$url" \
    >"$f" 2>&1 || die "h2load failed: $api $t (see $f)"
}
measure() { # round api mode target
  local rd=$1 api=$2 mode=$3 t=$4 f before after
  f=$OUT/r$rd-$api-$mode-$t.txt
  before=$("${TOOL[@]}" snapshot "${PROCS[@]}")
  if [ "$mode" = rate ]; then
    load "$api" "$t" "$f" -c "$RATE_CLIENTS" --rps $((RATE / RATE_CLIENTS)) -n "$RATE_REQUESTS"
  else
    load "$api" "$t" "$f" -c "$SAT_CONNS" -D "$SAT_DURATION"
  fi
  after=$("${TOOL[@]}" snapshot "${PROCS[@]}")
  "${TOOL[@]}" record "$RESULTS" round="$rd" api="$api" mode="$mode" target="$t" \
    --h2load "$f" --before "$before" --after "$after"
  gzip -f "$f.log"
}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc: $NPROC"
  echo "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -sr)"
  echo "rustc: $(rustc -V 2>/dev/null || echo unknown)"
  echo "infermesh: $("$INFERMESH" --version) ($(stat -c '%y' "$INFERMESH" | cut -d. -f1) build, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes'))"
  echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
  echo "h2load: $(h2load --version | awk '{print $2}')"
  echo "pinning: $PINNING"
  echo "settings: fixed rate $RATE req/s over $RATE_CLIENTS connections, $RATE_REQUESTS requests; saturation $SAT_CONNS connections for ${SAT_DURATION}s; warm-up ${WARMUP}s; rounds: $ROUNDS"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
ps -eo pcpu,comm --sort=-pcpu | head -8 >"$OUT/busiest-processes-at-start.txt" || true

"${TOOL[@]}" rss "${PROCS[@]}" >"$OUT/rss-idle.json"   # after start-up and the checks
log "warm-up: ${WARMUP}s per path and API"
for t in "${TARGETS[@]}"; do
  for api in REST gRPC; do
    load "$api" "$t" "$OUT/warmup-$api-$t.txt" -c "$SAT_CONNS" -D "$WARMUP"
    rm -f "$OUT/warmup-$api-$t.txt.log"
  done
done

for rd in $(seq "$ROUNDS"); do
  # rotate the order of the paths each round, so no path always runs first or last
  order=("${TARGETS[@]:$(( (rd - 1) % ${#TARGETS[@]} ))}" "${TARGETS[@]:0:$(( (rd - 1) % ${#TARGETS[@]} ))}")
  for api in REST gRPC; do
    for mode in rate sat; do
      for t in "${order[@]}"; do
        log "round $rd/$ROUNDS: $api $mode $t"
        measure "$rd" "$api" "$mode" "$t"
      done
    done
  done
done
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
ps -eo pcpu,comm --sort=-pcpu | head -8 >"$OUT/busiest-processes-at-end.txt" || true
"${TOOL[@]}" rss "${PROCS[@]}" >"$OUT/rss.json"

if [ "$PERF" = 1 ]; then
  if command -v perf >/dev/null; then
    for api in REST gRPC; do
      log "perf: gateway and sidecar under saturating $api load through the gateway (not part of the numbers)"
      perf record -F 999 -o "$OUT/perf-$api.data" -p "$PID_GATEWAY,$PID_SIDECAR" \
        -- sleep "$SAT_DURATION" >"$OUT/perf-$api-record.txt" 2>&1 &
      perf_pid=$!
      load "$api" gateway "$OUT/perf-$api-load.txt" -c "$SAT_CONNS" -D "$SAT_DURATION"
      wait "$perf_pid" || true
      gzip -f "$OUT/perf-$api-load.txt.log"
      {
        echo "## by process, coarse categories (bench/mesh/tool.py perfsum)"
        perf script -i "$OUT/perf-$api.data" -F pid,ip,sym,dso 2>/dev/null \
          | "${TOOL[@]}" perfsum gateway="$PID_GATEWAY" sidecar="$PID_SIDECAR"
        echo "## by process and shared object"
        perf report -i "$OUT/perf-$api.data" --percent-limit 0.5 --sort pid,dso --stdio
        echo "## by process and symbol"
        perf report -i "$OUT/perf-$api.data" --percent-limit 0.4 --sort pid,dso,symbol --stdio
      } >"$OUT/perf-$api.txt" 2>/dev/null || true
      log "perf report: $OUT/perf-$api.txt"
    done
  else
    log "perf not installed (apt-get install linux-perf); skipping the profile"
  fi
fi

cleanup

# --- report --------------------------------------------------------------------------
{
  "${TOOL[@]}" report "$RESULTS" "$OUT/rss.json" "$OUT/rss-idle.json"
  sed 's/^/    /' "$OUT/machine.txt"
} >"$OUT/results.md"
cat "$OUT/results.md"
log "raw output: $OUT"
