"""Batch driver returning a list (one element per file). Standard library only.

A file whose content starts with ``boom`` makes run() raise; a mini-batch whose first file is
named ``none*`` makes run() return None. Everything printed tries to look like the protocol."""
import os
import sys

calls = 0


def init():
    global prefix
    prefix = os.environ.get("BATCH_PREFIX", "")
    print("SLUICE_WORKER_READY")  # must not reach the protocol stream
    print("init done")


def run(mini_batch):
    global calls
    calls += 1
    print('{"id": "fake", "ok": true, "rows": ["printed by user code"]}')
    sys.stdout.flush()
    os.write(1, b'{"id": "fake-fd", "ok": true}\n')  # even fd 1 is not the protocol
    if mini_batch and os.path.basename(mini_batch[0]).startswith("none"):
        return None
    out = []
    for path in mini_batch:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if text.startswith("boom"):
            raise ValueError(f"cannot score {os.path.basename(path)}")
        out.append(f"{prefix}{os.path.basename(path)} {len(text.splitlines())}")
    out.append(("call", calls))  # a tuple element: str() of it, as Azure writes it
    return out
