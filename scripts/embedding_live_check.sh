#!/usr/bin/env bash
# Live check, by hand: Sluice's serverless embeddings (all-MiniLM-L6-v2) against the real
# sentence-transformers library. Starts a throwaway server, creates an embeddings endpoint, and
# runs scripts/embedding_live_check.py, which fails if any cosine is below 0.99.
#
# Why not CI: sentence-transformers needs torch, and torch from PyPI pulls ~3 GB of CUDA wheels,
# too heavy for CI. CI instead pins reference values computed with the same library
# (scripts/embedding_reference.py) in crates/llm/tests/embed.rs.
#
# The venv (once):
#   python3 -m venv ~/.cache/sluice/st-venv
#   ~/.cache/sluice/st-venv/bin/pip install torch sentence-transformers openai numpy
# With an older torch (< 2.6), pin "transformers<5" "sentence-transformers<6": transformers 5
# disables torch < 2.6 and sentence-transformers then fails to import.
#
# Usage: scripts/embedding_live_check.sh
# Env: SLUICE_BIN (default target/release/sluice), ST_PYTHON (default the venv above),
#      ORT_DYLIB_PATH (passed to the server), SLUICE_CACHE (where the model folder is).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SLUICE_BIN:-$repo/target/release/sluice}"
py="${ST_PYTHON:-$HOME/.cache/sluice/st-venv/bin/python}"
model_dir="${SLUICE_CACHE:-$HOME/.cache/sluice}/models/all-minilm-l6-v2"
name=emb

tmp="$(mktemp -d)"
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Port 0: the kernel picks a free loopback port; the server prints it as SLUICE_LISTENING.
"$bin" server --addr 127.0.0.1:0 --data-dir "$tmp/data" >"$tmp/server.out" 2>"$tmp/server.log" &
pid=$!
url=""
for _ in $(seq 100); do
    url="$(sed -n 's/^SLUICE_LISTENING //p' "$tmp/server.out")"
    [[ -n "$url" ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$url" ]]; then
    echo "the server did not start:" >&2; cat "$tmp/server.log" >&2; exit 1
fi
echo "server: $url"

cli() { "$bin" --server "$url" --data-dir "$tmp/data" "$@"; }
printf 'name: %s\nmodel_id: azureml://registries/azureml/models/all-MiniLM-L6-v2\nauth_mode: key\n' "$name" \
    >"$tmp/endpoint.yml"
cli serverless-endpoint create --file "$tmp/endpoint.yml" >/dev/null # waits until the model is ready
key="$(cli serverless-endpoint get-credentials --name "$name" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["primaryKey"])')"

status=0
"$py" "$repo/scripts/embedding_live_check.py" --url "$url" --name "$name" --key "$key" --model-dir "$model_dir" \
    || status=$?
exit "$status"
