#!/usr/bin/env python3
"""Benchmark Sluice the way the peer kit's bench.py benchmarks a peer, and append one JSON line
in the kit's schema to --out, so the kit's report.py prints Sluice and the peers in one table.

Six modes. ONNX (the kit's lr model, KServe v2 request):
  gateway       `sluice server` with the lr model deployed (endpoint lr-ep, deployment blue, key
                auth); the load goes through the gateway with `Authorization: Bearer <primaryKey>`.
                The server starts the replica as its child: both are in the measured process tree.
  split-mirror  the same server, but endpoint lr-ep has three deployments of lr:1: blue and green
                splitting live traffic 50/50, and shadow receiving a 20 % mirror. The server and its
                three replicas are in the measured tree. Before and after each level (outside the
                measured window) and after the run, the runner reads `sluice online-endpoint show
                --name lr-ep` and keeps its `deployment_stats`; the note gets a one-line mirror
                summary (copies, shed, agreement). --traffic/--mirror change the split and mirror.
  replica       `sluice replica` alone, as the server would launch it for `instance_type: cpu=1`
                (--intra-op-threads 1 --inference-threads 1); no auth. gateway minus replica is the
                gateway's cost.
Scoring script (an Azure ML score.py, default examples/sklearn-score: joblib scikit-learn model,
body {"data": [[4 floats]]}), with --workers Python worker processes (Azure's WORKER_COUNT, default
1) in every server:
  python-gateway  `sluice server --python PY` with endpoint score-ep (key auth) and deployment blue
                  (code_configuration + inline model path, environment_variables WORKER_COUNT, no
                  `environment:` so the server's --python runs it); load on /endpoints/score-ep/score
                  with the key. Server, replica-python and its workers are in the measured tree.
  python-replica  `sluice replica-python` alone (what the gateway proxies to), /score, no auth.
  azmlinfsrv      azureml-inference-server-http (gunicorn arbiter + WORKER_COUNT sync workers), the
                  server Azure ML runs in its images, from the same venv, on the same score.py, model
                  folder and WORKER_COUNT; /score, no auth.
Each run records server CPU per request per process role (cpu_us_per_req_by_role), so the table's
total can be split into gateway, replica and Python worker (or gunicorn arbiter and workers).

Methodology is the kit's, reused rather than copied where possible: the /proc process-tree CPU
and RSS accounting, the autogroup boost, the per-core CPU counters and the stop sequence are the
functions of shared/bench/peers/bench.py, imported from --kit. The server is started as
`nice -n $BENCH_NICE taskset -c $SERVER_CPUS ...` (every process it starts inherits the
affinity), wrk as `nice -n $BENCH_NICE taskset -c $LOAD_CPUS wrk -t1 -cN -dDs --latency`.
stdlib only. Run it inside `unshare -n` (bench/run.sh does) to get the kit's private network
namespace.
"""
import argparse, json, os, resource, shlex, shutil, subprocess, sys, tempfile, time, urllib.error, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

EP_YAML = "name: lr-ep\nauth_mode: key\n"
DEP_YAML = """name: {name}
endpoint_name: lr-ep
model: azureml:lr:1
instance_type: cpu=1,memory=1Gi
instance_count: 1
request_settings:
  max_concurrent_requests_per_instance: 32
"""

# split-mirror: live split and mirror, set with the CLI after the three deployments are ready.
SPLIT_DEPLOYMENTS = ("blue", "green", "shadow")
SPLIT_TRAFFIC = "blue=50 green=50"
SPLIT_MIRROR = "shadow=20"

NOTES = {
    "gateway": "sluice server: gateway (key auth, Bearer header) -> 1 replica over its multiplexed Unix socket (loopback, sluice_net::mux); "
               "deployment instance_type cpu=1 (replica: intra-op 1, inference threads 1), "
               "max_concurrent_requests_per_instance 32; server + replica pinned and counted",
    "split-mirror": "sluice server as sluice-gateway, but 3 deployments of lr:1 (blue, green, shadow; each "
                    "cpu=1, 1 instance, max_concurrent_requests_per_instance 32): live traffic \"{traffic}\", "
                    "mirror \"{mirror}\" (a mirrored copy is sent after the live answer, and its answer "
                    "compared with the live one); server + 3 replicas pinned and counted",
    "replica": "sluice replica alone (what the gateway proxies to): --intra-op-threads 1 "
               "--inference-threads 1, KServe v2 REST, no auth",
    "python-gateway": "sluice server --python <dev venv>: gateway (key auth, Bearer header) -> 1 replica-python "
                      "-> {workers} Python worker process(es) (WORKER_COUNT={workers}) over a Unix socket; "
                      "deployment code_configuration {script}, model path {model} (uploaded), instance_type "
                      "cpu=1, no environment (the server's --python); server + replica + workers pinned and counted",
    "python-replica": "sluice replica-python alone (what the gateway proxies to): {workers} Python worker "
                      "process(es) (WORKER_COUNT={workers}), --request-timeout-ms 5000, POST /score, no auth",
    "azmlinfsrv": "azureml-inference-server-http {version} (azmlinfsrv --entry_script {script}): gunicorn {gunicorn} "
                  "arbiter + {workers} sync worker(s) (WORKER_COUNT={workers}), Flask, defaults (access log "
                  "on stdout); same venv, score.py and model folder as Sluice; POST /score, no auth; "
                  "answers with Connection: close (gunicorn's sync worker), so wrk reconnects per request",
}
PYTHON_MODES = ("python-gateway", "python-replica", "azmlinfsrv")
SCORE_EP_YAML = "name: score-ep\nauth_mode: key\n"
SCORE_DEP_YAML = """name: blue
endpoint_name: score-ep
model:
  path: {model}
code_configuration:
  code: {code}
  scoring_script: {script}
instance_type: cpu=1,memory=1Gi
instance_count: 1
environment_variables:
  WORKER_COUNT: "{workers}"
request_settings:
  max_concurrent_requests_per_instance: 32
"""


def default_python():
    """The dev venv's interpreter: $SLUICE_PYTHON, else scripts/python-env.sh's venv."""
    if os.environ.get("SLUICE_PYTHON"):
        return os.environ["SLUICE_PYTHON"]
    venv = subprocess.run(["bash", os.path.join(ROOT, "scripts", "python-env.sh")], capture_output=True,
                          text=True, check=True).stdout.strip().splitlines()[-1]
    return os.path.join(venv, "bin", "python")


def pkg_version(python, dist):
    try:
        return subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                              capture_output=True, text=True, timeout=60).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def role(pid, root):
    """What a process of the measured tree is, from its command line."""
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return "?"
    text = b" ".join(argv).decode(errors="replace")
    if "sluice_worker" in text:
        return "python worker"
    if "replica-python" in text:
        return "sluice replica-python"
    if " replica " in f" {text} ":
        return "sluice replica"
    if "azmlinfsrv" in text or "gunicorn" in text:
        return "gunicorn arbiter" if pid == root else "gunicorn worker"
    if " server " in f" {text} ":
        return "sluice server"
    return os.path.basename(argv[0].decode(errors="replace")) or "?"


def per_pid_cpu(root):
    pids, stats = kit.tree(root)
    return {p: stats[p]["cpu"] for p in pids}


def post(url, body, ctype, headers=None, timeout=10):
    h = {"Content-Type": ctype}
    h.update(headers or {})
    req = urllib.request.Request(url, data=body, headers=h, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def run_wrk(url, body_file, ctype, conc, dur, load_cpus, nice, bearer):
    env = dict(os.environ, BODY_FILE=body_file, CONTENT_TYPE=ctype, AUTH_BEARER=bearer or "")
    cmd = ["nice", "-n", nice, "taskset", "-c", load_cpus, "wrk", "-t1", f"-c{conc}", f"-d{dur}s",
           "--timeout", os.environ.get("WRK_TIMEOUT", "10s"), "--latency",
           "-s", os.path.join(HERE, "wrk_post_auth.lua"), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=dur + 60).stdout
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[8:])
    raise RuntimeError("wrk produced no summary:\n" + out)


def cpus_allowed(pid, want=None):
    """Cpus_allowed_list of a process, or the canonical form of `want` (e.g. "1") if given."""
    if want is not None:
        cpus = set()
        for part in want.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        return ",".join(map(str, sorted(cpus)))
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("Cpus_allowed_list:"):
                return cpus_allowed(None, line.split(":", 1)[1].strip())
    except OSError:
        return None
    return None


def wait_for_line(path, needle, proc, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited rc={proc.returncode} before printing {needle}; see {path}")
        with open(path, "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                if line.startswith(needle):
                    return line[len(needle):].strip()
        time.sleep(0.1)
    raise RuntimeError(f"no {needle} line after {timeout}s; see {path}")


def cli(binary, server_url, data_dir, args, logf, timeout=300):
    """One `sluice` CLI command against the server under test (not pinned, not measured)."""
    env = dict(os.environ, SLUICE_SERVER=server_url, SLUICE_DATA_DIR=data_dir)
    logf.write(f"\n$ sluice {' '.join(args)}\n".encode())
    logf.flush()
    p = subprocess.run([binary, *args], env=env, capture_output=True, timeout=timeout)
    logf.write(p.stdout + p.stderr)
    logf.flush()
    if p.returncode != 0:
        raise RuntimeError(f"`sluice {' '.join(args)}` failed rc={p.returncode}: "
                           f"{(p.stderr or p.stdout).decode(errors='replace').strip()[-400:]}")
    return p.stdout.decode()


def endpoint_stats(binary, server_url, data_dir, logf):
    """`deployment_stats` of `sluice online-endpoint show --name lr-ep` (live and mirrored counts
    since the server started)."""
    shown = json.loads(cli(binary, server_url, data_dir, ["online-endpoint", "show", "--name", "lr-ep"], logf))
    return shown.get("deployment_stats", {})


def stats_delta(after, before):
    """Per deployment, the request counters of `after` minus those of `before` (one level's share)."""
    out = {}
    for d, a in after.items():
        b = before.get(d, {})
        row = {"requests": a.get("requests", 0) - b.get("requests", 0),
               "errors": a.get("errors", 0) - b.get("errors", 0)}
        if a.get("mirror"):
            bm = b.get("mirror") or {}
            row["mirror"] = {k: a["mirror"].get(k, 0) - bm.get(k, 0)
                             for k in ("requests", "errors", "shed", "compared", "agreed")}
        out[d] = row
    return out


def mirror_summary(stats, per_level=None):
    """One line: the mirror's copies, shed and agreement, against the live requests."""
    live = sum(s.get("requests", 0) for d, s in stats.items() if not s.get("mirror"))
    parts = []
    for d, s in stats.items():
        m = s.get("mirror")
        if not m:
            continue
        offered = m["requests"] + m["shed"]
        agreement = "n/a" if m.get("agreement") is None else f"{m['agreement']:g}"
        parts.append(f"mirror {d}: {m['requests']} copies + {m['shed']} shed "
                     f"= {100 * offered / max(live, 1):.1f} % of {live} live requests, "
                     f"{m['errors']} errors, agreement {agreement} ({m['agreed']}/{m['compared']} compared), "
                     f"p99 {m['p99_ms'] if m.get('p99_ms') is not None else '-'} ms")
    if not parts:
        return "mirror: no copies recorded"
    line = "; ".join(parts) + " (" + ", ".join(
        f"{d} {s.get('requests', 0)}" for d, s in stats.items() if not s.get("mirror")) + " live)"
    if per_level:
        lv = []
        for c, delta in per_level:
            ms = [v["mirror"] for v in delta.values() if v.get("mirror")]
            if ms:
                lv.append(f"c={c}: {sum(m['requests'] for m in ms)} copies, {sum(m['shed'] for m in ms)} shed")
        if lv:
            line += "; measured levels alone: " + ", ".join(lv)
    return line


def open_loop(a, kit, root, url, body_file, bearer, capacity, name, fraction):
    """A fixed-rate run at fraction x capacity (the best closed-loop req/s) with bench's sluice-loadgen,
    latency from each request's scheduled send time (no coordinated omission), and the server's CPU meanwhile."""
    rate = round(fraction * capacity)
    cmd = ["nice", "-n", kit.NICE, "taskset", "-c", a.load_cpus, a.loadgen, "--url", url, "--body", body_file,
           "--content-type", a.ctype, "--rate", str(rate), "--duration", str(a.duration), "--warmup", "2",
           "--expect", a.expect or "", "--series-ms", "100"]
    if bearer:
        cmd += ["--header", f"Authorization: Bearer {bearer}"]
    kit.boost(kit.tree(root)[0])
    cpu0, _, _ = kit.usage(root)
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + 90)
    wall = time.time() - t0
    cpu1, rss, _ = kit.usage(root)
    if out.returncode != 0:
        raise RuntimeError(f"sluice-loadgen failed: {out.stderr.strip()[:300]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["fraction_of_capacity"] = fraction
    r["capacity_rps"] = capacity
    # The load runs 2 s of warm-up plus the measured window: CPU per request over all of it.
    sent = r["ok"] * (a.duration + 2) / a.duration
    r["server_cpu_us_per_req"] = round(1e6 * (cpu1 - cpu0) / max(sent, 1), 1)
    r["server_cpu_pct"] = round(100 * (cpu1 - cpu0) / wall, 1)
    r["rss_mb"] = round(rss / 2**20, 1)
    print(f"[{name}] open loop at {rate} req/s ({fraction:.0%} of {capacity:.0f}): p50 {r['p50_us'] / 1000:.2f} ms  "
          f"p99 {r['p99_us'] / 1000:.2f} ms  p99.9 {r['p999_us'] / 1000:.2f} ms  errors {r['errors']}  "
          f"max dispatch lag {r['max_dispatch_lag_us']} µs", flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadgen", default=None, help="bench's sluice-loadgen binary, for --open-loop")
    ap.add_argument("--open-loop", default="0",
                    help="after the closed-loop levels, fixed-rate runs at these fractions of the best req/s, "
                         "e.g. \"0.6 0.7 0.8\" (0: none)")
    ap.add_argument("--mode", choices=["gateway", "split-mirror", "replica", *PYTHON_MODES], required=True)
    ap.add_argument("--name", default=None, help="result name (default sluice-<mode>)")
    ap.add_argument("--bin", required=True, help="the sluice release binary")
    ap.add_argument("--kit", default=os.path.join(ROOT, "..", "shared", "bench", "peers"))
    ap.add_argument("--model-repo", default=os.path.join(ROOT, "testdata/models/lr20/model_repository"))
    ap.add_argument("--triton-model", default="lr", help="the model's name in --model-repo (the URL's /v2/models/NAME)")
    ap.add_argument("--body", default=None, help="default testdata/models/lr20/v2_X.json (ONNX modes), "
                    "bench/score_body.json (scoring-script modes)")
    ap.add_argument("--ctype", default="application/json")
    ap.add_argument("--expect", default=None, help='default \'"data":[1]\' (ONNX modes), "[0]" (scoring-script modes)')
    ap.add_argument("--port", type=int, default=None,
                    help="default 9100 (gateway, split-mirror, python-gateway) / 9200 (replica, python-replica) / 9300 (azmlinfsrv)")
    # Scoring-script modes.
    ap.add_argument("--python", default=None,
                    help="the venv interpreter for the scoring script and azmlinfsrv (default $SLUICE_PYTHON, "
                         "else scripts/python-env.sh's venv)")
    ap.add_argument("--workers", type=int, default=int(os.environ.get("WORKER_COUNT", 1)),
                    help="Python worker processes, WORKER_COUNT, in every server (default $WORKER_COUNT or 1)")
    ap.add_argument("--score-code", default=os.path.join(ROOT, "examples/sklearn-score/onlinescoring"),
                    help="the code folder (code_configuration.code)")
    ap.add_argument("--score-script", default="score.py", help="the scoring script, relative to --score-code")
    ap.add_argument("--score-model", default=os.path.join(ROOT, "examples/sklearn-score/model"),
                    help="the model folder; the script finds it as $AZUREML_MODEL_DIR/<its basename>")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 20)))
    ap.add_argument("--conc", default=os.environ.get("CONCS", "1,32"))
    ap.add_argument("--warmup", type=int, default=int(os.environ.get("WARMUP", 5)))
    ap.add_argument("--ready-timeout", type=int, default=300)
    ap.add_argument("--server-cpus", default=os.environ.get("SERVER_CPUS", "1"))
    ap.add_argument("--load-cpus", default=os.environ.get("LOAD_CPUS", "0"))
    ap.add_argument("--out", default=os.environ.get("RESULTS", "results.jsonl"))
    ap.add_argument("--log", default=None)
    ap.add_argument("--note", default=None)
    ap.add_argument("--traffic", default=SPLIT_TRAFFIC, help="split-mirror: the live split (--traffic)")
    ap.add_argument("--mirror", default=SPLIT_MIRROR,
                    help="split-mirror: the mirror (--mirror-traffic); empty: no mirror, shadow stays idle")
    ap.add_argument("--keep-data", action="store_true", help="keep the server's temporary data directory")
    a = ap.parse_args()

    global kit
    sys.path.insert(0, os.path.abspath(a.kit))
    import bench as kit  # the peer kit's bench.py: same accounting functions as the peers get

    scoring = a.mode in PYTHON_MODES
    wsuffix = f"-w{a.workers}" if scoring and a.workers != 1 else ""
    name = a.name or (("azmlinfsrv" if a.mode == "azmlinfsrv" else f"sluice-{a.mode}") + wsuffix)
    port = a.port or {"replica": 9200, "python-replica": 9200, "azmlinfsrv": 9300}.get(a.mode, 9100)
    binary = os.path.abspath(a.bin)
    if a.body is None:
        a.body = os.path.join(HERE, "score_body.json") if scoring else os.path.join(ROOT, "testdata/models/lr20/v2_X.json")
    if a.expect is None:
        a.expect = "[0]" if scoring else '"data":[1]'
    body_file = os.path.abspath(a.body)
    body = open(body_file, "rb").read()
    log_path = os.path.abspath(a.log or f"{name}.server.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    logf = open(log_path, "wb")
    try:  # own session (own autogroup) for this runner + wrk, as in the kit
        os.setsid()
    except OSError:
        pass
    kit.boost(["self"])

    work = tempfile.mkdtemp(prefix=f"sluice-bench-{a.mode}-")
    data_dir = os.path.join(work, "data")
    served = a.mode in ("gateway", "split-mirror", "python-gateway")  # through `sluice server`
    q = shlex.quote
    note_fmt = {"traffic": a.traffic, "mirror": a.mirror or "none", "workers": a.workers}
    expected_procs = None  # the tree's process count once ready, where it is known
    if scoring:
        python = os.path.abspath(a.python or default_python())
        code_dir = os.path.abspath(a.score_code)
        model_dir = os.path.abspath(a.score_model)
        # AZUREML_MODEL_DIR is the folder that holds the model folder (as Azure and Sluice set it).
        model_parent = os.path.dirname(model_dir.rstrip("/"))
        note_fmt.update(script=os.path.relpath(os.path.join(code_dir, a.score_script), ROOT),
                        model=os.path.relpath(model_dir, ROOT))
        result_extra = {"workers": a.workers, "python": python}
    else:
        result_extra = {}
    if a.mode in ("gateway", "split-mirror"):
        server_cmd = f"exec {q(binary)} server --addr 127.0.0.1:{port} --data-dir {q(data_dir)}"
        url = f"http://127.0.0.1:{port}/endpoints/lr-ep/v2/models/{a.triton_model}/infer"
    elif a.mode == "replica":
        server_cmd = (f"exec {q(binary)} replica --model-dir {q(os.path.abspath(a.model_repo))} "
                      f"--format triton --listen 127.0.0.1:{port} --intra-op-threads 1 --inference-threads 1")
        url = f"http://127.0.0.1:{port}/v2/models/{a.triton_model}/infer"
    elif a.mode == "python-gateway":
        server_cmd = f"exec {q(binary)} server --addr 127.0.0.1:{port} --data-dir {q(data_dir)} --python {q(python)}"
        url = f"http://127.0.0.1:{port}/endpoints/score-ep/score"
        expected_procs = 2 + a.workers
    elif a.mode == "python-replica":
        server_cmd = (f"exec env AZUREML_MODEL_DIR={q(model_parent)} WORKER_COUNT={a.workers} {q(binary)} replica-python "
                      f"--code-dir {q(code_dir)} --scoring-script {q(a.score_script)} --python {q(python)} "
                      f"--request-timeout-ms 5000 --listen 127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}/score"
        expected_procs = 1 + a.workers
    else:  # azmlinfsrv
        azml = os.path.join(os.path.dirname(python), "azmlinfsrv")
        if not os.access(azml, os.X_OK):
            err = f"no azmlinfsrv next to {python} (azureml-inference-server-http is not installed there)"
            print(f"[{name}] FAILED: {err}", flush=True)
            with open(a.out, "a") as f:
                f.write(json.dumps({"name": name, "ok": False, "error": err}) + "\n")
            return 1
        note_fmt.update(version=pkg_version(python, "azureml-inference-server-http"),
                        gunicorn=pkg_version(python, "gunicorn"))
        # HOME: gunicorn 2x puts a control socket in ~/.gunicorn; keep it in this run's folder.
        server_cmd = (f"exec env HOME={q(work)} AZUREML_MODEL_DIR={q(model_parent)} WORKER_COUNT={a.workers} "
                      f"{q(azml)} --entry_script {q(os.path.join(code_dir, a.score_script))} --port {port}")
        url = f"http://127.0.0.1:{port}/score"
        expected_procs = 1 + a.workers
    cmd = f"exec nice -n {kit.NICE} taskset -c {a.server_cpus} bash -c {shlex.quote(server_cmd)}"
    result = {"name": name, "note": a.note or NOTES[a.mode].format(**note_fmt), "url": url, "server_cpus": a.server_cpus,
              "load_cpus": a.load_cpus, **result_extra}
    t_start = time.time()
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=work, stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True)
    root = proc.pid
    ok = False
    try:
        bearer = None
        t_create = None
        if served:
            server_url = wait_for_line(log_path, "SLUICE_LISTENING", proc, a.ready_timeout)
            kit.boost(kit.tree(root)[0])
        if a.mode == "python-gateway":
            ep_yml = os.path.join(work, "endpoint.yml")
            open(ep_yml, "w").write(SCORE_EP_YAML)
            cli(binary, server_url, data_dir, ["online-endpoint", "create", "--file", ep_yml], logf)
            dep_yml = os.path.join(work, "deployment-blue.yml")
            open(dep_yml, "w").write(SCORE_DEP_YAML.format(model=json.dumps(model_dir), code=json.dumps(code_dir),
                                                           script=json.dumps(a.score_script), workers=a.workers))
            # `create` uploads the code and model folders and waits until the deployment is ready.
            cli(binary, server_url, data_dir, ["online-deployment", "create", "--file", dep_yml, "--all-traffic"], logf)
            kit.boost(kit.tree(root)[0])
            creds = cli(binary, server_url, data_dir, ["online-endpoint", "get-credentials", "--name", "score-ep"], logf)
            bearer = json.loads(creds)["primaryKey"]
        elif served:
            ep_yml = os.path.join(work, "endpoint.yml")
            open(ep_yml, "w").write(EP_YAML)
            cli(binary, server_url, data_dir, ["model", "create", "--name", "lr", "--version", "1",
                                               "--type", "triton_model", "--path", os.path.abspath(a.model_repo)], logf)
            cli(binary, server_url, data_dir, ["online-endpoint", "create", "--file", ep_yml], logf)
            for dep in (SPLIT_DEPLOYMENTS if a.mode == "split-mirror" else ("blue",)):
                dep_yml = os.path.join(work, f"deployment-{dep}.yml")
                open(dep_yml, "w").write(DEP_YAML.format(name=dep))
                # `create` waits until the deployment is ready.
                extra = ["--all-traffic"] if a.mode == "gateway" else []
                if dep == "blue":
                    t_create = time.time()
                cli(binary, server_url, data_dir, ["online-deployment", "create", "--file", dep_yml, *extra], logf)
                kit.boost(kit.tree(root)[0])
            if a.mode == "split-mirror":
                cli(binary, server_url, data_dir, ["online-endpoint", "update", "--name", "lr-ep",
                                                   "--traffic", a.traffic], logf)
                if a.mirror:
                    cli(binary, server_url, data_dir, ["online-endpoint", "update", "--name", "lr-ep",
                                                       "--mirror-traffic", a.mirror], logf)
            creds = cli(binary, server_url, data_dir, ["online-endpoint", "get-credentials", "--name", "lr-ep"], logf)
            bearer = json.loads(creds)["primaryKey"]
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}

        sample = None
        last_err = ""
        while time.time() - t_start < a.ready_timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited rc={proc.returncode}; see {log_path}")
            kit.boost(kit.tree(root)[0])
            try:
                st, resp = post(url, body, a.ctype, headers, timeout=5)
                if st == 200:
                    sample = resp
                    break
            except urllib.error.HTTPError as e:
                last_err = f"HTTP {e.code}: {e.read()[:200]!r}"
            except (urllib.error.URLError, ConnectionError, OSError) as e:
                last_err = str(e)
            time.sleep(0.25)
        if sample is None:
            raise RuntimeError(f"not ready after {a.ready_timeout}s ({last_err}); see {log_path}")
        result["startup_s"] = round(time.time() - t_start, 2)
        if t_create is not None:
            # `online-deployment create` (upload, replica start, wait until ready) to the first 200 answer.
            result["create_to_first_score_s"] = round(time.time() - t_create, 3)
        result["sample_response"] = sample.decode(errors="replace")[:600]
        if a.expect and a.expect not in result["sample_response"]:
            raise RuntimeError(f"response lacks {a.expect!r}: {result['sample_response']}")
        print(f"[{name}] ready in {result['startup_s']}s: {result['sample_response'][:200]}", flush=True)
        _, rss_idle, nproc_idle = kit.usage(root)
        if expected_procs is not None and nproc_idle != expected_procs:
            time.sleep(2)  # a worker may still be starting (WORKER_COUNT > 1)
            _, rss_idle, nproc_idle = kit.usage(root)
        result["rss_idle_mb"] = round(rss_idle / 2**20, 1)
        roles = {p: role(p, root) for p in kit.tree(root)[0]}
        result["tree_roles"] = sorted(roles.values())
        if expected_procs is not None and nproc_idle != expected_procs:
            raise RuntimeError(f"expected {expected_procs} processes in the tree ({a.workers} worker(s)), "
                               f"found {nproc_idle}: {result['tree_roles']}")
        # Every process of the tree (server and replica) must be on the server's CPUs only.
        result["tree_cpus_allowed"] = sorted({cpus_allowed(p) for p in kit.tree(root)[0]} - {None})
        if result["tree_cpus_allowed"] != [cpus_allowed("self", a.server_cpus)]:
            raise RuntimeError(f"server tree is not pinned to {a.server_cpus}: {result['tree_cpus_allowed']}")
        kit.boost(kit.tree(root)[0])
        if a.warmup:
            run_wrk(url, body_file, a.ctype, 32, a.warmup, a.load_cpus, kit.NICE, bearer)
        if a.mode == "split-mirror":
            if nproc_idle != 1 + len(SPLIT_DEPLOYMENTS):
                raise RuntimeError(f"expected the server + {len(SPLIT_DEPLOYMENTS)} replicas in the tree, "
                                   f"found {nproc_idle} processes")
        runs = []
        per_level = []  # split-mirror: (conc, deployment_stats delta of the level)
        # From here on, the same loop as the kit's bench.py main().
        for c in [int(x) for x in a.conc.split(",")]:
            stats0 = endpoint_stats(binary, server_url, data_dir, logf) if a.mode == "split-mirror" else None
            kit.boost(kit.tree(root)[0])
            cpu0, _, _ = kit.usage(root)
            pid_cpu0 = per_pid_cpu(root)
            sb0, st0 = kit.cpu_ticks(a.server_cpus)
            ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            load0 = open("/proc/loadavg").read().split()[0]
            t0 = time.time()
            w = run_wrk(url, body_file, a.ctype, c, a.duration, a.load_cpus, kit.NICE, bearer)
            wall = time.time() - t0
            cpu1, rss, nproc = kit.usage(root)
            pid_cpu1 = per_pid_cpu(root)
            sb1, st1 = kit.cpu_ticks(a.server_cpus)
            ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            wrk_cpu = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
            ncores = max(1, round((st1 - st0) / kit.CLK / wall))
            server_cores_busy = 100 * (sb1 - sb0) / max(st1 - st0, 1) * ncores  # % of one core
            secs = w["duration_us"] / 1e6
            errs = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] + w["err_timeout"]
            r = {"conc": c, "rps": round(w["requests"] / secs, 1), "requests": w["requests"],
                 "errors": errs, "p50_ms": w["lat_p50_us"] / 1000, "p90_ms": w["lat_p90_us"] / 1000,
                 "p99_ms": w["lat_p99_us"] / 1000, "max_ms": w["lat_max_us"] / 1000,
                 "server_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
                 "server_cpu_us_per_req": round(1e6 * (cpu1 - cpu0) / max(w["requests"], 1), 1),
                 "rss_mb": round(rss / 2**20, 1), "procs": nproc,
                 "wrk_cpu_pct": round(100 * wrk_cpu / wall, 1),
                 "foreign_cpu_on_server_cores_pct": round(server_cores_busy - 100 * (cpu1 - cpu0) / wall, 1),
                 "loadavg_1m_before": float(load0), "wrk": w}
            # The same CPU split by process role (server, replica, Python workers, ...).
            by_role = {}
            for p, t in pid_cpu1.items():
                if p not in roles:
                    roles[p] = role(p, root)
                by_role[roles[p]] = by_role.get(roles[p], 0.0) + t - pid_cpu0.get(p, 0.0)
            r["cpu_us_per_req_by_role"] = {k: round(1e6 * v / max(w["requests"], 1), 1) for k, v in sorted(by_role.items())}
            if stats0 is not None:
                r["deployment_stats_delta"] = stats_delta(endpoint_stats(binary, server_url, data_dir, logf), stats0)
                per_level.append((c, r["deployment_stats_delta"]))
            runs.append(r)
            print(f"[{name}] c={c}: {r['rps']} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                  f"errors {errs}  server CPU {r['server_cpu_pct']}%  wrk CPU {r['wrk_cpu_pct']}%  "
                  f"foreign CPU on server core {r['foreign_cpu_on_server_cores_pct']}%  RSS {r['rss_mb']} MB ({nproc} procs)",
                  flush=True)
            print(f"[{name}] c={c}: server CPU µs/req by process: " +
                  ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_us_per_req_by_role"].items()), flush=True)
        result["runs"] = runs
        fractions = [float(f) for f in str(a.open_loop).replace(",", " ").split() if float(f) > 0]
        if fractions and a.loadgen and runs:
            capacity = max(r["rps"] for r in runs)
            result["open_loop_runs"] = [open_loop(a, kit, root, url, body_file, bearer, capacity, name, f)
                                        for f in fractions]
            result["open_loop"] = result["open_loop_runs"][-1]
        if a.mode == "split-mirror":
            # After the run: totals since the server started (readiness probe, warm-up, levels).
            result["deployment_stats"] = endpoint_stats(binary, server_url, data_dir, logf)
            result["mirror_summary"] = mirror_summary(result["deployment_stats"], per_level)
            result["note"] += "; after the run, `online-endpoint show`: " + result["mirror_summary"]
            print(f"[{name}] {result['mirror_summary']}", flush=True)
        result["ok"] = ok = True
    except Exception as e:  # record the failure, still stop the server
        result["ok"] = False
        result["error"] = str(e)
        print(f"[{name}] FAILED: {e}", flush=True)
    finally:
        kit.stop(root, proc=proc)
        proc.poll()
        logf.close()
        if ok and not a.keep_data:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[{name}] server work directory kept: {work}", flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
