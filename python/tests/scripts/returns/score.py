# run() returns different kinds of values depending on the raw input.
import json

import numpy as np


def init():
    pass


def run(raw_data):
    if raw_data == "str":
        return json.dumps({"a": 1})
    if raw_data == "none":
        return None
    if raw_data == "numpy":
        return np.array([1.0, 2.0])
    if raw_data == "list":
        return [1, 2.5, "x", None, True]
    if raw_data == "unicode":
        return "héllo ✓"
    if raw_data == "raise":
        raise ValueError("scoring failed on purpose")
    if raw_data == "float64":
        return {"v": np.float64(1.5)}
    return {"echo": raw_data}
