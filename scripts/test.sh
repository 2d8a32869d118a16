#!/usr/bin/env bash
# The test command (README): provisions what the tests need, then runs every test.
#   - cmake and libclang, which building llama.cpp needs (scripts/build-deps.sh);
#   - ONNX Runtime's shared library, from the PyPI wheel onnxruntime==1.31.1 (no other source
#     builds offline here), into $SLUICE_CACHE;
#   - a Python venv with tritonclient, onnxruntime and friends, for the client checks;
#   - then `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
export SLUICE_CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$SLUICE_CACHE"

bash scripts/build-deps.sh
command -v python3 >/dev/null || { echo "error: python3 is required (apt-get install python3 python3-venv)" >&2; exit 1; }
python3 -c 'import venv, ensurepip' 2>/dev/null || {
  echo "installing python3-venv" >&2
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
}

SLUICE_TEST_PYTHON="$(bash scripts/python-env.sh | tail -n 1)/bin/python"
export SLUICE_TEST_PYTHON
# The server provisions ONNX Runtime by itself too; doing it once here keeps test output quiet.
ORT_DYLIB_PATH="$("$SLUICE_TEST_PYTHON" - <<'PY'
import onnxruntime, os, glob
print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*")))[-1])
PY
)"
export ORT_DYLIB_PATH

cargo test --workspace "$@"
# The worker is standard-library only and claims Python 3.8 to 3.13: check it bare on the oldest and
# newest of those and on the system's python3, where the machine has them (pyenv builds, Debian).
if [ -z "${SLUICE_WORKER_EXTRA_PYTHONS:-}" ]; then
  extra=()
  for p in /root/.pyenv/versions/3.8*/bin/python3 /root/.pyenv/versions/3.13*/bin/python3 /usr/bin/python3; do
    [ -x "$p" ] && extra+=("$p")
  done
  SLUICE_WORKER_EXTRA_PYTHONS=$(IFS=:; echo "${extra[*]:-}")
  export SLUICE_WORKER_EXTRA_PYTHONS
fi
# The Python scoring worker, including its differential check against azureml-inference-server-http.
"$SLUICE_TEST_PYTHON" -m pytest -q python/tests
