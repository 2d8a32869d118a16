#!/usr/bin/env bash
# Sluice's serverless LLM endpoint beside llama-cpp-python's OpenAI-compatible server, in one run,
# on the same GGUF (SmolLM2-135M-Instruct Q4_1), the same CPUs and the same thread count.
#
#   bash bench/llm.sh              # build, install, measure, write bench/results/<date>-llm.md
#   SKIP_BUILD=1 bash bench/llm.sh # use the existing target/release/sluice
#   bash bench/llm.sh setup        # only the llama-cpp-python venv
#
# 1. builds the release binary (cargo build --release -p sluice);
# 2. makes sure of the llama-cpp-python venv ($LLM_VENV, default ~/.cache/sluice/bench-llm-venv;
#    `pip install llama-cpp-python[server]==$LLAMA_CPP_PYTHON`, built from source with cmake, about
#    10-20 minutes on 2 busy cores the first time; kept across runs);
# 3. measures, one server at a time, each started as `taskset -c $CPUS` (default: every CPU) with
#    $THREADS compute threads (default: the number of CPUs in $CPUS):
#      sluice              `sluice server` + serverless endpoint `llm` on
#                          azureml://registries/azureml/models/SmolLM2-135M-Instruct, through the
#                          gateway with the endpoint's key. Its engine (`sluice replica-llm`, started
#                          by the server, inheriting the affinity) takes the available parallelism as
#                          its thread count, i.e. $THREADS; the runner checks both.
#      sluice-engine       (only with ENGINE=1) `sluice replica-llm` alone, no gateway, --threads $THREADS
#      llama-cpp-python    `python -m llama_cpp.server --model <the same gguf> --n_ctx 2048
#                          --n_threads $THREADS --n_threads_batch $THREADS --interrupt_requests False`
#                          (its default, --interrupt_requests True, makes every new request cut the
#                          stream in progress: concurrent clients would get empty answers)
#      (llama-cpp-python's server has no parallel-sequences option; if a later version grows one,
#      `--n_parallel` or similar, the runner adds a row with it, see PEER_PARALLEL.)
#    The load generator (bench/llm_bench.py, threads + http.client) runs on the same CPUs, unpinned.
# 4. writes bench/results/<date>-llm.jsonl (appended) and bench/results/<date>-llm.md (table).
#
# Knobs (environment): CPUS (0-$(($(nproc)-1))), THREADS (CPUs in $CPUS), PORT (9480), PEER_PORT (9481),
#   SKIP_BUILD (0), LLM_VENV, LLAMA_CPP_PYTHON (0.3.36), MAX_TOKENS (128), SINGLE (5), CLIENTS (8),
#   PER_CLIENT (3), BENCH_NICE (-20), ENGINE (0), PEER_PARALLEL (8: sequences for the parallel peer row, when the
#   option exists), RESULTS_TAG (llm).
set -euo pipefail
T0=$SECONDS
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/bench
log() { echo "== [$((SECONDS - T0)) s] $*"; }

LLM_VENV=${LLM_VENV:-$HOME/.cache/sluice/bench-llm-venv}
LLAMA_CPP_PYTHON=${LLAMA_CPP_PYTHON:-0.3.36}
CPUS=${CPUS:-0-$(($(nproc) - 1))}
ncpus() { python3 -c 'import sys
n=0
for p in sys.argv[1].split(","):
    a,_,b=p.partition("-"); n+=int(b or a)-int(a)+1
print(n)' "$1"; }
THREADS=${THREADS:-$(ncpus "$CPUS")}
PORT=${PORT:-9480} PEER_PORT=${PEER_PORT:-9481}
MAX_TOKENS=${MAX_TOKENS:-128} SINGLE=${SINGLE:-5} CLIENTS=${CLIENTS:-8} PER_CLIENT=${PER_CLIENT:-3}
PEER_PARALLEL=${PEER_PARALLEL:-8}
GGUF=${GGUF:-${SLUICE_CACHE:-$HOME/.cache/sluice}/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
MODEL_ID=azureml://registries/azureml/models/SmolLM2-135M-Instruct

# --- 2. the llama-cpp-python venv ---------------------------------------------------------------
peer_venv() {
  if "$LLM_VENV/bin/python" -c "import importlib.metadata as m, sys, llama_cpp.server; sys.exit(m.version('llama-cpp-python') != '$LLAMA_CPP_PYTHON')" 2>/dev/null; then
    return
  fi
  log "installing llama-cpp-python[server]==$LLAMA_CPP_PYTHON into $LLM_VENV (builds llama.cpp from source; 10-20 min)"
  [ -x "$LLM_VENV/bin/python" ] || python3 -m venv "$LLM_VENV"
  local t=$SECONDS
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$LLM_VENV/bin/pip" install --no-cache-dir -q "llama-cpp-python[server]==$LLAMA_CPP_PYTHON"
  log "llama-cpp-python installed in $((SECONDS - t)) s"
}
if [ "${1:-}" = setup ]; then peer_venv; log "setup done"; exit 0; fi

# --- 1. the release binary ----------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET;; esac
BIN=$TARGET/release/sluice
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --release -p sluice"
  (cd "$ROOT" && cargo build --release -p sluice)
fi
[ -x "$BIN" ] || { echo "error: no binary at $BIN" >&2; exit 1; }
COMMIT="commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null)" ] && COMMIT="$COMMIT + uncommitted changes under crates/"
[ "${SKIP_BUILD:-0}" = 1 ] && COMMIT="$COMMIT (SKIP_BUILD=1: the existing binary, built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'))"

peer_venv
PEER_PY=$LLM_VENV/bin/python
PEER_VERSION=$("$PEER_PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')

# --- 3. the measurements ------------------------------------------------------------------------
# Priority: this shell (so every server and the load generator) and its autogroup at $BENCH_NICE,
# so that other work on the machine (compiles) competes less, as bench/run.sh does.
BENCH_NICE=${BENCH_NICE:--20}
renice -n "$BENCH_NICE" -p $$ >/dev/null 2>&1 || log "warning: cannot renice to $BENCH_NICE"
echo "$BENCH_NICE" >/proc/self/autogroup 2>/dev/null || true
TS=$(date -u +%Y%m%d-%H%M%S)
WORK=${WORK:-/tmp/sluice-llm-bench/$TS}
mkdir -p "$WORK"
RUNFILE=$WORK/run.jsonl
: >"$RUNFILE"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_for_line() { # file pattern pid seconds
  for _ in $(seq $(($4 * 4))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.25
  done
  return 1
}
stop() { # pid
  kill "$1" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$1" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# The CPUs a process may run on and its thread count, from /proc.
proc_info() { echo "cpus=$(awk '/Cpus_allowed_list/{print $2}' /proc/$1/status) os_threads=$(awk '/^Threads/{print $2}' /proc/$1/status)"; }
bench() { # name threads note url [headers or --tokenize-url=URL...]
  local name=$1 threads=$2 note=$3 url=$4; shift 4
  local hdr=(); for h in "$@"; do case $h in --*) hdr+=("$h");; *) hdr+=(--header "$h");; esac; done
  python3 "$HERE/llm_bench.py" run --name "$name" --threads "$threads" --note "$note" --url "$url" "${hdr[@]}" \
    --max-tokens "$MAX_TOKENS" --single "$SINGLE" --clients "$CLIENTS" --per-client "$PER_CLIENT" --out "$RUNFILE" || true
}

log "measuring: sluice$([ "${ENGINE:-0}" = 1 ] && echo ' sluice-engine') llama-cpp-python $PEER_VERSION (CPUs $CPUS, $THREADS threads, max_tokens $MAX_TOKENS, $SINGLE single, $CLIENTS x $PER_CLIENT concurrent)"

# sluice: server + serverless endpoint through the gateway.
DATA=$WORK/sluice-data
mkdir -p "$DATA"
taskset -c "$CPUS" "$BIN" server --addr "127.0.0.1:$PORT" --data-dir "$DATA" >"$WORK/sluice.log" 2>&1 &
SPID=$!; PIDS+=("$SPID")
wait_for_line "$WORK/sluice.log" SLUICE_LISTENING "$SPID" 60 || { echo "error: sluice server did not start; see $WORK/sluice.log" >&2; tail -20 "$WORK/sluice.log" >&2; exit 1; }
URL=http://127.0.0.1:$PORT
cli() { "$BIN" --server "$URL" --data-dir "$DATA" "$@"; }
printf 'name: llm\nmodel_id: %s\n' "$MODEL_ID" >"$WORK/llm.yml"
log "sluice: creating serverless endpoint llm ($MODEL_ID; fetches the GGUF the first time)"
cli serverless-endpoint create --file "$WORK/llm.yml" >"$WORK/create.json"
KEY=$(cli serverless-endpoint get-credentials --name llm | python3 -c 'import json,sys; print(json.load(sys.stdin)["primaryKey"])')
EPID=$(pgrep -f -P "$SPID" replica-llm | head -1 || true)
ENGINE_INFO="engine pid ${EPID:-?} $([ -n "$EPID" ] && proc_info "$EPID")"
log "sluice: $ENGINE_INFO ($(tr '\0' ' ' </proc/"${EPID:-self}"/cmdline | cut -c1-300))"
bench sluice "$THREADS" "gateway + serverless endpoint; $ENGINE_INFO" "$URL/serverless/llm/v1/chat/completions" "Authorization: Bearer $KEY"
log "sluice after the run: $([ -n "$EPID" ] && proc_info "$EPID")"
stop "$SPID"
[ -n "$EPID" ] && stop "$EPID" 2>/dev/null || true
[ -f "$GGUF" ] || { echo "error: no GGUF at $GGUF (the sluice row should have provisioned it)" >&2; exit 1; }

# sluice-engine: the engine alone (the difference with `sluice` is the gateway's cost).
if [ "${ENGINE:-0}" = 1 ]; then
  taskset -c "$CPUS" "$BIN" replica-llm --name SmolLM2-135M-Instruct --task chat-completion --model "$GGUF" \
    --context-length 2048 --threads "$THREADS" --addr "127.0.0.1:$PORT" >"$WORK/engine.log" 2>&1 &
  RPID=$!; PIDS+=("$RPID")
  if wait_for_line "$WORK/engine.log" SLUICE_REPLICA_LISTENING "$RPID" 120; then
    bench sluice-engine "$THREADS" "sluice replica-llm alone, --threads $THREADS; $(proc_info "$RPID")" "http://127.0.0.1:$PORT/v1/chat/completions"
  else
    echo "warning: replica-llm did not start; see $WORK/engine.log" >&2
  fi
  stop "$RPID"
fi

# llama-cpp-python: one request at a time (its server serialises requests on one Llama object).
peer() { # name note extra-args...
  local name=$1 note=$2; shift 2
  taskset -c "$CPUS" "$PEER_PY" -m llama_cpp.server --model "$GGUF" --n_ctx 2048 \
    --n_threads "$THREADS" --n_threads_batch "$THREADS" \
    --interrupt_requests False --host 127.0.0.1 --port "$PEER_PORT" "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!; PIDS+=("$pid")
  if wait_for_line "$WORK/$name.log" "Uvicorn running" "$pid" 120; then
    bench "$name" "$THREADS" "$note; $(proc_info "$pid")" "http://127.0.0.1:$PEER_PORT/v1/chat/completions" \
      "--tokenize-url=http://127.0.0.1:$PEER_PORT/extras/tokenize"
  else
    echo "warning: $name did not start; see $WORK/$name.log" >&2; tail -5 "$WORK/$name.log" >&2
  fi
  stop "$pid"
}
peer llama-cpp-python "llama_cpp.server $PEER_VERSION, --n_ctx 2048 --n_threads $THREADS --n_threads_batch $THREADS --interrupt_requests False"
PAR_FLAG=$("$PEER_PY" -m llama_cpp.server --help 2>/dev/null | grep -oE -- '--n_parallel|--parallel|--n_seq_max' | head -1 || true)
if [ -n "$PAR_FLAG" ]; then
  peer llama-cpp-python-parallel "$PAR_FLAG $PEER_PARALLEL" "$PAR_FLAG" "$PEER_PARALLEL"
else
  log "llama-cpp-python $PEER_VERSION: no parallel-sequences option in llama_cpp.server --help (no --n_parallel / --parallel / --n_seq_max)"
fi

# --- 4. results -----------------------------------------------------------------------------------
DAY=$(date -u +%Y-%m-%d)
TAG=${RESULTS_TAG:-llm}
OUT=$HERE/results
mkdir -p "$OUT"
cat "$RUNFILE" >>"$OUT/$DAY-$TAG.jsonl"
MD=$OUT/$DAY-$TAG.md
HDR="# Serverless LLM: Sluice beside llama-cpp-python (SmolLM2-135M-Instruct Q4_1)\\n\\n"
HDR+="Run $TS UTC, $COMMIT, release build; llama-cpp-python $PEER_VERSION. Each server alone on CPUs $CPUS"
HDR+=" (taskset) with $THREADS compute threads, nice $BENCH_NICE; load generator on the same CPUs. max_tokens $MAX_TOKENS, temperature 0,"
HDR+=" streaming; single stream: median of $SINGLE; concurrent: $CLIENTS clients x $PER_CLIENT requests.\\n\\n"
HDR+="Machine: $(nproc) CPUs, $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2}').\\n\\n"
python3 "$HERE/llm_bench.py" table "$RUNFILE" --md "$MD" --header-text "$HDR"
echo "raw:   $OUT/$DAY-$TAG.jsonl (this run also in $RUNFILE)"
echo "table: $MD"
echo "logs:  $WORK"
log "done"
