#!/bin/bash
# Run the tritonserver binary of the nvidia-pytriton wheel on a model repository, CPU only, loopback
# only: the kit's triton_serve.sh (../shared/bench/peers) without its lr-specific config edit, for
# bench/run.sh's triton-python-cnn row.
# usage: triton_serve_repo.sh VENV REPO RUN_DIR HTTP_PORT
set -e
VENV=$1; REPO=$2; RUN=$3; PORT=${4:-8100}
TS=$VENV/lib/python3.11/site-packages/pytriton/tritonserver
PYLIB=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
# The Python backend's stub must match the interpreter: a backend folder with the wheel's cp311 stub.
rm -rf "$RUN/triton_backends"; mkdir -p "$RUN/triton_backends/python"
ln -s "$TS"/backends/python/* "$RUN/triton_backends/python/"
ln -s "$TS/python_backend_stubs/3.11/triton_python_backend_stub" "$RUN/triton_backends/python/"
export LD_LIBRARY_PATH=$PYLIB:${LD_LIBRARY_PATH:-}
export PATH=$VENV/bin:$PATH   # the stub's embedded CPython finds the venv's site-packages through python3 on PATH
exec "$TS/bin/tritonserver" --model-repository="$REPO" --backend-directory="$RUN/triton_backends" \
  --http-address=127.0.0.1 --http-port="$PORT" --grpc-address=127.0.0.1 --grpc-port=$((PORT + 1)) \
  --metrics-address=127.0.0.1 --metrics-port=$((PORT + 2)) --allow-gpu-metrics=false --log-verbose=0
