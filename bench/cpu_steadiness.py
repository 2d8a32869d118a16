#!/usr/bin/env python3
"""How steady is one CPU's speed? A fixed integer loop pinned to --cpu, counted per window.

  cpu_steadiness.py [--cpu 1] [--seconds 30] [--window-ms 100] [--label before] [--out FILE]

Prints (and appends to --out) one JSON line: the median work per second, the slowest window and the
5th percentile as a percentage of the median, how many windows ran under 80 % of the median, and the
whole series in percent. Run it on the server's core while nothing else runs there: on a virtual
machine whose host is shared, the core's speed can drop by a third for seconds at a time, and an
open-loop load at 80 % of the capacity measured in a fast stretch then falls behind whatever the
server does. stdlib only.
"""
import argparse, json, os, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--window-ms", type=float, default=100)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.seconds <= 0 or a.window_ms <= 0 or a.window_ms > 1000 * a.seconds:
        ap.error("--seconds and --window-ms must be positive, and a window no longer than the run")
    os.sched_setaffinity(0, {a.cpu})
    clock = time.perf_counter
    window = a.window_ms / 1000
    speeds = []
    end = clock() + a.seconds
    while clock() < end:
        t0 = clock()
        chunks, x = 0, 1
        while clock() - t0 < window:
            for _ in range(2000):  # about 0.1-0.2 ms of work between clock reads
                x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            chunks += 1
        speeds.append(chunks / (clock() - t0))
    ordered = sorted(speeds)
    median = ordered[len(ordered) // 2]
    result = {
        "label": a.label, "cpu": a.cpu, "seconds": a.seconds, "window_ms": a.window_ms, "windows": len(speeds),
        "median_chunks_per_s": round(median, 1),
        "slowest_pct": round(100 * ordered[0] / median, 1),
        "p5_pct": round(100 * ordered[len(ordered) // 20] / median, 1),
        "windows_under_80_pct": sum(s < 0.8 * median for s in speeds),
        "series_pct": [round(100 * s / median) for s in speeds],
    }
    line = json.dumps(result)
    print(line, flush=True)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
