#!/usr/bin/env bash
# Sluice beside its peers, in one run, under the peer kit's pinning and load (see bench/README.md).
#
#   bash bench/run.sh                      # full run: 20 s per concurrency level
#   DURATION=3 WARMUP=1 bash bench/run.sh  # quick check that everything works
#   bash bench/run.sh setup                # only wrk + the kit's MLServer venv, model, payloads
#   bash bench/run.sh python               # scoring script instead: Sluice vs azmlinfsrv on the same
#                                          # score.py (= SLUICE_MODES="python-gateway python-replica
#                                          # azmlinfsrv" PEERS=none RESULTS_TAG=python)
#
# 1. builds the release binary (cargo build --release -p sluice);
# 2. makes sure of wrk, the ONNX Runtime library, and the peer kit's MLServer venv + model +
#    payloads (only venv-model and venv-mlserver, with the kit's own commands; not `setup`);
# 3. measures, one after the other, with the server pinned to $SERVER_CPUS and wrk (1 thread)
#    pinned to $LOAD_CPUS, each in a private network namespace (`unshare -n`):
#      sluice-gateway      sluice server + lr deployment, through the gateway with the key
#      sluice-split-mirror the same, with 3 deployments: blue/green 50/50 live, shadow 20 % mirror
#      sluice-replica      the replica alone (the difference is the gateway's cost)
#      mlserver-onnx       via the kit: run_peers.sh bench mlserver-onnx
#      triton-python-onnx  via the kit, only if its venv is there (WITH_TRITON=1 builds it)
#    or, when asked (`python` subcommand or SLUICE_MODES), on examples/sklearn-score's score.py with
#    WORKER_COUNT Python workers in each (for each of $WORKER_COUNTS, default 1):
#      sluice-python-gateway  sluice server --python <dev venv> + a code_configuration deployment, key
#      sluice-python-replica  sluice replica-python alone
#      azmlinfsrv             azureml-inference-server-http (gunicorn), same venv, script and model
# 4. writes bench/results/<date>-<host>.jsonl (appended) and bench/results/<date>.md, and prints
#    the table with the gateway overhead, the sluice/mlserver throughput ratio and the cost of the
#    split + mirror against the single deployment.
#
# Knobs (environment): DURATION (20), WARMUP (5), CONCS (1,32), SERVER_CPUS (1), LOAD_CPUS (0),
#   BENCH_NICE (-20), NETNS (1), PEERS_ROOT (/tmp/sluice-peers), PEERS (default: mlserver-onnx,
#   plus triton-python-onnx when /tmp/sluice-peers/venv-pytriton exists), WITH_TRITON (0),
#   SKIP_BUILD (0), BIN_COMMIT (with SKIP_BUILD=1 and a binary built from a clean checkout: the
#   commit to name in the report), SLUICE_MODES (gateway split-mirror replica; also python-gateway,
#   python-replica, azmlinfsrv), WORKER_COUNTS (1; e.g. "1 2": the scoring-script modes once per
#   count), SLUICE_PYTHON (the scoring script's interpreter; default: scripts/python-env.sh's
#   venv), RESULTS_TAG (a word added to the result file names), KIT (the peer kit),
#   ORT_DYLIB_PATH (default: the Sluice cache's libonnxruntime.so.1.31.1), OPEN_LOOP (0.8: the open-loop
#   rate as a fraction of each server's own c=32 req/s; 0: none), PEER_OPEN_LOOP (1: the open-loop run for the
#   kit peers too), STEADY_SECONDS (30: bench/cpu_steadiness.py on the server core before and after the
#   measurements; 0: none).
set -euo pipefail
T0=$SECONDS
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/bench
KIT=${KIT:-$ROOT/../shared/bench/peers}
[ -f "$KIT/bench.py" ] && [ -f "$KIT/run_peers.sh" ] || { echo "error: the peer kit is not at $KIT (set KIT)" >&2; exit 1; }
KIT=$(cd "$KIT" && pwd)

if [ "${1:-}" = python ]; then  # the scoring-script comparison (see bench/README.md)
  SLUICE_MODES=${SLUICE_MODES:-python-gateway python-replica azmlinfsrv}
  PEERS=${PEERS:-none}
  RESULTS_TAG=${RESULTS_TAG-python}
fi
SLUICE_MODES=${SLUICE_MODES:-gateway gateway-batching split-mirror replica gateway-cnn}
WORKER_COUNTS=${WORKER_COUNTS:-1}
is_python_mode() { case $1 in python-gateway|python-replica|azmlinfsrv) return 0;; *) return 1;; esac; }
NATIVE_MODES="" PY_MODES=""
for m in $SLUICE_MODES; do
  if is_python_mode "$m"; then PY_MODES="$PY_MODES $m"; else NATIVE_MODES="$NATIVE_MODES $m"; fi
done
# Kit peers: by default MLServer (+ Triton) beside the ONNX rows; none for a scoring-script-only run.
if [ -z "${PEERS:-}" ]; then
  if [ -n "$NATIVE_MODES" ]; then PEERS=mlserver-onnx; else PEERS=none; fi
  # Triton, KServe and BentoML join when their kit venvs exist, or will once the set-up below has
  # built them (WITH_TRITON=1: Triton's; WITH_PEERS=1: all three).
  if [ "$PEERS" != none ]; then
    for pv in "triton-python-onnx pytriton" "kserve-onnx kserve" "bentoml-sklearn bentoml"; do
      read -r peer venv <<<"$pv"
      if [ -x "${PEERS_ROOT:-/tmp/sluice-peers}/venv-$venv/bin/python" ] || [ "${WITH_PEERS:-0}" = 1 ] ||
         { [ "$venv" = pytriton ] && [ "${WITH_TRITON:-0}" = 1 ]; }; then
        PEERS="$PEERS $peer"
      fi
    done
  fi
fi
[ "$PEERS" = none ] && PEERS=""

export DURATION=${DURATION:-20} WARMUP=${WARMUP:-5} CONCS=${CONCS:-1,32}
export SERVER_CPUS=${SERVER_CPUS:-1} LOAD_CPUS=${LOAD_CPUS:-0} BENCH_NICE=${BENCH_NICE:--20}
export NETNS=${NETNS:-1}
export PEERS_ROOT=${PEERS_ROOT:-/tmp/sluice-peers}
R=$PEERS_ROOT
UV=$R/tools/bin/uv
export UV_CACHE_DIR=$R/uv-cache   # as the kit's run_peers.sh
log() { echo "== [$((SECONDS - T0)) s] $*"; }

# --- 2a, 2c. wrk, and the kit's MLServer venv, model and payloads (need no Sluice binary) ------
prerequisites() {
  command -v wrk >/dev/null || { log "installing wrk"; apt-get update -qq && apt-get install -y -qq wrk; }
  # The kit's venvs, model and payloads serve the ONNX rows and the kit peers only.
  if [ "${1:-}" != all ] && [ -z "$NATIVE_MODES" ] && [ -z "$PEERS" ]; then return; fi

  # The same commands as run_peers.sh's setup() for the venvs this run needs.
  kit_venv() { # name check-command packages...
    local n=$1 check=$2; shift 2
    if [ -x "$R/venv-$n/bin/python" ] && [ -x "$R/venv-$n/bin/$check" ]; then return; fi
    log "creating $R/venv-$n ($*)"
    [ -x "$R/venv-$n/bin/python" ] || "$UV" venv -q -p 3.11 "$R/venv-$n"
    "$UV" pip install -q -p "$R/venv-$n/bin/python" "$@"
  }
  mkdir -p "$R" "$R/run" "$R/results" "$R/run/logs"
  [ -x "$UV" ] || { log "installing uv into $R/tools"; python3 -m venv "$R/tools" && "$R/tools/bin/pip" install -q uv; }
  kit_venv model python scikit-learn skl2onnx onnx onnxruntime numpy
  kit_venv mlserver mlserver mlserver mlserver-sklearn onnxruntime "uvloop<0.22"   # uvloop 0.22+ breaks MLServer 1.7.1
  if [ "${WITH_TRITON:-0}" = 1 ] || [ "${WITH_PEERS:-0}" = 1 ]; then kit_venv pytriton python nvidia-pytriton scikit-learn onnxruntime; fi
  if [ "${WITH_PEERS:-0}" = 1 ]; then
    kit_venv kserve python kserve scikit-learn onnxruntime
    kit_venv bentoml bentoml bentoml scikit-learn onnxruntime
  fi
  if [ ! -f "$R/models/lr/model.onnx" ] || [ ! -f "$R/models/row0.json" ]; then
    log "training the kit's model into $R/models"
    "$R/venv-model/bin/python" "$KIT/train.py" "$R/models"
  fi
  # `run_peers.sh prepare` writes the payloads and the MLServer model folders; its last step saves
  # the MLflow model with venv-mlflow, which this run does not build: that step may fail, the rest
  # must be there.
  log "run_peers.sh prepare"
  bash "$KIT/run_peers.sh" prepare >"$R/run/logs/prepare.log" 2>&1 || true
  for f in "$R/run/payloads/v2_X.json" "$R/run/mlserver-onnx/lr-onnx/model.onnx" "$R/run/mlserver-onnx/settings.json"; do
    [ -f "$f" ] || { echo "error: run_peers.sh prepare did not write $f; see $R/run/logs/prepare.log" >&2; exit 1; }
  done
  if ! cmp -s "$R/models/lr/model.onnx" "$ROOT/testdata/models/lr20/model_repository/lr/1/model.onnx"; then
    log "note: the kit's model.onnx and testdata/models/lr20 differ byte-wise (same recipe and graph; the fitted coefficients can differ in the last digits between scikit-learn builds)"
  fi
}
if [ "${1:-}" = setup ]; then prerequisites all; log "setup done"; exit 0; fi

# --- 1. the release binary ---------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET;; esac
BIN=${SLUICE_BIN:-$TARGET/release/sluice}  # SLUICE_BIN with SKIP_BUILD=1: another build, for an A/B
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --release -p sluice"
  (cd "$ROOT" && cargo build --release -p sluice)
  # The open-loop load generator (its own build: its features must not change the server's).
  (cd "$ROOT" && cargo build --release -p sluice-loadgen)
fi
LOADGEN=$TARGET/release/sluice-loadgen
OPEN_LOOP=${OPEN_LOOP:-0.8}
[ -x "$LOADGEN" ] || { log "no $LOADGEN: no open-loop run"; OPEN_LOOP=0; }
[ -x "$BIN" ] || { echo "error: no binary at $BIN" >&2; exit 1; }
# What the binary was built from, read now (others may edit the tree during the run).
if [ -n "${BIN_COMMIT:-}" ]; then  # a binary built elsewhere (SKIP_BUILD=1): its source, as told
  COMMIT="commit $BIN_COMMIT (binary $BIN)"
else
  COMMIT="commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  # What the build reads: crates/, the Cargo files, and python/ (embedded by crates/runtime/build.rs).
  SRC_PATHS=(crates Cargo.toml Cargo.lock python)
  [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- "${SRC_PATHS[@]}" 2>/dev/null)" ] && COMMIT="$COMMIT + uncommitted changes under ${SRC_PATHS[*]}"
  untracked=$(git -C "$ROOT" ls-files --others --exclude-standard -- "${SRC_PATHS[@]}" 2>/dev/null | wc -l || true)
  where=$(git -C "$ROOT" ls-files --others --exclude-standard --directory -- "${SRC_PATHS[@]}" 2>/dev/null | sed -n 1,4p | tr '\n' ' ' || true)
  if [ "${untracked:-0}" -gt 0 ]; then COMMIT="$COMMIT + $untracked untracked file(s) (${where% })"; fi
  if [ "${SKIP_BUILD:-0}" = 1 ]; then COMMIT="$COMMIT (SKIP_BUILD=1: the existing binary, not necessarily built from it)"; fi
fi

prerequisites

# --- 2d. the scoring script's interpreter (the dev venv, which also has azmlinfsrv) -----------------
if [ -n "$PY_MODES" ]; then
  if [ -z "${SLUICE_PYTHON:-}" ]; then
    SLUICE_PYTHON=$(bash "$ROOT/scripts/python-env.sh" | tail -1)/bin/python
  fi
  [ -x "$SLUICE_PYTHON" ] || { echo "error: no Python interpreter at $SLUICE_PYTHON (set SLUICE_PYTHON)" >&2; exit 1; }
  export SLUICE_PYTHON
  log "scoring scripts run with $SLUICE_PYTHON (azmlinfsrv: $("$SLUICE_PYTHON" -c 'import importlib.metadata as m; print(m.version("azureml-inference-server-http"))' 2>/dev/null || echo 'not installed'))"
fi

# --- 2b. the ONNX Runtime library, outside the network namespace (no network in there) ---------
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-${SLUICE_CACHE:-$HOME/.cache/sluice}/onnxruntime-1.31.1/libonnxruntime.so.1.31.1}
if [ -n "$NATIVE_MODES" ] && [ ! -f "$ORT_DYLIB_PATH" ]; then  # (scoring scripts need no ONNX Runtime)
  log "no $ORT_DYLIB_PATH: letting a sluice replica provision ONNX Runtime from PyPI"
  plog=$(mktemp); (unset ORT_DYLIB_PATH; exec "$BIN" replica --model-dir "$ROOT/testdata/models/lr20/model_repository" \
      --format triton --listen 127.0.0.1:0) >"$plog" 2>&1 &
  ppid_=$!
  for _ in $(seq 600); do grep -q SLUICE_REPLICA_LISTENING "$plog" && break; kill -0 $ppid_ 2>/dev/null || break; sleep 0.5; done
  kill $ppid_ 2>/dev/null || true; wait $ppid_ 2>/dev/null || true
  [ -f "$ORT_DYLIB_PATH" ] || { echo "error: ONNX Runtime could not be provisioned:" >&2; tail -5 "$plog" >&2; exit 1; }
  rm -f "$plog"
fi

# --- 3. the measurements ------------------------------------------------------------------
if [ "$NETNS" = 1 ] && ! unshare -n bash -c 'ip link set lo up' 2>/dev/null; then
  log "warning: unshare -n does not work here: every server runs on the host's loopback (NETNS=0)"
  NETNS=0
fi
export NETNS
in_ns() {
  if [ "$NETNS" = 1 ]; then unshare -n bash -c 'ip link set lo up && exec "$@"' _ "$@"; else "$@"; fi
}
TS=$(date -u +%Y%m%d-%H%M%S)
RUNFILE=$R/results/sluice-run-$TS.jsonl
: >"$RUNFILE"
row_name() { # mode workers -> the result's name, as sluice_bench.py gives it
  local n; if [ "$1" = azmlinfsrv ]; then n=azmlinfsrv; else n=sluice-$1; fi
  if is_python_mode "$1" && [ "$2" != 1 ]; then n=$n-w$2; fi
  echo "$n"
}
ROWS=$(for m in $NATIVE_MODES; do printf '%s ' "$(row_name "$m" 1)"; done
       for w in $WORKER_COUNTS; do for m in $PY_MODES; do printf '%s ' "$(row_name "$m" "$w")"; done; done)
log "measuring: $ROWS$PEERS (DURATION=$DURATION s per level, WARMUP=$WARMUP s, CONCS=$CONCS, server CPUs $SERVER_CPUS, wrk CPUs $LOAD_CPUS, NETNS=$NETNS)"
# gateway-batching: the gateway row on the kit's Triton model configuration (max_batch_size 64,
# dynamic_batching {}), so that Sluice batches the way Triton does in its row.
BATCH_REPO=$R/run/sluice-lr-batching
rm -rf "$BATCH_REPO" && mkdir -p "$BATCH_REPO/lr/1"
cp "$ROOT/testdata/models/lr20/model_repository/lr/1/model.onnx" "$BATCH_REPO/lr/1/"
cp "$HERE/lr-batching.pbtxt" "$BATCH_REPO/lr/config.pbtxt"
# gateway-cnn: the larger model (testdata/models/cnn, 28x28 images) with the same batching
# configuration as Triton's triton-python-cnn row below.
CNN_REPO=$R/run/sluice-cnn-batching
rm -rf "$CNN_REPO" && mkdir -p "$CNN_REPO/cnn/1"
cp "$ROOT/testdata/models/cnn/model_repository/cnn/1/model.onnx" "$CNN_REPO/cnn/1/"
cp "$HERE/cnn-batching.pbtxt" "$CNN_REPO/cnn/config.pbtxt"
# How steady the server core's speed is, before and after the measurements (see bench/cpu_steadiness.py).
STEADY_SECONDS=${STEADY_SECONDS:-30}
STEADYFILE=$R/results/steadiness-$TS.jsonl
: >"$STEADYFILE"
steadiness() {
  [ "$STEADY_SECONDS" = 0 ] && return
  log "server core's speed over $STEADY_SECONDS s ($1)"
  nice -n "$BENCH_NICE" python3 "$HERE/cpu_steadiness.py" --cpu "${SERVER_CPUS%%[,-]*}" --seconds "$STEADY_SECONDS" \
    --label "$1" --out "$STEADYFILE" >/dev/null || log "warning: cpu_steadiness.py failed"
}
steadiness before
for mode in $NATIVE_MODES; do
  extra=()
  case $mode in gateway|gateway-batching) [ "$OPEN_LOOP" != 0 ] && extra+=(--loadgen "$LOADGEN" --open-loop "$OPEN_LOOP");; esac
  if [ "$mode" = gateway-cnn ]; then
    extra+=(--mode gateway --name sluice-gateway-cnn --model-repo "$CNN_REPO" --triton-model cnn \
      --body "$HERE/cnn_body.json" --expect '"name":"probs"' --note "as sluice-gateway, but the larger model: \
testdata/models/cnn (two convolutions over a 28x28 image, 10 classes), one image per request (bench/cnn_body.json, \
4.7 KB), config bench/cnn-batching.pbtxt (max_batch_size 64, dynamic_batching {})")
  elif [ "$mode" = gateway-batching ]; then
    extra+=(--mode gateway --name sluice-gateway-batching --model-repo "$BATCH_REPO" --note "as sluice-gateway, but the \
model's config.pbtxt is the kit's Triton configuration (bench/lr-batching.pbtxt: max_batch_size 64, dims [20], \
dynamic_batching {}, so the replica runs queued requests together as one ONNX Runtime call)")
  else
    extra+=(--mode "$mode")
  fi
  in_ns python3 "$HERE/sluice_bench.py" "${extra[@]}" --bin "$BIN" --kit "$KIT" \
    --out "$RUNFILE" --log "$R/run/logs/sluice-$mode.log" || true
done
for w in $WORKER_COUNTS; do
  for mode in $PY_MODES; do
    in_ns python3 "$HERE/sluice_bench.py" --mode "$mode" --workers "$w" --python "$SLUICE_PYTHON" --bin "$BIN" \
      --kit "$KIT" --out "$RUNFILE" --log "$R/run/logs/$(row_name "$mode" "$w").log" || true
  done
done
# The larger model in Triton, when the ONNX Sluice row for it ran and the kit's Triton venv exists:
# the kit's own bench.py, with the kit's method, on bench/triton_cnn (Python backend + onnxruntime).
if [[ " $NATIVE_MODES " == *" gateway-cnn "* ]] && [ -x "$R/venv-pytriton/bin/python" ]; then
  rm -rf "$R/run/triton-cnn-src" && mkdir -p "$R/run/triton-cnn-src" "$R/run/triton-cnn"
  cp -r "$HERE/triton_cnn/cnn" "$R/run/triton-cnn-src/"
  cp "$ROOT/testdata/models/cnn/model_repository/cnn/1/model.onnx" "$R/run/triton-cnn-src/cnn/1/"
  in_ns python3 "$KIT/bench.py" --name triton-python-cnn \
    --cmd "bash $HERE/triton_serve_repo.sh $R/venv-pytriton $R/run/triton-cnn-src $R/run/triton-cnn 8100" \
    --url http://127.0.0.1:8100/v2/models/cnn/infer --body "$HERE/cnn_body.json" --expect '"name":"probs"' \
    --out "$RUNFILE" --log "$R/run/logs/triton-python-cnn.log" \
    --note "tritonserver 2.51 from the nvidia-pytriton wheel, Python backend (bench/triton_cnn: onnxruntime, \
1 thread, requests of a dynamic batch run as one), 1 instance, max_batch_size 64, dynamic_batching {}" || true
fi
# The larger model in MLServer and KServe too, when their kit venvs exist: the kit's ONNX peers, adapted to an
# image input and the model's own output name (bench/peers_cnn), with the kit's method.
if [[ " $NATIVE_MODES " == *" gateway-cnn "* ]]; then
  CNN_ONNX=$ROOT/testdata/models/cnn/model_repository/cnn/1/model.onnx
  if [ -x "$R/venv-mlserver/bin/mlserver" ]; then
    rm -rf "$R/run/mlserver-cnn" && cp -r "$HERE/peers_cnn/mlserver" "$R/run/mlserver-cnn" && cp "$CNN_ONNX" "$R/run/mlserver-cnn/cnn/"
    in_ns python3 "$KIT/bench.py" --name mlserver-cnn --cwd "$R/run/mlserver-cnn" --cmd "$R/venv-mlserver/bin/mlserver start ." \
      --url http://127.0.0.1:8081/v2/models/cnn/infer --body "$HERE/cnn_body.json" --expect '"name":"probs"' \
      --out "$RUNFILE" --log "$R/run/logs/mlserver-cnn.log" \
      --note "MLServer defaults, custom MLModel runtime with onnxruntime (bench/peers_cnn/mlserver: the kit's, input shape kept)" || true
  else
    log "no $R/venv-mlserver: no mlserver-cnn row (bash bench/run.sh setup installs the kit's venvs)"
  fi
  if [ -x "$R/venv-kserve/bin/python" ]; then
    rm -rf "$R/run/kserve-cnn" && mkdir -p "$R/run/kserve-cnn" && cp "$CNN_ONNX" "$R/run/kserve-cnn/"
    in_ns python3 "$KIT/bench.py" --name kserve-cnn \
      --cmd "$R/venv-kserve/bin/python $HERE/peers_cnn/kserve_cnn.py --kit-server $KIT/kserve_server.py --model_name cnn --model_dir $R/run/kserve-cnn --http_port 8090 --backend onnx" \
      --url http://127.0.0.1:8090/v2/models/cnn/infer --body "$HERE/cnn_body.json" --expect '"name":"probs"' \
      --out "$RUNFILE" --log "$R/run/logs/kserve-cnn.log" \
      --note "KServe ModelServer defaults, onnxruntime, v2 REST (bench/peers_cnn/kserve_cnn.py: the kit's server, every output by name)" || true
  else
    log "no $R/venv-kserve: no kserve-cnn row"
  fi
fi
if [ -n "$PEERS" ]; then
  # The kit's bench prints its progress lines ("[peer] ...") and then its own table; keep the former.
  # shellcheck disable=SC2086
  { RESULTS=$RUNFILE bash "$KIT/run_peers.sh" bench $PEERS 2>"$R/run/logs/run_peers.stderr" || true; } | { grep '^\[' || true; }
fi

# The open-loop run for the kit peers too: each peer that answered, at $OPEN_LOOP x its own c=32 req/s, with the
# load generator, pinning and namespace of Sluice's open-loop rows (bench/open_loop_peer.py), started by the kit's
# own command (run_peers.sh's peer()).
OLFILE=$R/results/open-loop-peers-$TS.jsonl
: >"$OLFILE"
OL_FRACTION=$(echo "$OPEN_LOOP" | tr ',' ' ' | awk '{print $NF}')
if [ -n "$PEERS" ] && [ "$OL_FRACTION" != 0 ] && [ "${PEER_OPEN_LOOP:-1}" = 1 ]; then
  for p in $PEERS; do
    rate=$(python3 - "$RUNFILE" "$p" "$OL_FRACTION" <<'EOF'
import json, sys
runs = [r for line in open(sys.argv[1]) if line.strip() for r in [json.loads(line)] if r.get("name") == sys.argv[2]]
best = max((x["rps"] for x in (runs[-1].get("runs") or []) if x.get("rps")), default=0) if runs and runs[-1].get("ok") else 0
print(round(float(sys.argv[3]) * best))
EOF
)
    [ "$rate" -gt 0 ] 2>/dev/null || { log "$p: no c=32 result, no open-loop run"; continue; }
    # The kit's peer() reads HERE, R, RUN and M, and sets CMD, URL, BODY, EXPECT and CWD.
    # shellcheck disable=SC2034  # read by the kit's peer(), which shellcheck cannot see
    spec=$(HERE=$KIT RUN=$R/run M=$R/models
           eval "$(sed -n '/^peer() {/,/^}/p' "$KIT/run_peers.sh")"
           peer "$p" >/dev/null && declare -p CMD URL BODY EXPECT CWD) || { log "$p: the kit has no command for it"; continue; }
    eval "$spec"
    log "$p: open loop at $rate req/s ($OL_FRACTION of its c=32 req/s)"
    in_ns python3 "$HERE/open_loop_peer.py" --name "$p" --cmd "$CMD" --cwd "$CWD" --url "$URL" --body "$R/run/payloads/$BODY" \
      --expect "$EXPECT" --rates "$rate" --loadgen "$LOADGEN" --server-cpus "$SERVER_CPUS" --load-cpus "$LOAD_CPUS" \
      --duration "$DURATION" --out "$OLFILE" --log "$R/run/logs/$p.open-loop.log" | { grep '^\[' || true; }
  done
fi
steadiness after

# --- 4. results -------------------------------------------------------------------------------
DAY=$(date -u +%Y-%m-%d)
TAG=${RESULTS_TAG:+-$RESULTS_TAG}
OUT=$HERE/results
mkdir -p "$OUT"
JSONL=$OUT/$DAY$TAG-$(hostname -s).jsonl
MD=$OUT/$DAY$TAG.md
cat "$RUNFILE" >>"$JSONL"
# The peers' open-loop runs and the steadiness probes have their own schemas: files of their own beside it.
[ -s "$OLFILE" ] && cat "$OLFILE" >>"${JSONL%.jsonl}-open-loop-peers.jsonl"
[ -s "$STEADYFILE" ] && cat "$STEADYFILE" >>"${JSONL%.jsonl}-steadiness.jsonl"
COMMIT="$COMMIT, release build ($(rustc --version 2>/dev/null || echo rustc))"
NS_TEXT=$([ "$NETNS" = 1 ] && echo "each server + its wrk in a private network namespace (unshare -n, loopback only)" || echo "host loopback (no network namespace)")
log "writing $MD"
TITLE="Sluice beside its peers"
[ -z "$NATIVE_MODES" ] && [ -z "$PEERS" ] && TITLE="Scoring scripts (score.py): Sluice beside azmlinfsrv"
WK_TEXT=""
[ -n "$PY_MODES" ] && WK_TEXT="; scoring script examples/sklearn-score/onlinescoring/score.py, one-row body bench/score_body.json, WORKER_COUNT $WORKER_COUNTS (the same in every server; -wN in a row's name when not 1), interpreter $SLUICE_PYTHON"
[ "$DURATION" -lt 20 ] && TITLE="$TITLE: SHORT RUN ($DURATION s per level), a check that everything works, not numbers to quote"
python3 "$HERE/summarize.py" "$RUNFILE" --kit "$KIT" --md "$MD" --commit "$COMMIT" --title "$TITLE" --raw "$(basename "$JSONL")" \
  --open-loop-peers "$OLFILE" --steadiness "$STEADYFILE" \
  --settings "$DURATION s per concurrency level (c = $CONCS), $([ "$WARMUP" = 0 ] && echo "no warm-up" || echo "$WARMUP s warm-up at c=32"); server pinned to CPU $SERVER_CPUS, wrk -t1 pinned to CPU $LOAD_CPUS, both nice $BENCH_NICE (autogroup too); $NS_TEXT$WK_TEXT; run $TS UTC"
echo "results: $JSONL (this run also in $RUNFILE)"
echo "table:   $MD"
echo "logs:    $R/run/logs/"
log "done"
FAILED=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if l.strip() and not json.loads(l)["ok"]))' "$RUNFILE")
[ "$FAILED" = 0 ] || { echo "warning: $FAILED server(s) failed; see the logs" >&2; exit 1; }
