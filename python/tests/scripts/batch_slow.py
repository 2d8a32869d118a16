"""run() sleeps for the number of seconds written in each file, announcing itself on stderr."""
import sys
import time


def init():
    pass


def run(mini_batch):
    print("slow run started", file=sys.stderr, flush=True)
    for path in mini_batch:
        with open(path, encoding="utf-8") as f:
            time.sleep(float(f.read().strip() or 0))
    return [f"done {p}" for p in mini_batch]
