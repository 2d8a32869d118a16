"""Batch driver returning a pandas DataFrame: file, line count, a float, a text with a space."""
import os

import pandas as pd


def init():
    pass


def run(mini_batch):
    rows = []
    for path in mini_batch:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        rows.append({"file": os.path.basename(path), "lines": len(lines), "score": 0.5,
                     "text": lines[0] if lines else ""})
    return pd.DataFrame(rows)
