#!/usr/bin/env python3
"""Batch endpoints' platform overhead: rows per second of a Sluice batch job over many CSV files
against the same batch driver scoring the same files in one in-process loop.

    python3 bench/batch_bench.py [--files 1000] [--rows 1000] [--mini-batch-size 10] [--repeat 3]
        [--sluice target/release/sluice] [--python PY] [--md bench/results/DATE-batch.md]

The workload is examples/batch-sklearn: its scikit-learn iris model and its Azure-style
batch_driver.py (pandas reads each CSV, the model predicts, run() returns a DataFrame). The input
is generated: --files CSV files of --rows random iris rows each (seeded, so every run scores the
same data). Measured, each --repeat times (the median is reported):

  in-process      `PY -c ...` imports batch_driver.py, calls init(), then run() on each mini-batch
                  of --mini-batch-size files in path order, and writes the rows to one CSV file, as
                  append_row would. Timed from process start to exit (interpreter start, imports and
                  init included, as a worker's boot is in the job's time), and separately the loop
                  alone.
  in-process x2   two such processes at once, each on half of the mini-batches (the machine's
                  best case for 2 workers).
  sluice wN       `sluice server --batch-workers N` (fresh data directory, deployment with the same
                  model and driver, `max_concurrency_per_instance: N`, `mini_batch_size` as above,
                  no environment: the server's --python runs it); the job is invoked through the
                  management API with the input folder's absolute path (no upload), and timed from
                  the invoke request until the job is seen Completed (polled every 20 ms). That
                  includes planning the job, starting N workers, the per-mini-batch protocol, the
                  parts written and fsynced, the SQLite commits and the final merge. For each job it
                  prints when the first and last parts and the merged output were written.

Both sides use the same Python (--python, default the dev venv that scripts/python-env.sh makes)
and the same files. Every output is checked to hold files x rows rows. stdlib only.
"""
import argparse, datetime, json, os, random, shutil, statistics, subprocess, sys, tempfile, time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "batch-sklearn")
MODEL = os.path.join(ROOT, "examples", "sklearn-score", "model")

# One in-process worker: the driver on the mini-batches it is given (a JSON file of lists of
# paths), rows appended to one CSV file; prints the loop's seconds.
IN_PROCESS = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ["AZUREML_MODEL_DIR"] = sys.argv[2]
import batch_driver
batch_driver.init()
batches = json.load(open(sys.argv[3]))
start = time.perf_counter()
rows = 0
with open(sys.argv[4], "w") as out:
    for mb in batches:
        df = batch_driver.run(mb)
        rows += len(df)
        df.to_csv(out, header=False, index=False, sep=" ")
print(json.dumps({"loop_s": time.perf_counter() - start, "rows": rows}))
"""


def generate(folder, files, rows, seed=7):
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(files):
        with open(os.path.join(folder, f"part-{i:05d}.csv"), "w") as f:
            f.write("sepal_length,sepal_width,petal_length,petal_width\n")
            for _ in range(rows):
                f.write(f"{rng.uniform(4.3, 7.9):.1f},{rng.uniform(2.0, 4.4):.1f},"
                        f"{rng.uniform(1.0, 6.9):.1f},{rng.uniform(0.1, 2.5):.1f}\n")


def mini_batches(folder, size):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    return [files[i:i + size] for i in range(0, len(files), size)]


def in_process(python, batches, work, parts=1):
    """Runs `parts` in-process workers at once on interleaved shares; returns (wall s, loop s, rows)."""
    procs = []
    start = time.perf_counter()
    for p in range(parts):
        share = os.path.join(work, f"share-{p}.json")
        json.dump(batches[p::parts], open(share, "w"))
        out = os.path.join(work, f"inproc-{p}.csv")
        procs.append(subprocess.Popen(
            [python, "-c", IN_PROCESS, os.path.join(EXAMPLE, "code"), MODEL, share, out],
            stdout=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        text, _ = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"in-process run failed ({proc.returncode})")
        results.append(json.loads(text.strip().splitlines()[-1]))
    wall = time.perf_counter() - start
    return wall, max(r["loop_s"] for r in results), sum(r["rows"] for r in results)


class Server:
    def __init__(self, binary, python, workers, work):
        self.data = os.path.join(work, f"data-w{workers}")
        self.log = open(self.data + ".log", "w")
        self.proc = subprocess.Popen(
            [binary, "--data-dir", self.data, "server", "--addr", "127.0.0.1:0", "--python", python,
             "--batch-workers", str(workers)],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        for line in self.proc.stdout:
            if line.startswith("SLUICE_LISTENING "):
                self.url = line.split()[1]
                break
        else:
            sys.exit(f"sluice server did not start; see {self.log.name}")
        self.token = open(os.path.join(self.data, "admin-token")).read().strip()
        self.binary = binary

    def cli(self, *args):
        env = dict(os.environ, SLUICE_SERVER=self.url, SLUICE_TOKEN=self.token)
        out = subprocess.run([self.binary, *args], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"sluice {' '.join(args)} failed: {out.stderr}")
        return json.loads(out.stdout)

    def api(self, method, path, body=None):
        req = urllib.request.Request(
            f"{self.url}/api/v1/workspaces/default{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as resp:
            return json.loads(resp.read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def sluice_runs(binary, python, workers, size, input_dir, work, repeat):
    server = Server(binary, python, workers, work)
    try:
        dep = os.path.join(work, f"dep-w{workers}.yml")
        with open(dep, "w") as f:
            f.write(f"name: bench-dpl\nendpoint_name: bench-batch\ntype: model\nmodel:\n  path: {MODEL}\n"
                    f"code_configuration:\n  code: {os.path.join(EXAMPLE, 'code')}\n  scoring_script: batch_driver.py\n"
                    f"compute: azureml:cpu-cluster\nresources:\n  instance_count: 1\nsettings:\n"
                    f"  max_concurrency_per_instance: {workers}\n  mini_batch_size: {size}\n"
                    f"  output_file_name: predictions.csv\n  retry_settings: {{max_retries: 0, timeout: 300}}\n")
        server.cli("batch-endpoint", "create", "--name", "bench-batch")
        server.cli("batch-deployment", "create", "--file", dep)
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            job = server.api("POST", "/batch-endpoints/bench-batch/jobs", {"input": {"path": input_dir}})
            while job["status"] not in ("Completed", "Failed", "Canceled"):
                time.sleep(0.02)
                job = server.api("GET", f"/jobs/{job['name']}")
            wall = time.perf_counter() - start
            if job["status"] != "Completed":
                sys.exit(f"job {job['name']} {job['status']}: {job.get('message')}")
            with open(job["output"]["file"]) as f:
                rows = sum(1 for _ in f)
            runs.append((wall, rows))
            # Where the job's time went: when its first and last mini-batch parts were written and
            # when the merged output was, against its start (the files' modification times).
            started = datetime.datetime.fromisoformat(job["started_at"][:26]).replace(tzinfo=datetime.timezone.utc).timestamp()
            ended = datetime.datetime.fromisoformat(job["ended_at"][:26]).replace(tzinfo=datetime.timezone.utc).timestamp()
            parts = sorted(os.stat(os.path.join(job["output"]["parts_path"], p)).st_mtime
                           for p in os.listdir(job["output"]["parts_path"]))
            merged = os.stat(job["output"]["file"]).st_mtime
            print(f"    job: first part at {parts[0] - started:.3f} s, last part at {parts[-1] - started:.3f} s, "
                  f"merged output at {merged - started:.3f} s, ended at {ended - started:.3f} s; "
                  f"wall from invoke {wall:.3f} s", flush=True)
        return runs
    finally:
        server.stop()


def machine():
    sys.path.insert(0, HERE)
    from summarize import machine as describe
    return describe()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--mini-batch-size", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", default="1 2", help="worker counts for Sluice (default: 1 2)")
    ap.add_argument("--sluice", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "sluice"))
    ap.add_argument("--python", default=os.environ.get("SLUICE_TEST_PYTHON", os.path.expanduser("~/.cache/sluice/venv/bin/python")))
    ap.add_argument("--md", help="write the markdown report here")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="sluice-batch-bench-")
    try:
        input_dir = os.path.join(work, "input")
        generate(input_dir, args.files, args.rows)
        total = args.files * args.rows
        batches = mini_batches(input_dir, args.mini_batch_size)
        rows = []

        def add(name, walls, loops=None, workers=1):
            wall = statistics.median(walls)
            rows.append({"name": name, "workers": workers, "wall_s": wall, "rows_per_s": total / wall,
                         "loop_rows_per_s": total / statistics.median(loops) if loops else None,
                         "runs": [round(w, 3) for w in walls]})
            print(f"{name:>16}: {total / wall:10.0f} rows/s  (median of {[round(w, 2) for w in walls]} s)", flush=True)

        for parts in (1, 2):
            walls, loops = [], []
            for _ in range(args.repeat):
                wall, loop, n = in_process(args.python, batches, work, parts)
                if n != total:
                    sys.exit(f"in-process scored {n} rows, expected {total}")
                walls.append(wall)
                loops.append(loop)
            add("in-process" if parts == 1 else "in-process x2", walls, loops, parts)
        for w in [int(x) for x in args.workers.split()]:
            runs = sluice_runs(args.sluice, args.python, w, args.mini_batch_size, input_dir, work, args.repeat)
            for _, n in runs:
                if n != total:
                    sys.exit(f"sluice w{w} wrote {n} rows, expected {total}")
            add(f"sluice w{w}", [r[0] for r in runs], workers=w)

        base = rows[0]["rows_per_s"]
        by = {r["name"]: r for r in rows}
        lines = [
            f"# Batch job throughput: Sluice against an in-process loop ({datetime.date.today()})", "",
            f"- Machine: {machine()}",
            f"- Commit: {subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}",
            f"- Workload: examples/batch-sklearn (scikit-learn iris model, Azure-style batch_driver.py returning a DataFrame), "
            f"{args.files} CSV files x {args.rows} rows = {total} rows, mini_batch_size {args.mini_batch_size}, "
            f"median of {args.repeat} runs; Python {args.python}",
            f"- Reproduce: `python3 bench/batch_bench.py --files {args.files} --rows {args.rows} "
            f"--mini-batch-size {args.mini_batch_size} --repeat {args.repeat}` (after `cargo build --release -p sluice`)",
            "",
            "| run | workers | wall s | rows/s | of in-process (same workers) | loop-only rows/s |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            same = by["in-process x2"] if r["workers"] == 2 else by["in-process"]
            share = f"{100 * r['rows_per_s'] / same['rows_per_s']:.0f} %" if r["workers"] <= 2 else ""
            loop = f"{r['loop_rows_per_s']:.0f}" if r["loop_rows_per_s"] else ""
            lines.append(f"| {r['name']} | {r['workers']} | {r['wall_s']:.2f} | {r['rows_per_s']:.0f} | {share} | {loop} |")
        if "sluice w1" in by and "sluice w2" in by:
            lines += ["", f"Scaling from 1 to 2 workers: Sluice {by['sluice w2']['rows_per_s'] / by['sluice w1']['rows_per_s']:.2f}x, "
                          f"in-process {by['in-process x2']['rows_per_s'] / base:.2f}x."]
        report = "\n".join(lines) + "\n"
        print(report)
        if args.md:
            with open(args.md, "w") as f:
                f.write(report)
            with open(os.path.splitext(args.md)[0] + ".json", "w") as f:
                json.dump(rows, f, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
