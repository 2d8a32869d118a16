#!/usr/bin/env python3
"""Compares a live Sluice serverless embedding endpoint with the real sentence-transformers.

By hand, not CI; run through scripts/embedding_live_check.sh (which starts a server), or:
    python scripts/embedding_live_check.py --url http://127.0.0.1:8080 --name emb --key KEY \
        --model-dir ~/.cache/sluice/models/all-minilm-l6-v2

Exits 1 when any cosine (batched or one-by-one) is below 0.99.
"""
import argparse
import sys

import numpy as np
import openai
from openai import OpenAI
from sentence_transformers import SentenceTransformer

LONG = (
    "Serving machine learning models in production involves far more than loading weights: "
    "requests must be authenticated, batched, metered and routed to healthy replicas, while "
    "operators watch latency percentiles, memory pressure and error rates across deployments. "
    "A self-hosted platform has to provision model files, verify their checksums, restart "
    "crashed workers, roll traffic gradually from one version to the next, and keep per-key "
    "usage records accurate enough to bill customers, all without surprising the clients that "
    "were written against a hosted cloud API and expect identical request and response shapes. "
    "When a replica runs out of memory halfway through a long batch, the gateway should retry "
    "the request elsewhere, tell the caller what happened in plain words, and never charge twice "
    "for tokens that produced no answer; dashboards then show the incident next to the rollout."
)

SENTENCES = [
    "This is a test sentence.",
    "A man is playing a guitar.",
    "Hello",
    "The quick brown fox jumps over the lazy dog.",
    "Café crème brûlée à la française, naïve façade, Ångström, Straße.",
    "I love pizza 🍕🍕 and sunshine ☀️! 😀👍",
    "def add(a, b):\n    return a + b  # returns the sum",
    "In 2023, revenue grew 12.5% to $4,321,000 (vs. 3.84M in 2022); see table #7.",
    "東京は日本の首都です。北京是中国的首都。",
    "Привет, как дела? Γειά σου κόσμε.",
    "   spaces   and\ttabs\nand newlines   ",
    LONG,
]
TOO_LONG = " ".join([LONG] * 2)  # over 256 tokens: sentence-transformers truncates


def cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--name", required=True, help="serverless endpoint name")
    ap.add_argument("--key", required=True, help="endpoint key (primaryKey)")
    ap.add_argument("--model-dir", required=True, help="all-minilm-l6-v2 folder (sentence-transformers layout)")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="model field sent in the request")
    args = ap.parse_args()

    client = OpenAI(base_url=f"{args.url.rstrip('/')}/serverless/{args.name}/v1", api_key=args.key)
    batch = client.embeddings.create(model=args.model, input=SENTENCES)
    got_batch = np.array([d.embedding for d in sorted(batch.data, key=lambda d: d.index)], dtype=np.float64)
    singles = [client.embeddings.create(model=args.model, input=[s]) for s in SENTENCES]
    got_single = np.array([r.data[0].embedding for r in singles], dtype=np.float64)

    st = SentenceTransformer(args.model_dir, device="cpu")
    want = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False).astype(np.float64)
    tokens = [len(st.tokenizer(s, verbose=False)["input_ids"]) for s in SENTENCES]  # with [CLS]/[SEP], untruncated
    print(f"sentence-transformers: modules {[type(m).__name__ for m in st]}, max_seq_length {st.max_seq_length}")
    print(f"dims: sluice {got_batch.shape[1]}, sentence-transformers {want.shape[1]}")

    worst = 1.0
    print(f"{'#':>2} {'cos(batch)':>10} {'cos(single)':>11} {'maxabs':>9} {'|sluice|':>8} {'|st|':>8} "
          f"{'st_tok':>6} {'usage':>5}  text")
    for i, s in enumerate(SENTENCES):
        cb, cs = cos(got_batch[i], want[i]), cos(got_single[i], want[i])
        worst = min(worst, cb, cs)
        maxabs = float(np.max(np.abs(got_batch[i] - want[i])))
        flag = "" if min(cb, cs) >= 0.99 else "  <-- BELOW 0.99"
        print(f"{i:>2} {cb:>10.6f} {cs:>11.6f} {maxabs:>9.2e} {np.linalg.norm(got_batch[i]):>8.5f} "
              f"{np.linalg.norm(want[i]):>8.5f} {tokens[i]:>6} {singles[i].usage.prompt_tokens:>5}  "
              f"{s[:40]!r}{flag}")

    nb, ns = np.linalg.norm(got_batch, axis=1), np.linalg.norm(want, axis=1)
    print(f"norms: sluice {nb.min():.6f}..{nb.max():.6f}, sentence-transformers {ns.min():.6f}..{ns.max():.6f}"
          f" -> {'same normalization' if np.allclose(nb, ns, atol=1e-3) else 'DIFFERENT normalization'}")
    print(f"batch vs single (sluice): max abs diff {float(np.max(np.abs(got_batch - got_single))):.2e}")
    tok_match = [singles[i].usage.prompt_tokens == tokens[i] for i in range(len(SENTENCES))]
    print(f"usage.prompt_tokens: batch {batch.usage.prompt_tokens}, sum of singles "
          f"{sum(r.usage.prompt_tokens for r in singles)}, sentence-transformers tokenizer {sum(tokens)}; "
          f"per sentence equal: {sum(tok_match)}/{len(tok_match)}")

    # Informational: an input over max_seq_length (sentence-transformers silently truncates it).
    n = len(st.tokenizer(TOO_LONG, verbose=False)["input_ids"])
    try:
        r = client.embeddings.create(model=args.model, input=[TOO_LONG])
        c = cos(np.array(r.data[0].embedding), st.encode([TOO_LONG], normalize_embeddings=False)[0])
        print(f"over-long input ({n} tokens): sluice answered, cosine {c:.6f}, prompt_tokens {r.usage.prompt_tokens}")
    except openai.APIStatusError as e:
        print(f"over-long input ({n} tokens): sluice refused with HTTP {e.status_code}: {e.message}")

    print(f"worst cosine {worst:.6f}: {'OK' if worst >= 0.99 else 'FAIL'}")
    return 0 if worst >= 0.99 else 1


if __name__ == "__main__":
    sys.exit(main())
