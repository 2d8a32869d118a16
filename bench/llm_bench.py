#!/usr/bin/env python3
"""Streaming chat-completion load for an OpenAI-compatible server (stdlib only).

    llm_bench.py run --name NAME --url URL [--header 'K: V'] [--threads T] --out RUN.jsonl
    llm_bench.py table RUN.jsonl [--md OUT.md --machine TEXT --commands TEXT ...]

`run` measures one server and appends one JSON line to --out:
  warm-up   one request (not counted);
  single    --single (5) requests one after another, the same prompt;
  distinct  --single (5) more, each with a different prompt (TTFT without prompt-cache reuse);
  concurrent --clients (8) threads released together, each doing --per-client (3) requests.
Every request: a system message + one user prompt (max_tokens 128, temperature 0, stream true,
stream_options.include_usage true when the server accepts it). A *token* is a streamed chunk
whose choices[0].delta.content is a non-empty string (both servers send one chunk per token);
the usage chunk, when there is one, gives completion_tokens to check that count.
  TTFT      first content chunk - request sent (connect included, over loopback);
  decode    (content chunks - 1) / (last content chunk - first content chunk), per request;
  aggregate all content chunks of the concurrent phase / its wall time (first request sent to
            last stream finished).
`table` prints (and with --md writes) the markdown table of a results file.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

# Prompts that ask for long answers, so that generation usually runs to max_tokens.
PROMPTS = [
    "Write a detailed story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how a refrigerator works, step by step.",
    "Describe the history of the bicycle, from its invention to today.",
    "Write a long letter from a sailor to his family describing a storm at sea.",
    "Explain how to bake bread at home, with every step and why it matters.",
    "Describe a walk through a busy city market in the early morning.",
    "Write a detailed guide to planting and caring for a vegetable garden.",
    "Explain how the water cycle works and why it matters for life on Earth.",
]


class Request:
    def __init__(self, url, headers, body, timeout=300):
        self.u = urllib.parse.urlsplit(url)
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **headers}
        self.body = json.dumps(body).encode()
        self.timeout = timeout

    def stream(self):
        """Sends the request and reads the SSE stream; returns a dict of timings and counts."""
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(self.u.hostname, self.u.port or 80, timeout=self.timeout)
        try:
            path = self.u.path + (("?" + self.u.query) if self.u.query else "")
            conn.request("POST", path, body=self.body, headers=self.headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:500]!r}")
            times, texts, usage, chunks, done = [], [], None, 0, False
            while True:
                line = resp.readline()
                if not line:
                    break
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments (": ping"), event: lines
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                now = time.perf_counter()
                chunks += 1
                obj = json.loads(data)
                if obj.get("usage"):
                    usage = obj["usage"]
                for ch in obj.get("choices") or []:
                    content = (ch.get("delta") or {}).get("content")
                    if isinstance(content, str) and content:
                        times.append(now)
                        texts.append(content)
            t_end = time.perf_counter()
        finally:
            conn.close()
        if not times:
            raise RuntimeError("no content chunk in the stream")
        n = len(times)
        decode_s = times[-1] - times[0]
        return {
            "ttft_ms": (times[0] - t0) * 1e3,
            "tokens": n,
            "usage_completion_tokens": (usage or {}).get("completion_tokens"),
            "usage_prompt_tokens": (usage or {}).get("prompt_tokens"),
            "decode_tok_s": (n - 1) / decode_s if n > 1 and decode_s > 0 else None,
            "total_s": t_end - t0,
            "sse_chunks": chunks,
            "done": done,
            "t_start": t0,
            "t_end": t_end,
            "text": "".join(texts),
        }


# An explicit system message: without one, SmolLM2's GGUF chat template as llama-cpp-python renders
# it (Jinja) adds a default system prompt ("You are a helpful AI assistant named SmolLM...") and
# Sluice's rendering does not, so the two servers would get prompts of different lengths (46 vs 25
# tokens) and answer differently. With it, both render the same ChatML text.
SYSTEM = "You are a helpful assistant."


def body_for(prompt, args, usage):
    b = {
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": True,
    }
    if args.model:
        b["model"] = args.model
    if usage:
        b["stream_options"] = {"include_usage": True}
    return b


def mismatch(rs):
    return sum(1 for r in rs if r["usage_completion_tokens"] is not None
               and r["usage_completion_tokens"] != r["tokens"])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def run(args):
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    rec = {"name": args.name, "url": args.url, "threads": args.threads, "note": args.note,
           "max_tokens": args.max_tokens, "ok": False}
    try:
        # Warm-up, which also finds out whether the server takes stream_options.
        usage = True
        try:
            w = Request(args.url, headers, body_for(PROMPTS[0], args, True)).stream()
        except RuntimeError as e:
            if "HTTP 4" not in str(e):
                raise
            print(f"[{args.name}] stream_options refused ({str(e)[:120]}); going on without", flush=True)
            usage = False
            w = Request(args.url, headers, body_for(PROMPTS[0], args, False)).stream()
        rec["stream_options_accepted"] = usage
        rec["warmup"] = {k: v for k, v in w.items() if k not in ("t_start", "t_end")}
        print(f"[{args.name}] warm-up: {w['tokens']} tokens, TTFT {w['ttft_ms']:.0f} ms, "
              f"{w['decode_tok_s'] or 0:.1f} tok/s, usage={w['usage_completion_tokens']}: {w['text'][:80]!r}",
              flush=True)

        single = []
        for i in range(args.single):
            r = Request(args.url, headers, body_for(PROMPTS[0], args, usage)).stream()
            single.append(r)
            print(f"[{args.name}] single {i + 1}/{args.single}: {r['tokens']} tokens, TTFT {r['ttft_ms']:.0f} ms, "
                  f"{r['decode_tok_s'] or 0:.1f} tok/s", flush=True)

        # The same, each request with a different prompt: a server that keeps the previous prompt's
        # KV cache (llama-cpp-python does) re-uses only the common head (the system message).
        distinct = []
        for i in range(args.single):
            r = Request(args.url, headers, body_for(PROMPTS[1 + i % (len(PROMPTS) - 1)], args, usage)).stream()
            distinct.append(r)
        print(f"[{args.name}] single, distinct prompts: TTFT {[round(r['ttft_ms']) for r in distinct]} ms, "
              f"{[round(r['decode_tok_s'] or 0, 1) for r in distinct]} tok/s", flush=True)

        results, errors = [], []
        lock = threading.Lock()
        barrier = threading.Barrier(args.clients)

        def client(c):
            req = Request(args.url, headers, body_for(PROMPTS[c % len(PROMPTS)], args, usage))
            barrier.wait()
            for _ in range(args.per_client):
                try:
                    r = req.stream()
                    with lock:
                        results.append(r)
                except Exception as e:  # noqa: BLE001 - reported, counted
                    with lock:
                        errors.append(repr(e)[:300])

        ths = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        if not results:
            raise RuntimeError(f"every concurrent request failed: {errors[:3]}")
        t0 = min(r["t_start"] for r in results)
        t1 = max(r["t_end"] for r in results)
        conc_tokens = sum(r["tokens"] for r in results)

        rec.update({
            "ok": not errors,
            "single": {
                "n": len(single),
                "ttft_ms_median": med(r["ttft_ms"] for r in single),
                "decode_tok_s_median": med(r["decode_tok_s"] for r in single),
                "tokens_mean": mean(r["tokens"] for r in single),
                "total_s_median": med(r["total_s"] for r in single),
                "ttft_ms": [round(r["ttft_ms"], 1) for r in single],
                "decode_tok_s": [round(r["decode_tok_s"] or 0, 2) for r in single],
                "usage_mismatches": mismatch(single),
            },
            "single_distinct": {
                "n": len(distinct),
                "ttft_ms_median": med(r["ttft_ms"] for r in distinct),
                "decode_tok_s_median": med(r["decode_tok_s"] for r in distinct),
                "tokens_mean": mean(r["tokens"] for r in distinct),
                "ttft_ms": [round(r["ttft_ms"], 1) for r in distinct],
                "usage_prompt_tokens": [r["usage_prompt_tokens"] for r in distinct],
                "usage_mismatches": mismatch(distinct),
            },
            "concurrent": {
                "clients": args.clients,
                "per_client": args.per_client,
                "requests": len(results),
                "errors": errors,
                "wall_s": t1 - t0,
                "tokens": conc_tokens,
                "aggregate_tok_s": conc_tokens / (t1 - t0),
                "ttft_ms_mean": mean(r["ttft_ms"] for r in results),
                "ttft_ms_median": med(r["ttft_ms"] for r in results),
                "ttft_ms_max": max(r["ttft_ms"] for r in results),
                "per_stream_decode_tok_s_median": med(r["decode_tok_s"] for r in results),
                "tokens_mean": mean(r["tokens"] for r in results),
                "usage_mismatches": mismatch(results),
                "usage_reported": sum(1 for r in results if r["usage_completion_tokens"] is not None),
            },
            "single_text": single[0]["text"],
        })
        if args.tokenize_url:
            # No usage chunk (llama-cpp-python): re-tokenize the streamed text of the first single
            # request with the server's own tokenizer and compare with the content-chunk count.
            u = urllib.parse.urlsplit(args.tokenize_url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            conn.request("POST", u.path, body=json.dumps({"input": single[0]["text"]}),
                         headers={"Content-Type": "application/json"})
            toks = json.loads(conn.getresponse().read()).get("tokens") or []
            conn.close()
            rec["single"]["retokenized_tokens"] = len(toks)
            rec["single"]["chunks_of_first"] = single[0]["tokens"]
        c = rec["concurrent"]
        print(f"[{args.name}] single: TTFT median {rec['single']['ttft_ms_median']:.0f} ms, decode median "
              f"{rec['single']['decode_tok_s_median']:.1f} tok/s; {args.clients} streams: {c['aggregate_tok_s']:.1f} tok/s "
              f"aggregate ({c['tokens']} tokens in {c['wall_s']:.1f} s), mean TTFT {c['ttft_ms_mean']:.0f} ms, "
              f"{len(errors)} errors", flush=True)
    except Exception as e:  # noqa: BLE001 - the row says it failed
        rec["error"] = repr(e)[:1000]
        print(f"[{args.name}] FAILED: {rec['error']}", file=sys.stderr, flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    return 0 if rec["ok"] else 1


def fmt(x, d=0):
    return "-" if x is None else f"{x:.{d}f}"


def table(args):
    rows = [json.loads(l) for l in open(args.results) if l.strip()]
    out = ["| server | threads | single-stream TTFT ms (median of 5, same prompt) | single-stream decode tok/s (median) "
           "| single-stream TTFT ms, distinct prompts (median of 5) "
           "| 8-stream aggregate tok/s | 8-stream mean TTFT ms | tokens/request (single / 8-stream) | usage check |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r.get("single"):
            out.append(f"| {r['name']} | {r.get('threads')} | failed: {r.get('error', '?')[:200]} | | | | | | |")
            continue
        s, c, d = r["single"], r["concurrent"], r.get("single_distinct") or {}
        if r.get("stream_options_accepted") and c.get("usage_reported"):
            chk = f"{s['usage_mismatches'] + c['usage_mismatches'] + d.get('usage_mismatches', 0)} mismatches"
        elif s.get("retokenized_tokens") is not None:
            chk = f"no usage chunk; first answer: {s['chunks_of_first']} chunks, {s['retokenized_tokens']} tokens re-tokenized"
        else:
            chk = "no usage chunk"
        err = f" ({len(c['errors'])} errors)" if c["errors"] else ""
        out.append(f"| {r['name']} | {r.get('threads')} | {fmt(s['ttft_ms_median'])} | {fmt(s['decode_tok_s_median'], 1)} "
                   f"| {fmt(d.get('ttft_ms_median'))} "
                   f"| {fmt(c['aggregate_tok_s'], 1)}{err} | {fmt(c['ttft_ms_mean'])} "
                   f"| {fmt(s['tokens_mean'], 0)} / {fmt(c['tokens_mean'], 0)} | {chk} |")
    text = "\n".join(out)
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(args.header_text.replace("\\n", "\n") if args.header_text else "")
            f.write(text + "\n")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--name", required=True)
    r.add_argument("--url", required=True)
    r.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    r.add_argument("--model", default=None, help="the body's model field (omitted when not given)")
    r.add_argument("--threads", default=None)
    r.add_argument("--note", default="")
    r.add_argument("--tokenize-url", default=None, help="POST {input: text} -> {tokens: [...]} (llama-cpp-python's /extras/tokenize)")
    r.add_argument("--max-tokens", type=int, default=128)
    r.add_argument("--single", type=int, default=5)
    r.add_argument("--clients", type=int, default=8)
    r.add_argument("--per-client", type=int, default=3)
    r.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("--md", default=None)
    t.add_argument("--header-text", default="")
    a = p.parse_args()
    return run(a) if a.cmd == "run" else table(a)


if __name__ == "__main__":
    sys.exit(main())
