#!/usr/bin/env python3
"""Open-loop load on any server, for comparing a peer with Sluice's open-loop rows.

  open_loop_peer.py --name N --cmd "start the server in the foreground" --url URL --body FILE
                    --rates "8000 10000 12000" --loadgen target/release/sluice-loadgen [--expect S]
                    [--server-cpus 1] [--load-cpus 0] [--duration 20] [--cwd DIR] [--series-ms 100]
                    [--out results.jsonl]

Starts the server pinned to --server-cpus (nice -20, its own process group), waits for a 200
answer, warms it for 3 s at the first rate, then runs bench's sluice-loadgen pinned to --load-cpus
at each rate (latency from each request's scheduled time) and stops the server. Appends one JSON
line {"name", "cmd", "ok", "open_loop_runs": [...]} to --out and prints one line per rate. Each run
also reports the answers and the worst latency per --series-ms window of send times, which shows
when a backlog began. bench/run.sh runs it for every kit peer (with the kit's own command), in a
private network namespace (unshare -n). stdlib only.
"""
import argparse, json, os, shlex, signal, subprocess, sys, time, urllib.request


def ready(url, body, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return r.read()
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"no 200 answer from {url} after {timeout} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--cmd", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--rates", required=True, help="requests per second, space separated")
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--expect", default="")
    ap.add_argument("--server-cpus", default="1")
    ap.add_argument("--load-cpus", default="0")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--cwd", default=None, help="the directory to start the server in")
    ap.add_argument("--series-ms", type=int, default=100)
    ap.add_argument("--out", default="open-loop.jsonl")
    ap.add_argument("--log", default=None)
    a = ap.parse_args()
    body = open(a.body, "rb").read()
    log = open(a.log or f"{a.name}.open-loop.log", "wb")
    proc = subprocess.Popen(["bash", "-c", f"exec nice -n -20 taskset -c {a.server_cpus} bash -c {shlex.quote(a.cmd)}"],
                            cwd=a.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    result = {"name": a.name, "cmd": a.cmd, "open_loop_runs": []}
    try:
        ready(a.url, body, 300)
        rates = [float(r) for r in a.rates.split()]
        base = ["nice", "-n", "-20", "taskset", "-c", a.load_cpus, a.loadgen, "--url", a.url, "--body", a.body,
                "--expect", a.expect]
        subprocess.run(base + ["--rate", str(rates[0]), "--duration", "3", "--warmup", "0"], capture_output=True)
        for rate in rates:
            out = subprocess.run(base + ["--rate", str(rate), "--duration", str(a.duration), "--warmup", "2",
                                         "--series-ms", str(a.series_ms)],
                                 capture_output=True, text=True, timeout=a.duration + 90)
            if out.returncode != 0:
                raise RuntimeError(out.stderr.strip()[:300])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            result["open_loop_runs"].append(r)
            print(f"[{a.name}] open loop at {rate:.0f} req/s: p50 {r['p50_us'] / 1000:.2f} ms  p99 "
                  f"{r['p99_us'] / 1000:.2f} ms  p99.9 {r['p999_us'] / 1000:.2f} ms  errors {r['errors']}  "
                  f"unanswered {r['unanswered']}", flush=True)
        result["ok"] = True
    except Exception as e:  # record it, still stop the server
        result["ok"] = False
        result["error"] = str(e)
        print(f"[{a.name}] FAILED: {e}", flush=True)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
    with open(a.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
