#!/usr/bin/env bash
# Instructions and heap calls per request in the gateway (`sluice server`) or in the replica alone
# (`sluice replica`), counted by valgrind's callgrind: a count that does not move with the
# machine's speed, for A/B comparisons of a change on a VM where timings swing by tens of percent
# within the hour (docs/performance.md). It counts user-space instructions only (not the kernel's
# work in syscalls, not cache misses), so read it next to, not instead of, bench/run.sh's CPU per
# request.
#
#   bash bench/callgrind.sh [OUT_DIR]          # about 2 minutes; default /tmp/sluice-callgrind
#   SLUICE_BIN=/tmp/sluice-old bash bench/callgrind.sh /tmp/cg-old   # another build, for an A/B
#   TARGET=replica bash bench/callgrind.sh /tmp/cg-replica           # the replica instead
#
# TARGET=gateway (default): set-up as bench/run.sh's sluice-gateway row (model lr:1, endpoint lr-ep
# with key auth, deployment blue with max_concurrent_requests_per_instance 32). Only the server
# runs under valgrind; the replica is its ordinary child. TARGET=replica: bench/run.sh's
# sluice-replica row (`sluice replica` on the lr model over TCP, one intra-op and one inference
# thread) under valgrind; the gateway reaches its replica over a Unix socket instead, which moves
# kernel work, not the replica's own instructions. Counting is switched on after a warm-up, for N
# requests one at a time on one keep-alive connection (c=1), then for N requests on 32
# connections at once (c=32). Prints, per request and per phase: instructions,
# malloc/calloc/realloc/free calls, and the functions with the most instructions (self). SHA-256
# shows at its software cost: valgrind hides the CPU's SHA extensions, which the real run uses.
# Needs valgrind (Debian: valgrind) and python3.
# Env: N (requests per phase, default 2000), SLUICE_BIN (default target/release/sluice),
# TARGET (gateway or replica).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-/tmp/sluice-callgrind}
BIN=${SLUICE_BIN:-$ROOT/target/release/sluice}
N=${N:-2000}
command -v valgrind > /dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "error: no $BIN (cargo build --release -p sluice)" >&2; exit 1; }
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$HOME/.cache/sluice/onnxruntime-1.31.1/libonnxruntime.so.1.31.1}
[ -f "$ORT_DYLIB_PATH" ] || unset ORT_DYLIB_PATH
TARGET=${TARGET:-gateway}
rm -rf "$OUT" && mkdir -p "$OUT/data"
case $TARGET in
  gateway) set -- server --addr 127.0.0.1:0 --data-dir "$OUT/data"; READY=SLUICE_LISTENING;;
  replica) set -- replica --model-dir "$ROOT/testdata/models/lr20/model_repository" --format triton \
             --listen 127.0.0.1:0 --intra-op-threads 1 --inference-threads 1; READY=SLUICE_REPLICA_LISTENING;;
  *) echo "error: TARGET must be gateway or replica, not $TARGET" >&2; exit 2;;
esac
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out" \
  "$BIN" "$@" > "$OUT/server.log" 2>&1 &
VG=$!
trap 'kill $VG 2> /dev/null || true' EXIT
for _ in $(seq 600); do grep -q "^$READY " "$OUT/server.log" 2> /dev/null && break; sleep 0.1; done
URL=$(sed -n "s/^$READY //p" "$OUT/server.log" | head -1)
[ -n "$URL" ] || { cat "$OUT/server.log" >&2; exit 1; }
if [ "$TARGET" = gateway ]; then
  cli() { "$BIN" --server "$URL" --data-dir "$OUT/data" "$@"; }
  printf 'name: lr-ep\nauth_mode: key\n' > "$OUT/ep.yml"
  printf 'name: blue\nendpoint_name: lr-ep\nmodel: azureml:lr:1\ninstance_type: cpu=1,memory=1Gi\ninstance_count: 1\nrequest_settings:\n  max_concurrent_requests_per_instance: 32\n' > "$OUT/dep.yml"
  cli model create --name lr --version 1 --type triton_model --path "$ROOT/testdata/models/lr20/model_repository" > /dev/null
  cli online-endpoint create --file "$OUT/ep.yml" > /dev/null
  cli online-deployment create --file "$OUT/dep.yml" --all-traffic > /dev/null
  KEY=$(cli online-endpoint get-credentials --name lr-ep | python3 -c 'import json,sys; print(json.load(sys.stdin)["primaryKey"])')
  PATH_=/endpoints/lr-ep/v2/models/lr/infer
else
  URL=http://${URL#http://}
  KEY=
  PATH_=/v2/models/lr/infer
fi

# N POSTs of the lr body over C keep-alive connections (threads), each answer checked.
load() {
  python3 - "$URL" "$KEY" "$ROOT/testdata/models/lr20/v2_X.json" "$1" "$2" "$PATH_" << 'EOF'
import http.client, sys, threading, urllib.parse
url, key, body_file, n, c, path = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
body = open(body_file, "rb").read()
u = urllib.parse.urlsplit(url)
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = f"Bearer {key}"
failures = []
def worker(count):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    for _ in range(count):
        conn.request("POST", path, body, headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200 or b'"data":[1]' not in data:
            failures.append((r.status, data[:200]))
threads = [threading.Thread(target=worker, args=(n // c + (i < n % c),)) for i in range(c)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"{len(failures)} failed answers, first: {failures[0]}")
EOF
}
phase() {  # name, connections
  load 200 "$2"                                 # warm-up, not counted
  callgrind_control -z "$VG" > /dev/null        # zero the counters
  callgrind_control -i on "$VG" > /dev/null
  load "$N" "$2"
  callgrind_control -i off "$VG" > /dev/null
  callgrind_control -d "$1" "$VG" > /dev/null   # dump: callgrind.out.<n> with "Trigger: dump <name>"
}
phase c1 1
phase c32 32
kill "$VG"; wait "$VG" 2> /dev/null || true
trap - EXIT
for name in c1 c32; do
  f=$(grep -l "Trigger: dump $name$" "$OUT"/callgrind.out* | head -1)
  callgrind_annotate --inclusive=no --threshold=100 "$f" > "$OUT/$name.txt" 2> /dev/null
  python3 - "$OUT/$name.txt" "$N" "$name" "$TARGET" << 'EOF'
import re, sys
path, n, name, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
total, rows = 0, []
for line in open(path):
    m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(?:\S+:)?(.*)$", line)
    if "PROGRAM TOTALS" in line:
        total = int(line.split()[0].replace(",", ""))
    elif m and total and not line.strip().startswith("Ir"):
        rows.append((int(m.group(1).replace(",", "")), m.group(2).strip()))
print(f"{name}: {total / n:,.0f} instructions per request in the {target} ({n} requests)")
for ir, fn in rows[:25]:
    print(f"  {ir / n:9,.0f}  {fn[:150]}")
EOF
done
# Heap calls per request: callgrind's per-function call counts (calls= lines into each function).
for name in c1 c32; do
  f=$(grep -l "Trigger: dump $name$" "$OUT"/callgrind.out* | head -1)
  python3 - "$f" "$N" "$name" << 'EOF'
import re, sys, collections
path, n, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names, calls, target = {}, collections.Counter(), None
for line in open(path, errors="replace"):
    m = re.match(r"(cfn)=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3)
        target = names.get(m.group(2))
        continue
    m = re.match(r"fn=\((\d+)\)(?: (.*))?", line)
    if m and m.group(2):
        names[m.group(1)] = m.group(2)
    if line.startswith("calls=") and target:
        calls[target] += int(line.split()[0][6:])
# Rust's allocation entry points (whichever allocator is behind them), then C code's own malloc.
# LTO inlines some of Rust's entry points into their callers, so mimalloc's own entry points
# (the global allocator) are the exact count of Rust's heap calls; glibc's are C code's.
kinds = {"__rust_alloc": "alloc", "__rust_alloc_zeroed": "alloc", "__rust_realloc": "realloc",
         "__rust_dealloc": "dealloc", "mi_malloc_aligned": "mimalloc malloc", "mi_zalloc_aligned": "mimalloc malloc",
         "mi_realloc_aligned": "mimalloc realloc", "mi_free": "mimalloc free",
         "malloc": "C malloc", "calloc": "C malloc", "realloc": "C realloc"}
heap = collections.Counter()
for k, v in calls.items():
    kind = kinds.get(k.rsplit("::", 1)[-1].split(" ")[0])
    if kind:
        heap[kind] += v
print(f"{name}: heap calls per request: " + ", ".join(f"{k} {heap[k] / n:.1f}" for k in ("alloc", "realloc", "dealloc", "mimalloc malloc", "mimalloc realloc", "mimalloc free", "C malloc", "C realloc")))
EOF
done
echo "annotated profiles: $OUT/c1.txt $OUT/c32.txt"
