"""sluice_worker/batch.py: the batch worker (``run(mini_batch)``, contract §2.5 and §5.3).

Every test starts a real ``python -m sluice_worker.batch`` process and speaks its line-delimited
JSON protocol on stdin/stdout (python/sluice_worker/README.md, "Batch worker").
"""

import csv
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import worker_client

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "scripts")
REPO = os.path.dirname(worker_client.PYTHON_DIR)
MLFLOW_MODEL = os.path.join(REPO, "testdata", "models", "mlflow-sklearn")
READY = worker_client.READY

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# Rows whose iris classes are known (test_mlflow_score.py uses the same two).
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.3, 3.3, 6.0, 2.5]


class BatchWorker:
    """A running batch worker: stdout lines go to a queue, stderr to a list."""

    def __init__(self, args, env=None, python_flags=(), cwd=None):
        full_env = dict(os.environ)
        for k in ("AML_APP_ROOT", "AZUREML_ENTRY_SCRIPT", "AZUREML_BI_OUTPUT_PATH", "SLUICE_MLFLOW_MODEL_PATH",
                  "SLUICE_MLFLOW_MLMODEL", "SLUICE_MLFLOW_LOADER"):
            full_env.pop(k, None)
        full_env.update(env or {})
        full_env["PYTHONPATH"] = worker_client.PYTHON_DIR + (
            os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
        cmd = [sys.executable, *python_flags, "-m", "sluice_worker.batch", *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=full_env, cwd=cwd)
        self.stdout_lines = []  # every line seen on stdout, decoded
        self.lines = queue.Queue()
        self.stderr_lines = []
        self._pumps = [threading.Thread(target=self._pump_out, daemon=True),
                       threading.Thread(target=self._pump_err, daemon=True)]
        for t in self._pumps:
            t.start()
        self.next_id = 1

    def _pump_out(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8")
            self.stdout_lines.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self):
        for raw in iter(self.proc.stderr.readline, b""):
            self.stderr_lines.append(raw.decode("utf-8", "replace"))

    @property
    def stderr(self):
        return "".join(self.stderr_lines)

    def next_line(self, timeout=60):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line on stdout within {timeout}s; stderr:\n{self.stderr}") from None
        if line is None:
            raise AssertionError(f"stdout closed (exit {self.proc.wait(10)}); stderr:\n{self.stderr}")
        return line

    def wait_ready(self, timeout=120):
        line = self.next_line(timeout)
        assert line == READY + "\n", (line, self.stderr)
        return self

    def send_line(self, text):
        self.proc.stdin.write(text.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def send(self, files, output_dir=None, rid=None):
        if rid is None:
            rid = f"mb-{self.next_id}"
            self.next_id += 1
        request = {"id": rid, "files": [str(f) for f in files]}
        if output_dir is not None:
            request["output_dir"] = str(output_dir)
        self.send_line(json.dumps(request))
        return rid

    def reply(self, timeout=60):
        return json.loads(self.next_line(timeout))

    def batch(self, files, output_dir=None):
        rid = self.send(files, output_dir)
        reply = self.reply()
        assert reply["id"] == rid, reply
        return reply

    def wait_stderr(self, needle, timeout=10):
        deadline = time.monotonic() + timeout
        while needle not in self.stderr:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return needle in self.stderr
            time.sleep(0.02)
        return True

    def wait(self, timeout=20):
        code = self.proc.wait(timeout)
        for t in self._pumps:  # both pipes read to their end
            t.join(10)
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def start():
    started = []

    def go(*args, ready=True, **kw):
        w = BatchWorker(list(args), **kw)
        started.append(w)
        if ready:
            w.wait_ready()
        return w

    yield go
    for w in started:
        w.stop()


def script(name):
    return os.path.join(SCRIPTS, name)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def only_protocol_on_stdout(w):
    """stdout holds the READY line and one JSON object per line, nothing a script printed."""
    assert w.stdout_lines[0] == READY + "\n"
    for line in w.stdout_lines[1:]:
        assert line.endswith("\n")
        obj = json.loads(line)
        assert not str(obj.get("id", "")).startswith("fake"), line


# --- custom scripts ------------------------------------------------------------------------------

def rows(reply):
    """A script's reply carries its rows as one text block, each row ending in a newline."""
    text = reply["rows_text"]
    assert text == "" or text.endswith("\n"), text
    return text.split("\n")[:-1] if text else []


def test_list_result_one_row_per_element(start, tmp_path):
    a = write(tmp_path / "a.txt", "1\n2\n3\n")
    b = write(tmp_path / "b.txt", "x\n")
    w = start("--entry-script", script("batch_list.py"), env={"BATCH_PREFIX": "p:"})
    reply = w.batch([a, b])
    assert reply["ok"] is True, reply
    assert rows(reply) == ["p:a.txt 3", "p:b.txt 1", "('call', 1)"]
    assert reply["items"] == 3
    assert reply["files"] == 2
    assert isinstance(reply["seconds"], float) and reply["seconds"] >= 0
    assert "failed_files" not in reply

    # The worker is long-lived: init() ran once, the module's state carries over.
    reply = w.batch([b])
    assert rows(reply) == ["p:b.txt 1", "('call', 2)"]
    assert w.wait_stderr("init done")
    assert w.stderr.count("init done") == 1


def test_user_output_never_reaches_the_protocol(start, tmp_path):
    a = write(tmp_path / "a.txt", "1\n")
    w = start("--entry-script", script("batch_list.py"))
    for _ in range(3):
        assert w.batch([a])["ok"] is True
    w.send_line(json.dumps({"shutdown": True}))
    assert w.wait() == 0
    only_protocol_on_stdout(w)
    assert len(w.stdout_lines) == 4
    # What the script printed (print(), and os.write on fd 1) is on stderr.
    assert w.stderr.count('{"id": "fake", "ok": true, "rows": ["printed by user code"]}') == 3
    assert w.stderr.count('{"id": "fake-fd", "ok": true}') == 3
    assert "SLUICE_WORKER_READY" in w.stderr  # printed by init()


def test_dataframe_rows_space_separated_without_header_or_index(start, tmp_path):
    a = write(tmp_path / "a.csv", "first line\nsecond\n")
    b = write(tmp_path / "b.csv", "plain\n")
    c = write(tmp_path / "c.csv", 'say "hi"\n')
    w = start("--entry-script", script("batch_dataframe.py"))
    reply = w.batch([a, b, c])
    assert reply["ok"] is True, reply
    assert rows(reply) == [
        'a.csv 2 0.5 "first line"',
        "b.csv 1 0.5 plain",
        'c.csv 1 0.5 "say ""hi"""',
    ]
    assert reply["items"] == 3
    # The rows read back with pandas as the Azure examples read predictions.csv.
    import pandas as pd

    back = pd.read_csv(io.StringIO(reply["rows_text"]), sep=" ", header=None,
                       names=["file", "lines", "score", "text"])
    assert back["text"].tolist() == ["first line", "plain", 'say "hi"']


def test_run_raising_fails_the_mini_batch_and_the_worker_survives(start, tmp_path):
    good = write(tmp_path / "good.txt", "1\n")
    bad = write(tmp_path / "bad.txt", "boom\n")
    w = start("--entry-script", script("batch_list.py"))
    reply = w.batch([good, bad])
    assert reply["ok"] is False
    assert reply["error"] == "ValueError: cannot score bad.txt"
    assert "Traceback (most recent call last)" in reply["traceback"]
    assert "ValueError: cannot score bad.txt" in reply["traceback"]
    assert reply["files"] == 2
    assert "rows_text" not in reply
    assert w.wait_stderr("ValueError: cannot score bad.txt")
    # Still serving.
    reply = w.batch([good])
    assert reply["ok"] is True and rows(reply)[0] == "good.txt 1"


def test_run_returning_none_fails_the_mini_batch(start, tmp_path):
    none = write(tmp_path / "none.txt", "1\n")
    w = start("--entry-script", script("batch_list.py"))
    reply = w.batch([none])
    assert reply["ok"] is False
    assert reply["error"].startswith("TypeError: run() returned None")


def test_summary_only_writes_under_azureml_bi_output_path(start, tmp_path):
    a = write(tmp_path / "in-a.txt", "1\n")
    b = write(tmp_path / "in-b.txt", "2\n")
    out = tmp_path / "job-output"
    w = start("--entry-script", script("batch_summary.py"), "--output-dir", str(out))
    reply = w.batch([a, b], output_dir=out)
    assert reply["ok"] is True, reply
    assert rows(reply) == [str(a), str(b)]
    assert reply["items"] == 2
    assert sorted(os.listdir(out)) == ["in-a.out", "in-b.out"]
    assert (out / "in-a.out").read_text() == f"{a} boot={out}\n"


def test_init_failure_exits_3_with_the_traceback(start):
    w = start("--entry-script", script("batch_init_raises.py"), ready=False,
              env={"AZUREML_MODEL_DIR": MLFLOW_MODEL})
    assert w.wait(60) == 3
    assert w.stdout_lines == []
    assert "User's init function failed" in w.stderr
    assert "Traceback (most recent call last)" in w.stderr
    assert "RuntimeError: no model in this folder" in w.stderr
    assert "Model Directory Contents:" in w.stderr


def test_missing_run_exits_3(start, tmp_path):
    bad = write(tmp_path / "no_run.py", "def init():\n    pass\n")
    w = start("--entry-script", str(bad), ready=False)
    assert w.wait(60) == 3
    assert "does not have a run() function defined" in w.stderr


def test_bad_command_line_exits_2(start):
    w = start(ready=False)
    assert w.wait(60) == 2
    assert "--entry-script" in w.stderr


def test_bad_request_lines_are_answered_and_the_worker_goes_on(start, tmp_path):
    a = write(tmp_path / "a.txt", "1\n")
    w = start("--entry-script", script("batch_list.py"))
    w.send_line("this is not json")
    reply = w.reply()
    assert reply["ok"] is False and reply["bad_request"] is True and reply["id"] is None
    w.send_line(json.dumps({"id": 7, "files": "a.txt"}))
    reply = w.reply()
    assert reply == {"id": 7, "ok": False, "bad_request": True,
                     "error": "BadRequest: 'files' must be a list of file paths"}
    w.send_line("")  # blank lines are skipped without a reply
    rid = w.send([a], rid={"job": "j1", "n": 3})  # any JSON id is echoed
    assert w.reply()["id"] == rid


def test_stdlib_only_in_a_bare_python(start, tmp_path):
    """``python -S``: no site-packages at all; a stdlib-only script still works."""
    a = write(tmp_path / "a.txt", "1\n")
    w = start("--entry-script", script("batch_list.py"), python_flags=("-S",))
    reply = w.batch([a])
    assert reply["ok"] is True, reply
    assert rows(reply)[0] == "a.txt 1"


# --- ending the worker ---------------------------------------------------------------------------

def test_eof_on_stdin_ends_the_worker(start):
    w = start("--entry-script", script("batch_list.py"))
    w.proc.stdin.close()
    assert w.wait() == 0


def test_shutdown_request_ends_the_worker(start):
    w = start("--entry-script", script("batch_list.py"))
    w.send_line(json.dumps({"shutdown": True}))
    assert w.wait() == 0
    assert w.stdout_lines == [READY + "\n"]


def test_sigterm_between_mini_batches_exits_0_at_once(start, tmp_path):
    a = write(tmp_path / "a.txt", "1\n")
    w = start("--entry-script", script("batch_list.py"))
    assert w.batch([a])["ok"] is True
    started = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait() == 0
    assert time.monotonic() - started < 5


def test_sigterm_taken_by_another_thread_stops_a_worker_waiting_for_work(start, tmp_path):
    """A SIGTERM the kernel hands to a thread the user's init() started, while the main thread
    waits on its standard input, still stops the worker."""
    driver = write(tmp_path / "threaded.py",
                   worker_client.THREAD_IN_INIT + "def run(mini_batch):\n    return [str(len(mini_batch))]\n")
    w = start("--entry-script", driver)
    worker_client.signal_other_thread(w.proc.pid, signal.SIGTERM)
    assert w.wait() == 0


def test_sigterm_during_a_mini_batch_finishes_it_first(start, tmp_path):
    slow = write(tmp_path / "slow.txt", "1.5\n")
    w = start("--entry-script", script("batch_slow.py"))
    rid = w.send([slow])
    assert w.wait_stderr("slow run started")
    w.proc.send_signal(signal.SIGTERM)
    reply = w.reply()
    assert reply["id"] == rid and reply["ok"] is True, reply
    assert rows(reply) == [f"done {slow}"]
    assert w.wait() == 0
    # A request queued behind it is not started.
    assert len(w.stdout_lines) == 2


# --- MLflow models without a script --------------------------------------------------------------

def write_csv(path, header, rows):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


@pytest.fixture
def iris_files(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    files = {
        "good": write_csv(d / "good.csv", COLUMNS, [SETOSA, VIRGINICA, SETOSA]),
        # Extra column, different order: the signature's columns are picked by name.
        "shuffled": write_csv(d / "shuffled.csv", ["id", *reversed(COLUMNS)],
                              [[10, *reversed(VIRGINICA)], [11, *reversed(SETOSA)]]),
        "missing": write_csv(d / "missing.csv", COLUMNS[:3], [SETOSA[:3]]),
        "bad_value": write_csv(d / "bad_value.csv", COLUMNS, [SETOSA, [5.0, "abc", 1.0, 0.1]]),
        "unsupported": write(d / "notes.txt", "sepal_length\n1\n"),
        "header_only": write_csv(d / "header_only.csv", COLUMNS, []),
    }
    return files


@pytest.mark.parametrize("loader", ["mlflow", "builtin"])
def test_mlflow_rows_and_per_file_failures(start, iris_files, loader):
    env = {"SLUICE_MLFLOW_LOADER": loader}
    w = start("--mlflow-model", MLFLOW_MODEL, env=env)
    f = iris_files
    reply = w.batch([f["good"], f["missing"], f["shuffled"], f["bad_value"], f["unsupported"], f["header_only"]])
    assert reply["ok"] is True, reply
    assert reply["rows"] == [
        "0,0,good.csv",
        "1,2,good.csv",
        "2,0,good.csv",
        "0,2,shuffled.csv",
        "1,0,shuffled.csv",
    ]
    assert reply["items"] == 5
    assert reply["files"] == 6
    failed = {os.path.basename(x["file"]): x["error"] for x in reply["failed_files"]}
    assert sorted(failed) == ["bad_value.csv", "missing.csv", "notes.txt"]
    assert [x["file"] for x in reply["failed_files"]] == [str(f["missing"]), str(f["bad_value"]),
                                                          str(f["unsupported"])]
    assert "missing column 'petal_width'" in failed["missing.csv"]
    assert failed["bad_value.csv"] == "column 'sepal_width' (double), row 1: \"abc\" is not a valid double value"
    assert failed["notes.txt"].startswith("File type 'txt' is not supported")
    assert w.wait_stderr("Error processing input file")


def test_mlflow_every_file_failing_fails_the_mini_batch(start, iris_files):
    w = start("--mlflow-model", MLFLOW_MODEL)
    reply = w.batch([iris_files["missing"], iris_files["unsupported"]])
    assert reply["ok"] is False
    assert reply["error"].startswith("ValueError: No objects to concatenate")
    assert len(reply["failed_files"]) == 2
    # and the worker goes on
    reply = w.batch([iris_files["good"]])
    assert reply["ok"] is True and len(reply["rows"]) == 3


def test_mlflow_model_from_environment(start, iris_files, tmp_path):
    """No DIR: $AZUREML_MODEL_DIR's only subfolder holding MLmodel, as Azure mounts a model."""
    import shutil

    model_dir = tmp_path / "models" / "iris" / "1"
    shutil.copytree(MLFLOW_MODEL, model_dir / "model")
    w = start("--mlflow-model", env={"AZUREML_MODEL_DIR": str(model_dir)})
    reply = w.batch([iris_files["good"]])
    assert reply["rows"] == ["0,0,good.csv", "1,2,good.csv", "2,0,good.csv"]


def test_mlflow_model_that_cannot_load_exits_3(start, tmp_path):
    w = start("--mlflow-model", str(tmp_path), ready=False)
    assert w.wait(60) == 3
    assert "Failed to load the MLflow model" in w.stderr
    assert "is not an MLflow model folder" in w.stderr


# --- the repository's example --------------------------------------------------------------------

def test_example_batch_sklearn_matches_expected_predictions(start):
    """examples/batch-sklearn: its driver, data and expected append_row output
    (scripts/gen_batch_data.py) agree, in mini-batches of the deployment's mini_batch_size."""
    example = os.path.join(REPO, "examples", "batch-sklearn")
    data = os.path.join(example, "data")
    files = sorted(os.path.join(data, name) for name in os.listdir(data))
    assert len(files) == 10
    w = start("--entry-script", "batch_driver.py", "--app-root", os.path.join(example, "code"),
              env={"AZUREML_MODEL_DIR": os.path.join(REPO, "examples", "sklearn-score")})
    text = ""
    for i in range(0, len(files), 3):
        reply = w.batch(files[i:i + 3])
        assert reply["ok"] is True, reply
        text += reply["rows_text"]
    with open(os.path.join(example, "expected-predictions.csv"), encoding="utf-8") as f:
        assert text == f.read()
    assert w.wait_stderr("run method start")  # the driver's print()
