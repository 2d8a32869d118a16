#!/usr/bin/env bash
# Open-loop sweep of sluice-gateway on the lr model: the server tree pinned to CPU 1, bench's
# sluice-loadgen on CPU 0 (both nice -20), one fixed rate after another on the same server, and
# for each rate the latency (from each request's scheduled send time), the server tree's CPU per
# request (from /proc, 2 s warm-up included) and its context switches and minor faults per request.
#
#   bash bench/open_loop_sweep.sh 1000 6000 11000 13600
#   PREFIX="chrt -b 0" bash bench/open_loop_sweep.sh 13600      # the server tree under SCHED_BATCH
#   REPLICA_PREFIX="chrt -b -p 0" bash bench/open_loop_sweep.sh 13600   # only the replica's threads
#   THREADS=1 bash bench/open_loop_sweep.sh 1000    # also CPU and context switches per thread
#   SPIN=1 bash bench/open_loop_sweep.sh 1000       # a SCHED_IDLE busy loop on CPU 1 keeps its vCPU from
#                                                   # halting when the server is idle (the "foreign CPU" is it)
#   SERIES_MS=100 bash bench/open_loop_sweep.sh 14000   # also the 100 ms windows whose worst latency
#                                                   # was over 5 ms (when backlogs began and how long they lasted)
#   STRACE=1 bash bench/open_loop_sweep.sh 500      # also syscalls per request, per process (strace -c;
#                                                   # strace slows the server: read its CPU columns as void)
#
# Env: SLUICE_BIN and LOADGEN (default target/release/...; build them with `cargo build --release
# -p sluice -p sluice-loadgen`), DURATION (s per rate, default 10), CONNECTIONS (the load generator's
# connections, default 64), MAX_CONCURRENT (the deployment's max_concurrent_requests_per_instance,
# default 32), MODEL_REPO (the Triton model repository to deploy as lr:1, default testdata's lr20; e.g.
# bench/run.sh's $PEERS_ROOT/run/sluice-lr-batching for the batching row's model), PREFIX (a command put before
# `sluice server`), ORT_DYLIB_PATH (default ~/.cache/sluice's). Run as root on a quiet machine; no
# network namespace (unlike run.sh), so numbers are comparable within one sweep, not with run.sh's.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 RATE [RATE...]" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SLUICE_BIN:-$ROOT/target/release/sluice}
LOADGEN=${LOADGEN:-$ROOT/target/release/sluice-loadgen}
DURATION=${DURATION:-10}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$HOME/.cache/sluice/onnxruntime-1.31.1/libonnxruntime.so.1.31.1}
# Not there yet (a new machine): the replica provisions ONNX Runtime from PyPI into its cache.
[ -f "$ORT_DYLIB_PATH" ] || unset ORT_DYLIB_PATH
WORK=$(mktemp -d)
SERVER=""
SPINNER=""
cleanup() {
  [ -n "$SERVER" ] && kill -- "-$SERVER" 2>/dev/null
  [ -n "$SPINNER" ] && kill "$SPINNER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -n "${SPIN:-}" ]; then
  taskset -c 1 chrt -i 0 bash -c 'while :; do :; done' &
  SPINNER=$!
fi

# shellcheck disable=SC2086
setsid nice -n -20 taskset -c 1 ${PREFIX:-} "$BIN" server --addr 127.0.0.1:0 --data-dir "$WORK/data" > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do grep -q "SLUICE_LISTENING" "$WORK/server.log" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^SLUICE_LISTENING //p' "$WORK/server.log" | head -1)
[ -n "$URL" ] || { cat "$WORK/server.log" >&2; exit 1; }
cli() { "$BIN" --server "$URL" --data-dir "$WORK/data" "$@"; }
printf 'name: lr-ep\nauth_mode: key\n' > "$WORK/ep.yml"
printf 'name: blue\nendpoint_name: lr-ep\nmodel: azureml:lr:1\ninstance_type: cpu=1,memory=1Gi\ninstance_count: 1\nrequest_settings:\n  max_concurrent_requests_per_instance: '"${MAX_CONCURRENT:-32}"'\n' > "$WORK/dep.yml"
cli model create --name lr --version 1 --type triton_model --path "${MODEL_REPO:-$ROOT/testdata/models/lr20/model_repository}" > /dev/null
cli online-endpoint create --file "$WORK/ep.yml" > /dev/null
cli online-deployment create --file "$WORK/dep.yml" --all-traffic > /dev/null
KEY=$(cli online-endpoint get-credentials --name lr-ep | python3 -c 'import json,sys; print(json.load(sys.stdin)["primaryKey"])')
# The server and its replicas (each replica runs in its own process group).
PIDS="$SERVER $(pgrep -P "$SERVER" | tr '\n' ' ')"
if [ -n "${REPLICA_PREFIX:-}" ]; then  # e.g. "chrt -b -p 0": applied to every thread of the replicas only
  for p in $(pgrep -P "$SERVER"); do for t in /proc/"$p"/task/*; do $REPLICA_PREFIX "${t##*/}" > /dev/null; done; done
fi

# CPU ticks, voluntary + involuntary context switches and minor faults of the server tree.
snapshot() {
  local cpu=0 cs=0 flt=0 p t
  for p in $PIDS; do
    [ -r "/proc/$p/stat" ] || continue
    read -r -a t < <(sed 's/^.*) //' "/proc/$p/stat")
    cpu=$((cpu + t[11] + t[12])); flt=$((flt + t[7]))
    for s in /proc/"$p"/task/*/status; do
      cs=$((cs + $(awk '/ctxt_switches/{s+=$2} END{print s}' "$s")))
    done
  done
  echo "$cpu $cs $flt"
}
# CPU 1's idle (idle + iowait) and steal ticks from /proc/stat, and the time: the whole core, whatever
# ran on it. Idle time is measured at each idle entry and exit, so busy = elapsed - idle is exact,
# unlike the busy columns, which are sampled by a tick that stops while the core is idle.
core() { awk -v now="$(date +%s.%N)" '$1 == "cpu1" { print $5 + $6, $9, now }' /proc/stat; }
# Per thread of the server tree: name, CPU ticks and context switches (THREADS=1 prints them).
threads() {
  local p t
  for p in $PIDS; do for t in /proc/"$p"/task/*; do
    [ -r "$t/stat" ] || continue
    printf '%s/%s/%s %s %s %s\n' "$p" "${t##*/}" "$(tr ' ' '_' < "$t/comm")" \
      "$(sed 's/^.*) //' "$t/stat" | awk '{print $12 + $13}')" "$(awk '/^voluntary_ctxt/{print $2}' "$t/status")" "$(awk '/^nonvoluntary_ctxt/{print $2}' "$t/status")"
  done; done | sort
}
HZ=$(getconf CLK_TCK)
echo "server pids: $PIDS; $DURATION s per rate (+2 s warm-up); ${PREFIX:+prefix: $PREFIX}${REPLICA_PREFIX:+ replicas: $REPLICA_PREFIX}"
for rate in "$@"; do
  read -r c0 s0 f0 < <(snapshot)
  read -r i0 st0 t0 < <(core)
  [ -n "${THREADS:-}" ] && threads > "$WORK/threads0"
  STRACES=()
  if [ -n "${STRACE:-}" ]; then
    for p in $PIDS; do strace -f -c -o "$WORK/strace.$p" -p "$p" 2> /dev/null & STRACES+=($!); done
    sleep 0.5  # attached before the first request
  fi
  out=$(nice -n -20 taskset -c 0 "$LOADGEN" --url "$URL/endpoints/lr-ep/score" --body "$ROOT/testdata/models/lr20/v2_X.json" \
        --header "Authorization: Bearer $KEY" --rate "$rate" --duration "$DURATION" --warmup 2 --connections "${CONNECTIONS:-64}" \
        --series-ms "${SERIES_MS:-0}" | tail -1)
  read -r c1 s1 f1 < <(snapshot)
  read -r i1 st1 t1 < <(core)
  python3 - "$out" "$rate" "$DURATION" "$((c1 - c0))" "$((s1 - s0))" "$((f1 - f0))" "$HZ" "$((i1 - i0))" "$((st1 - st0))" "$t0" "$t1" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); rate, dur, ticks, cs, flt, hz, idle, steal, t0, t1 = map(float, sys.argv[2:])
elapsed = t1 - t0
sent = r["ok"] * (dur + 2) / dur
print(f"rate {rate:.0f}: achieved {r['achieved_rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.2f} p99 {r['p99_us'] / 1000:.2f} "
      f"p99.9 {r['p999_us'] / 1000:.2f} ms, errors {r['errors']}, server CPU {1e6 * ticks / hz / sent:.1f} us/req, "
      f"{cs / sent:.2f} context switches/req, {flt / sent:.3f} minor faults/req, "
      f"CPU 1 busy {100 * (1 - idle / hz / elapsed):.0f} % (steal {100 * steal / hz / elapsed:.1f} %)")
slow = [w for w in r.get("series", []) if w[2] > 5000]
if "series" in r:
    print(f"  {len(slow)} of {len(r['series'])} windows of {r['series_ms']} ms had a latency over 5 ms"
          + "".join(f"\n    at {t / 1000:6.1f} s: {n} answers, worst {m / 1000:.1f} ms" for t, n, m in slow[:40]))
EOF
  if [ -n "${THREADS:-}" ]; then
    threads > "$WORK/threads1"
    join "$WORK/threads0" "$WORK/threads1" | awk -v n="$rate" -v d="$DURATION" -v hz="$HZ" \
      '{ sent = n * (d + 2); printf "  %-40s %7.1f us/req %6.2f voluntary + %4.2f involuntary switches/req\n", $1, 1e6 * ($5 - $2) / hz / sent, ($6 - $3) / sent, ($7 - $4) / sent }'
  fi
  if [ ${#STRACES[@]} -gt 0 ]; then
    kill -INT "${STRACES[@]}" 2> /dev/null; wait "${STRACES[@]}" 2> /dev/null || true
    for p in $PIDS; do
      echo "  syscalls per request, pid $p ($(cat "/proc/$p/comm" 2> /dev/null)), warm-up included:"
      # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
      awk -v n="$rate" -v d="$DURATION" '$1 ~ /^[0-9.]+$/ && $NF != "total" {
          sent = n * (d + 2); calls = $4 / sent; errors = (NF == 6 ? $5 : 0) / sent
          if (calls >= 0.01) printf "    %-16s %6.2f calls %6.2f errors\n", $NF, calls, errors }' "$WORK/strace.$p"
    done
  fi
done
