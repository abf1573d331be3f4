#!/usr/bin/env bash
# What telemetry costs: REST Predict through `infermesh up` (gateway → sidecar → embedded
# model server) at 64 connections, alternating in one run between
#   off      telemetry.enabled: false (trace context and request ids still pass on)
#   metrics  the default: Istio metrics only
#   all      metrics + a JSON access log to a file + tracing at the default 1% sampling,
#            spans exported over OTLP/HTTP to a local receiver
#   all100   the same with every request traced (sampling: 100)
# Target: throughput of "all" / "off" >= 0.95. See "Telemetry" in bench/README.md.
#
# Usage: bench/telemetry.sh        Settings: DURATION=10 CONNS=64 ROUNDS=3
# Raw output: bench/out/telemetry-<UTC timestamp>/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10} CONNS=${CONNS:-64} ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p infermesh
OUT=bench/out/telemetry-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# An OTLP/HTTP receiver that accepts every export (the collector is not measured).
RECV=$(port)
python3 - "$RECV" >"$OUT/receiver.log" 2>&1 <<'PY' &
import sys, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
PIDS=($!)
# The access logs grow by ~10 MB/s under load: deleted at the end (line counts kept).
# (The meshes are started in subshells: their PIDs are read back from $OUT/*.pid.)
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  for f in "$OUT"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  rm -f "$OUT"/access-*.log
}
trap cleanup EXIT

start() { # name telemetry-yaml -> prints "<gateway port> <admin port>"
  local name=$1 telemetry=$2 gw sc rest grpc adm
  gw=$(port) sc=$(port) rest=$(port) grpc=$(port) adm=$(port)
  cat >"$OUT/$name.yaml" <<YAML
workloads:
  - name: tfserving-a
    namespace: ml
    listen: 127.0.0.1:$sc
    upstream: {rest: 127.0.0.1:$rest, grpc: 127.0.0.1:$grpc}
    model_server: {model_config_file: $ROOT/examples/models/models.config}
models:
  - name: half_plus_two
    served_by: tfserving-a
    versions: [{version: 1, label: stable}, {version: 2, label: canary}]
    route: {split: {stable: 90, canary: 10}}
gateway: {listen: [127.0.0.1:$gw], admin: 127.0.0.1:$adm}
authorization: {default_deny: false}
$telemetry
YAML
  INFERMESH_LOG=warn target/release/infermesh up --config "$OUT/$name.yaml" \
    --state-dir "$OUT/state-$name" >"$OUT/$name.log" 2>&1 &
  echo $! >"$OUT/$name.pid"
  for _ in $(seq 100); do
    curl -sf -o /dev/null -d '{"instances":[1.0]}' "http://127.0.0.1:$gw/v1/models/half_plus_two:predict" && break
    sleep 0.2
  done
  echo "$gw $adm"
}
declare -A GW ADMIN
MODES=(off metrics all all100)
read -r GW[off] ADMIN[off] < <(start off "telemetry: {enabled: false}")
read -r GW[metrics] ADMIN[metrics] < <(start metrics "")
read -r GW[all] ADMIN[all] < <(start all "telemetry:
  access_log: {path: $ROOT/$OUT/access-all.log}
  tracing: {otlp: http://127.0.0.1:$RECV, protocol: http}")
read -r GW[all100] ADMIN[all100] < <(start all100 "telemetry:
  access_log: {path: $ROOT/$OUT/access-all100.log}
  tracing: {otlp: http://127.0.0.1:$RECV, protocol: http, sampling: 100}")

cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$OUT/$1.pid")/stat"; }
run() { # port mode round -> "<requests/s> <CPU µs per request of the infermesh process>"
  local before after n
  before=$(cpu_ticks "$2")
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/wrk/predict.lua \
    "http://127.0.0.1:$1/v1/models/half_plus_two:predict" >"$OUT/$2-$3.txt" 2>&1
  after=$(cpu_ticks "$2")
  n=$(awk '/requests in/ {print $1}' "$OUT/$2-$3.txt")
  echo "$(awk '/Requests\/sec/ {print $2}' "$OUT/$2-$3.txt") \
    $(python3 -c "print(round(($after - $before) * 1e6 / $(getconf CLK_TCK) / $n, 1))")"
}
echo "round: per mode requests/s and CPU µs/request; then throughput and CPU ratios to off" \
  | tee "$OUT/summary.txt"
for r in $(seq "$ROUNDS"); do
  declare -A RPS CPU
  for m in "${MODES[@]}"; do read -r RPS[$m] CPU[$m] < <(run "${GW[$m]}" "$m" "$r"); done
  line="$r"
  for m in "${MODES[@]}"; do line+=" | $m ${RPS[$m]} ${CPU[$m]}us"; done
  for m in metrics all all100; do
    line+=" | $m/off $(python3 -c "print(round(${RPS[$m]}/${RPS[off]}, 3), 'cpu', round(${CPU[off]}/${CPU[$m]}, 3))")"
  done
  echo "$line" | tee -a "$OUT/summary.txt"
done
for m in all all100; do
  echo "$m: $(curl -s "http://127.0.0.1:${ADMIN[$m]}/metrics" \
    | grep -E '^infermesh_(trace_spans|access_log)' | tr '\n' ' ')" | tee -a "$OUT/summary.txt"
done
