#!/bin/bash
# Where a request's CPU goes, for docs/performance.md's budget: `sluice server` (gateway) and its
# replica, set up as bench/run.sh's sluice-gateway row (model lr:1 from testdata/models/lr20,
# endpoint lr-ep with key auth, deployment blue with instance_type cpu=1), server pinned to CPU 1,
# wrk -c32 pinned to CPU 0. While wrk runs, `perf record` samples each process; the self time of
# every sampled function is put into stages by bench/profile_buckets.py and printed as a table of
# per-request CPU (µs) from the processes' measured CPU time. With `inferno` installed
# (`cargo install inferno`), it also writes a flame graph per process.
#
#   bash bench/profile.sh [OUT_DIR]      # default /tmp/sluice-profile; about 1 minute
# Needs: perf (Debian: linux-perf), wrk, the release binary (cargo build --release -p sluice), root.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-/tmp/sluice-profile}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice}
PORT=${PORT:-9777}
SECONDS_LOAD=${SECONDS_LOAD:-30}
for tool in perf wrk; do command -v $tool >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }; done
[ -x "$BIN" ] || { echo "error: no $BIN (cargo build --release -p sluice)" >&2; exit 1; }
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$HOME/.cache/sluice/onnxruntime-1.31.1/libonnxruntime.so.1.31.1}
rm -rf "$OUT" && mkdir -p "$OUT/data"
export SLUICE_DATA_DIR=$OUT/data SLUICE_SERVER=http://127.0.0.1:$PORT
taskset -c 1 "$BIN" server --addr 127.0.0.1:$PORT >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q SLUICE_LISTENING "$OUT/server.log" && break; sleep 0.1; done
printf 'name: lr-ep\nauth_mode: key\n' >"$OUT/ep.yml"
printf 'name: blue\nendpoint_name: lr-ep\nmodel: azureml:lr:1\ninstance_type: cpu=1,memory=1Gi\ninstance_count: 1\nrequest_settings:\n  max_concurrent_requests_per_instance: 32\n' >"$OUT/dep.yml"
"$BIN" model create --name lr --version 1 --type triton_model --path "$ROOT/testdata/models/lr20/model_repository" >/dev/null
"$BIN" online-endpoint create --file "$OUT/ep.yml" >/dev/null
"$BIN" online-deployment create --file "$OUT/dep.yml" --all-traffic >/dev/null
KEY=$("$BIN" online-endpoint get-credentials --name lr-ep | python3 -c 'import json,sys; print(json.load(sys.stdin)["primaryKey"])')
REPLICA=$(pgrep -P $SERVER -f ' replica ' | head -1)
[ -n "$REPLICA" ] || { echo "error: no replica process under the server" >&2; exit 1; }
URL=http://127.0.0.1:$PORT/endpoints/lr-ep/v2/models/lr/infer
export BODY_FILE=$ROOT/testdata/models/lr20/v2_X.json AUTH_BEARER=$KEY
taskset -c 0 wrk -t1 -c32 -d5s -s "$ROOT/bench/wrk_post_auth.lua" "$URL" >/dev/null   # warm-up
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
s0=$(cpu $SERVER); r0=$(cpu $REPLICA)
taskset -c 0 wrk -t1 -c32 -d${SECONDS_LOAD}s -s "$ROOT/bench/wrk_post_auth.lua" "$URL" >"$OUT/wrk.txt" &
WRK=$!
sleep 3
perf record -q -F 997 --call-graph dwarf,8192 -p $SERVER -o "$OUT/server.perf" -- sleep 10 2>/dev/null &
P1=$!
perf record -q -F 997 --call-graph dwarf,8192 -p $REPLICA -o "$OUT/replica.perf" -- sleep 10 2>/dev/null &
P2=$!
wait $WRK $P1 $P2
s1=$(cpu $SERVER); r1=$(cpu $REPLICA)
REQ=$(awk '/WRKJSON/ {sub(/^WRKJSON /, ""); print}' "$OUT/wrk.txt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
TICK=$(getconf CLK_TCK)
python3 - "$s0" "$s1" "$r0" "$r1" "$REQ" "$TICK" >"$OUT/cpu.json" <<'PY'
import json, sys
s0, s1, r0, r1, n, tick = map(float, sys.argv[1:])
print(json.dumps({"requests": n, "gateway_us": 1e6 * (s1 - s0) / tick / n, "replica_us": 1e6 * (r1 - r0) / tick / n}))
PY
for p in server replica; do
  perf report -i "$OUT/$p.perf" --no-children --sort dso,sym -g none -q --percent-limit 0.01 >"$OUT/$p.flat.txt" 2>/dev/null
  if command -v inferno-collapse-perf >/dev/null; then
    perf script -i "$OUT/$p.perf" 2>/dev/null | inferno-collapse-perf >"$OUT/$p.folded"
    inferno-flamegraph --title "sluice $p, wrk -c32 through the gateway" <"$OUT/$p.folded" >"$OUT/$p.svg"
  fi
done
python3 "$ROOT/bench/profile_buckets.py" "$OUT"
