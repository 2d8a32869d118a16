#!/usr/bin/env python3
"""Turn bench/profile.sh's flat perf profiles into a per-request CPU budget by stage.

  profile_buckets.py OUT_DIR    (reads cpu.json, server.flat.txt, replica.flat.txt; prints markdown)

Each sampled function's self time goes to the first stage whose pattern matches "dso symbol";
the stage's share of the process's samples times the process's measured CPU per request gives µs.
"""
import json, os, re, sys

STAGES = [
    ("kernel: sockets (TCP to the client; TCP or Unix socket between gateway and replica)", r"\[kernel.*\] .*(tcp|ip_|inet|sock|skb|net_|napi|__dev_queue|dev_hard|loopback|netif|_copy_(to|from)_iter|datagram|bbr|sk_|__sys_(recv|send)|raw_spin_unlock_irqrestore)"),
    ("kernel: syscalls, epoll, scheduling, timers", r"\[kernel"),
    ("malloc/free", r"\b(_int_malloc|_int_free|malloc|cfree|free|realloc|_int_realloc|malloc_consolidate|unlink_chunk|calloc|tcache)\b|\b_?mi_\w+"),
    ("memcpy/memmove", r"(memmove|memcpy|memset)"),
    ("ONNX Runtime (library and ort bindings)", r"(libonnxruntime|ort::)"),
    ("JSON and tensors (serde_json, v2 request/response)", r"(serde|sluice_runtime::tensor|v2_wire|ryu|itoa|TensorData|flatten)"),
    ("key check (SHA-256)", r"(sha2|sha256|auth::)"),
    ("gateway–replica frames (sluice_net::mux)", r"sluice_net::mux"),
    ("HTTP/1.1 (hyper, httparse, http)", r"(hyper|httparse|http::|h1::|http_body)"),
    ("tokio / mio runtime", r"(tokio|mio::|epoll|futex|parking_lot|std::sys::pal::unix::thread|__vdso|clock_gettime|pthread)"),
    ("routing, admission, stats, proxy logic (sluice_gateway)", r"sluice_gateway"),
    ("axum / tower", r"(axum|tower|matchit)"),
    ("replica handler and pool (sluice_runtime)", r"sluice_runtime"),
    ("hashing, bytes buffers, futures plumbing", r"(hash|Hasher|bytes::|futures_util|atomic_waker|__rdl_alloc|__rust_alloc|__rust_dealloc)"),
    ("other", r""),
]


def parse_flat(path):
    rows = []
    for line in open(path, errors="replace"):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if m:
            rows.append((float(m.group(1)), f"{m.group(2)} {m.group(3)}"))
    return rows


def bucket(rows):
    out = {name: 0.0 for name, _ in STAGES}
    for pct, text in rows:
        for name, pattern in STAGES:
            if re.search(pattern, text):
                out[name] += pct
                break
    return out


def main():
    d = sys.argv[1]
    cpu = json.load(open(os.path.join(d, "cpu.json")))
    lines = [f"Requests measured: {cpu['requests']:.0f}; CPU per request: gateway process {cpu['gateway_us']:.1f} µs, "
             f"replica process {cpu['replica_us']:.1f} µs", "",
             "| stage | gateway (`sluice server`) µs | replica µs |", "|---|---|---|"]
    g = bucket(parse_flat(os.path.join(d, "server.flat.txt")))
    r = bucket(parse_flat(os.path.join(d, "replica.flat.txt")))
    gt, rt = sum(g.values()) or 1, sum(r.values()) or 1
    for name, _ in STAGES:
        gu, ru = g[name] / gt * cpu["gateway_us"], r[name] / rt * cpu["replica_us"]
        if gu >= 0.05 or ru >= 0.05:
            lines.append(f"| {name} | {gu:.1f} | {ru:.1f} |")
    lines.append(f"| **total** | **{cpu['gateway_us']:.1f}** | **{cpu['replica_us']:.1f}** |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
