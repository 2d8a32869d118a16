#!/usr/bin/env python3
"""Write the markdown report of one bench/run.sh run: machine description, the kit's report.py
table (one row per server, last result per name wins), the derived lines, and each row's note.

  summarize.py RUN.jsonl --kit KIT --md OUT.md [--settings "..."] [--open-loop-peers F] [--steadiness F]
Prints the markdown on stdout as well.
"""
import argparse, json, os, platform, socket, subprocess, sys, time


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    info = {}
    for line in sh("lscpu").splitlines():
        k, _, v = line.partition(":")
        info[k.strip()] = v.strip()
    model = info.get("Model name", platform.processor() or "?")
    cpus = info.get("CPU(s)", str(os.cpu_count()))
    cores = info.get("Core(s) per socket", "?")
    sockets = info.get("Socket(s)", "?")
    tpc = info.get("Thread(s) per core", "?")
    hyp = info.get("Hypervisor vendor")
    mem = ""
    try:
        kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return (f"{model}, {cpus} CPUs ({sockets} socket(s) × {cores} core(s) × {tpc} thread(s) per core)"
            f"{', ' + hyp + ' guest' if hyp else ''}{mem}; kernel {platform.release()}; host {socket.gethostname()}")


def last_by_name(path):
    rows = {}
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            rows[r["name"]] = r
    return rows


def run_at(r, conc):
    if not r or not r.get("ok"):
        return None
    return next((x for x in r.get("runs", []) if x["conc"] == conc), None)


SCORING_PREFIXES = ("sluice-python-gateway", "sluice-python-replica", "azmlinfsrv")


def is_scoring(name):
    return name.startswith(SCORING_PREFIXES)


def worker_suffixes(rows):
    """The WORKER_COUNT variants present: "" (WORKER_COUNT=1) and "-wN"."""
    out = []
    for n in rows:
        for p in SCORING_PREFIXES:
            if n.startswith(p):
                suf = n[len(p):]
                if suf not in out:
                    out.append(suf)
    return sorted(out, key=lambda s: int(s[2:]) if s else 1)


def by_role(run):
    """'a 1 + b 2 = 3 µs' from a level's cpu_us_per_req_by_role (largest first)."""
    roles = run.get("cpu_us_per_req_by_role") or {}
    parts = sorted(roles.items(), key=lambda kv: -kv[1])
    return " + ".join(f"{k} {v:.0f}" for k, v in parts) + f" = {sum(roles.values()):.0f} µs"


def scoring_derived(rows):
    out = []
    for suf in worker_suffixes(rows):
        wc = int(suf[2:]) if suf else 1
        g, rp, az = (rows.get(n + suf) for n in SCORING_PREFIXES)
        g32, r32, a32 = run_at(g, 32), run_at(rp, 32), run_at(az, 32)
        g1, r1, a1 = run_at(g, 1), run_at(rp, 1), run_at(az, 1)
        tag = f"WORKER_COUNT={wc}"
        if g32 and a32 and a32["rps"] > 0:
            line = (f"score.py throughput at c=32 ({tag}), sluice python-gateway / azmlinfsrv: "
                    f"{g32['rps']:.0f} / {a32['rps']:.0f} req/s = **{g32['rps'] / a32['rps']:.1f}×** (target: 3×); "
                    f"p99 at c=32: sluice-python-gateway{suf} **{g32['p99_ms']:.2f} ms**, azmlinfsrv{suf} "
                    f"**{a32['p99_ms']:.2f} ms**")
            if r32:
                line += (f" (sluice-python-replica{suf} alone: {r32['rps']:.0f} req/s = {r32['rps'] / a32['rps']:.1f}×, "
                         f"p99 {r32['p99_ms']:.2f} ms)")
            out.append(line)
        else:
            out.append(f"score.py throughput at c=32 ({tag}), sluice python-gateway / azmlinfsrv: n/a "
                       "(a c=32 result is missing)")
        if g1 and a1:
            line = (f"score.py at c=1 ({tag}): p50 / p99 sluice-python-gateway{suf} {g1['p50_ms']:.2f} / "
                    f"{g1['p99_ms']:.2f} ms, azmlinfsrv{suf} {a1['p50_ms']:.2f} / {a1['p99_ms']:.2f} ms")
            if r1:
                line += (f"; gateway overhead (p50 python-gateway − python-replica) "
                         f"{(g1['p50_ms'] - r1['p50_ms']) * 1000:.0f} µs")
            out.append(line)
        cpu = [f"{n}{suf} {by_role(x)}" for n, x in (("sluice-python-gateway", g32), ("sluice-python-replica", r32),
                                                      ("azmlinfsrv", a32)) if x and x.get("cpu_us_per_req_by_role")]
        if cpu:
            out.append(f"Server CPU per request at c=32 ({tag}), by process: " + "; ".join(cpu))
    return out


def verdict(ok):
    return "met" if ok else "**NOT met**"


def performance_targets(rows):
    """The performance issue's targets, for each Sluice gateway row, against Triton in the same run."""
    out = []
    t = rows.get("triton-python-onnx")
    t1, t32 = run_at(t, 1), run_at(t, 32)
    for n in ("sluice-gateway", "sluice-gateway-batching"):
        r = rows.get(n)
        g1, g32 = run_at(r, 1), run_at(r, 32)
        if not (g1 and g32):
            continue
        parts = []
        if t1 and t32 and t32["rps"] > 0:
            ratio = g32["rps"] / t32["rps"]
            parts.append(f"c=32 {g32['rps']:.0f} / {t32['rps']:.0f} req/s = **{ratio:.2f}×** Triton (≥ 1.5×: {verdict(ratio >= 1.5)})")
            parts.append(f"c=1 p50 {g1['p50_ms']:.3f} vs Triton {t1['p50_ms']:.3f} ms (≤ Triton: {verdict(g1['p50_ms'] <= t1['p50_ms'])})")
        cpu = g32["server_cpu_us_per_req"]
        tcpu = f" (Triton {t32['server_cpu_us_per_req']:.0f})" if t32 else ""
        parts.append(f"server CPU at c=32 {cpu:.0f} µs/req{tcpu} (≤ 60: {verdict(cpu <= 60)})")
        rss = r.get("rss_idle_mb")
        if rss is not None:
            trss = f" (Triton {t['rss_idle_mb']:.0f} MB)" if t and t.get("rss_idle_mb") is not None else ""
            parts.append(f"idle RSS {rss:.0f} MB{trss} (< 50: {verdict(rss < 50)})")
        c2s = r.get("create_to_first_score_s")
        if c2s is not None:
            parts.append(f"deployment create to first score {c2s:.2f} s (< 1 s: {verdict(c2s < 1)})")
        ok_rates = [x for x in r.get("open_loop_runs", []) if x["p99_us"] < 5000 and x["errors"] == 0]
        if len(r.get("open_loop_runs", [])) > 1:
            parts.append("open-loop sweep p99: " + ", ".join(
                f"{x['fraction_of_capacity']:.0%} ({x['rate']:.0f} req/s) {x['p99_us'] / 1000:.2f} ms"
                for x in r["open_loop_runs"]) + (f"; highest rate with p99 < 5 ms: {max(x['rate'] for x in ok_rates):.0f} req/s"
                                                  if ok_rates else "; no rate with p99 < 5 ms"))
        ol = r.get("open_loop")
        if ol:
            p99 = ol["p99_us"] / 1000
            parts.append(f"open loop at {ol['rate']:.0f} req/s ({ol['fraction_of_capacity']:.0%} of {ol['capacity_rps']:.0f}): "
                         f"p50 / p99 / p99.9 {ol['p50_us'] / 1000:.2f} / **{p99:.2f}** / {ol['p999_us'] / 1000:.2f} ms, "
                         f"{ol['errors'] + ol['unexpected']} errors, {ol['unanswered']} unanswered, server CPU "
                         f"{ol['server_cpu_us_per_req']:.0f} µs/req (p99 < 5 ms: {verdict(p99 < 5 and ol['errors'] == 0)}; "
                         f"load generator's worst dispatch lag {ol['max_dispatch_lag_us']} µs)")
        out.append(f"Targets, {n}: " + "; ".join(parts))
    c1, c32 = run_at(rows.get("sluice-gateway-cnn"), 1), run_at(rows.get("sluice-gateway-cnn"), 32)
    tc1, tc32 = run_at(rows.get("triton-python-cnn"), 1), run_at(rows.get("triton-python-cnn"), 32)
    if c1 and c32 and tc1 and tc32 and tc32["rps"] > 0:
        out.append(f"Larger model (CNN, one 28×28 image per request), sluice-gateway-cnn vs triton-python-cnn: c=32 "
                   f"{c32['rps']:.0f} / {tc32['rps']:.0f} req/s = **{c32['rps'] / tc32['rps']:.2f}×**, server CPU "
                   f"{c32['server_cpu_us_per_req']:.0f} vs {tc32['server_cpu_us_per_req']:.0f} µs/req; c=1 p50 "
                   f"{c1['p50_ms']:.3f} vs {tc1['p50_ms']:.3f} ms")
    if out and not (t1 and t32):
        out.append("Targets against Triton: n/a (no triton-python-onnx result in this run; WITH_TRITON=1 builds its venv)")
    return out


def derived(rows):
    if not any(not is_scoring(n) for n in rows):
        return scoring_derived(rows)
    out = []
    g1, r1 = run_at(rows.get("sluice-gateway"), 1), run_at(rows.get("sluice-replica"), 1)
    if g1 and r1:
        d = g1["p50_ms"] - r1["p50_ms"]
        cpu = f"server CPU per request at c=1: {g1['server_cpu_us_per_req']:.0f} − {r1['server_cpu_us_per_req']:.0f} = " \
              f"{g1['server_cpu_us_per_req'] - r1['server_cpu_us_per_req']:.0f} µs"
        g32, r32 = run_at(rows.get("sluice-gateway"), 32), run_at(rows.get("sluice-replica"), 32)
        if g32 and r32:
            cpu += (f"; at c=32: {g32['server_cpu_us_per_req']:.0f} − {r32['server_cpu_us_per_req']:.0f} = "
                    f"{g32['server_cpu_us_per_req'] - r32['server_cpu_us_per_req']:.0f} µs")
        out.append(f"Gateway overhead at c=1, p50: sluice-gateway {g1['p50_ms']:.3f} ms − sluice-replica "
                   f"{r1['p50_ms']:.3f} ms = **{d * 1000:.0f} µs** per request ({cpu})")
    else:
        out.append("Gateway overhead at c=1, p50: n/a (sluice-gateway or sluice-replica has no c=1 result)")
    g32, m32 = run_at(rows.get("sluice-gateway"), 32), run_at(rows.get("mlserver-onnx"), 32)
    if g32 and m32 and m32["rps"] > 0:
        out.append(f"Throughput at c=32, sluice-gateway / mlserver-onnx: {g32['rps']:.0f} / {m32['rps']:.0f} req/s "
                   f"= **{g32['rps'] / m32['rps']:.1f}×**")
    else:
        out.append("Throughput at c=32, sluice-gateway / mlserver-onnx: n/a (a c=32 result is missing)")
    s1, s32 = run_at(rows.get("sluice-split-mirror"), 1), run_at(rows.get("sluice-split-mirror"), 32)
    g1_, g32_ = run_at(rows.get("sluice-gateway"), 1), run_at(rows.get("sluice-gateway"), 32)
    if "sluice-split-mirror" in rows:
        if s1 and g1_ and s32 and g32_ and g32_["rps"] > 0:
            out.append(
                f"Split + mirror vs single deployment: c=1 p50 sluice-split-mirror {s1['p50_ms']:.3f} ms − "
                f"sluice-gateway {g1_['p50_ms']:.3f} ms = **{(s1['p50_ms'] - g1_['p50_ms']) * 1000:+.0f} µs**; "
                f"c=32 throughput {s32['rps']:.0f} / {g32_['rps']:.0f} req/s = **{s32['rps'] / g32_['rps']:.2f}×** "
                f"({100 * (s32['rps'] / g32_['rps'] - 1):+.0f} %); server CPU per request at c=32: "
                f"{s32['server_cpu_us_per_req']:.0f} − {g32_['server_cpu_us_per_req']:.0f} = "
                f"**{s32['server_cpu_us_per_req'] - g32_['server_cpu_us_per_req']:+.0f} µs** "
                f"(at c=1: {s1['server_cpu_us_per_req']:.0f} − {g1_['server_cpu_us_per_req']:.0f} = "
                f"{s1['server_cpu_us_per_req'] - g1_['server_cpu_us_per_req']:+.0f} µs)")
        else:
            out.append("Split + mirror vs single deployment: n/a (sluice-split-mirror or sluice-gateway has no c=1/c=32 result)")
        if rows["sluice-split-mirror"].get("mirror_summary"):
            out.append("Mirror, from `sluice online-endpoint show --name lr-ep` after the sluice-split-mirror run "
                       "(counts since the server started, warm-up included): " + rows["sluice-split-mirror"]["mirror_summary"])
    out += performance_targets(rows)
    if any(is_scoring(n) for n in rows):
        out += scoring_derived(rows)
    return out


def read_jsonl(path):
    if not path or not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


def slow_windows(ol):
    """`n of m` 100 ms windows (of send times) with a latency over 5 ms, and when the first ones began."""
    series = ol.get("series")
    if not series:
        return "n/a"
    slow = [w for w in series if w[2] > 5000]
    starts = [w[0] for i, w in enumerate(slow) if i == 0 or w[0] - slow[i - 1][0] > ol["series_ms"]]
    when = f" (from {', '.join(f'{t / 1000:.1f}' for t in starts[:4])} s{', ...' if len(starts) > 4 else ''})" if starts else ""
    return f"{len(slow)} of {len(series)}{when}"


def latency_table(rows):
    """p50 / p99 / p99.9 of every server at each closed-loop level, from wrk's own summary (the kit's table stops
    at p99)."""
    levels = sorted({x["conc"] for r in rows.values() if r.get("ok") for x in r.get("runs", [])})
    if not levels:
        return []
    out = ["", "Closed-loop latency tails (wrk's percentiles, ms):", "",
           "| server | " + " | ".join(f"c={c} p50 / p99 / p99.9" for c in levels) + " |",
           "|---|" + "---|" * len(levels)]
    for n, r in rows.items():
        if not r.get("ok"):
            continue
        cells = []
        for c in levels:
            w = (run_at(r, c) or {}).get("wrk") or {}
            if all(k in w for k in ("lat_p50_us", "lat_p99_us", "lat_p999_us")):
                cells.append(" / ".join(f"{w[k] / 1000:.2f}" for k in ("lat_p50_us", "lat_p99_us", "lat_p999_us")))
            else:
                cells.append("n/a")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return out


def open_loop_table(rows, peer_runs):
    """Every server's open-loop run at the same fraction of its own capacity, Sluice's and the peers'."""
    entries = [(n, r["open_loop"]) for n, r in rows.items() if r.get("ok") and r.get("open_loop")]
    for p in peer_runs:
        if p.get("ok") and p.get("open_loop_runs"):
            entries.append((p["name"], p["open_loop_runs"][-1]))
        else:
            entries.append((p["name"], {"error": p.get("error", "no result")}))
    if not entries:
        return []
    out = ["", "Open loop (`sluice-loadgen`: a fixed rate, latency from each request's scheduled send time), each "
           "server at the same fraction of its own best closed-loop req/s in this run, same pinning:", "",
           "| server | offered req/s | p50 ms | p99 ms | p99.9 ms | errors | unanswered | 100 ms windows with a latency over 5 ms |",
           "|---|---|---|---|---|---|---|---|"]
    for n, ol in entries:
        if "error" in ol:
            out.append(f"| {n} | failed: {ol['error'][:120]} | | | | | | |")
            continue
        out.append(f"| {n} | {ol['rate']:.0f} | {ol['p50_us'] / 1000:.2f} | {ol['p99_us'] / 1000:.2f} | "
                   f"{ol['p999_us'] / 1000:.2f} | {ol['errors'] + ol.get('unexpected', 0)} | {ol['unanswered']} | "
                   f"{slow_windows(ol)} |")
    return out


def steadiness_lines(probes):
    """The server core's own speed before and after the measurements (bench/cpu_steadiness.py)."""
    if not probes:
        return []
    parts = [f"{p['label'] or 'probe'}: slowest window {p['slowest_pct']:.0f} % of the median, 5th percentile "
             f"{p['p5_pct']:.0f} %, {p['windows_under_80_pct']} of {p['windows']} windows under 80 %" for p in probes]
    return ["", f"Server core's speed (bench/cpu_steadiness.py on CPU {probes[0]['cpu']}, {probes[0]['seconds']:.0f} s, "
            f"{probes[0]['window_ms']:.0f} ms windows, nothing else on the core): " + "; ".join(parts) + ". While the core "
            "runs under 80 % of its usual speed, an open-loop load at 80 % of the capacity measured at its usual speed "
            "is more than it can serve, whatever the server, and a backlog builds."]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--kit", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--settings", default="")
    ap.add_argument("--commit", default="")
    ap.add_argument("--title", default="")
    ap.add_argument("--raw", default="", help="name of the JSON-lines file the results are kept in")
    ap.add_argument("--open-loop-peers", default="", help="bench/open_loop_peer.py's JSON lines for the peers")
    ap.add_argument("--steadiness", default="", help="bench/cpu_steadiness.py's JSON lines")
    a = ap.parse_args()

    table = subprocess.run([sys.executable, os.path.join(a.kit, "report.py"), a.results],
                           capture_output=True, text=True, check=True).stdout.rstrip()
    rows = last_by_name(a.results)
    lines = [f"# {a.title or 'Sluice beside its peers'} ({time.strftime('%Y-%m-%d %H:%M %Z')})", "",
             f"- Machine: {machine()}"]
    if a.commit:
        lines.append(f"- Sluice: {a.commit}")
    if a.settings:
        lines.append(f"- Settings: {a.settings}")
    peer_runs, probes = read_jsonl(a.open_loop_peers), read_jsonl(a.steadiness)
    raw = a.raw or os.path.basename(a.results)
    extra = [f"`{raw[:-len('.jsonl')]}-{kind}.jsonl` ({what})" for kind, what, found in
             (("open-loop-peers", "the peers' open-loop runs", peer_runs),
              ("steadiness", "the server core's speed", probes)) if found and raw.endswith(".jsonl")]
    lines.append(f"- Raw results: `{raw}` (JSON lines, the peer kit's schema)" + ("; " + ", ".join(extra) if extra else ""))
    lines += ["", table, ""]
    lines += [f"- {d}" for d in derived(rows)]
    lines += latency_table(rows)
    lines += open_loop_table(rows, peer_runs)
    lines += steadiness_lines(probes)
    lines += ["", "Servers:", ""]
    lines += [f"- `{n}`: {r.get('note', '')}" for n, r in rows.items()]
    wrk_busy = [(n, x["conc"], x["wrk_cpu_pct"]) for n, r in rows.items() if r.get("ok")
                for x in r["runs"] if x.get("wrk_cpu_pct", 0) > 90]
    if wrk_busy:
        lines += ["", "Warning: wrk used more than 90 % of its core in " +
                  ", ".join(f"{n} c={c} ({p:.0f} %)" for n, c, p in wrk_busy) +
                  ": the load generator may be the limit there."]
    md = "\n".join(lines) + "\n"
    with open(a.md, "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
