#!/usr/bin/env bash
# Create (or reuse) the Sluice development venv and install scripts/requirements-dev.txt.
#
#   venv path: ${SLUICE_CACHE:-$HOME/.cache/sluice}/venv
#   stamp:     <venv>/.sluice-requirements.sha256 (sha256 of requirements-dev.txt + python version)
#
# Idempotent: if the venv exists and its stamp matches, nothing is installed.
# The last line on stdout is always the venv path; progress goes to stderr.
# Usage:  VENV=$(scripts/python-env.sh | tail -n1); "$VENV/bin/python" ...
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQ="$HERE/requirements-dev.txt"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
VENV="$CACHE/venv"
STAMP="$VENV/.sluice-requirements.sha256"
PY="${PYTHON:-python3}"

log() { echo "python-env: $*" >&2; }

[ -f "$REQ" ] || { log "missing $REQ"; exit 1; }
want="$( { cat "$REQ"; "$PY" -c 'import sys; print(sys.version_info[:2])'; } | sha256sum | cut -d' ' -f1)"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  log "reusing $VENV"
  echo "$VENV"
  exit 0
fi

mkdir -p "$CACHE"
# Serialise concurrent callers (several test processes may call this at once).
exec 9>"$CACHE/.venv.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
# Re-check after taking the lock: another caller may have finished the job.
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  log "reusing $VENV"
  echo "$VENV"
  exit 0
fi

t0=$SECONDS
if [ -d "$VENV" ]; then
  log "requirements changed or venv incomplete: rebuilding $VENV"
  rm -rf "$VENV"
fi
log "creating $VENV"
"$PY" -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip uv >&2 || true
if [ -x "$VENV/bin/uv" ]; then
  "$VENV/bin/uv" pip install -q -p "$VENV/bin/python" -r "$REQ" >&2
else
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
fi
echo "$want" > "$STAMP"
log "ready in $((SECONDS - t0)) s"
echo "$VENV"
