# A generated "driver" script: the real score module is exposed as ``driver_module``.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inner_score as driver_module  # noqa: E402

INIT_CALLS = []


def init():
    INIT_CALLS.append("outer")
    driver_module.init()


def run(raw_data):  # never called: the worker calls driver_module.run directly
    return {"from": "outer"}
