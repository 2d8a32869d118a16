"""Differential check: the same requests to azmlinfsrv (azureml-inference-server-http, the
reference) over HTTP and to sluice_worker over its protocol must give the same status, content type,
body and ``x-ms-run-function-failed``.

Headers that legitimately differ are listed in IGNORED_HEADERS (see python/sluice_worker/README.md,
"Differences from azmlinfsrv"). azmlinfsrv is taken from the running interpreter's venv (it is in
scripts/requirements-dev.txt), or from $SLUICE_AZMLINFSRV; the module is skipped without it.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest

import worker_client
from conftest import SCRIPTS, script_path

AZMLINFSRV = os.environ.get("SLUICE_AZMLINFSRV") or shutil.which(
    "azmlinfsrv", path=os.path.dirname(sys.executable)) or shutil.which("azmlinfsrv")

pytestmark = pytest.mark.skipif(not AZMLINFSRV, reason="azmlinfsrv (azureml-inference-server-http) not installed")

# Present on one side only, by design: the replica/gateway sets the request-id family and the
# server version for every runtime; hop-by-hop and length headers belong to the HTTP layer (the
# protocol frames carry the body length); x-ms-run-fn-exec-ms is compared for presence only.
IGNORED_HEADERS = {
    "server", "date", "connection", "content-length", "transfer-encoding", "x-ms-server-version",
    "x-request-id", "x-ms-request-id", "x-ms-client-request-id", "x-ms-run-fn-exec-ms",
}

JSON = [("content-type", "application/json")]
TEXT = [("content-type", "text/plain")]
NUMPY_OK = json.dumps({"data": [[1, 2], [3, 4]]}).encode()
IRIS_RECORDS = json.dumps({"iris": [
    {"sepal_length": 7.2, "sepal_width": 3.2, "petal_length": 6.0, "petal_width": 1.8},
    {"sepal_length": 4.2, "sepal_width": 3.5, "petal_length": 1.0, "petal_width": 3.0}]}).encode()
IRIS_COLUMNS = json.dumps({"iris": {"sepal_length": {"0": 7.2}, "sepal_width": {"0": 3.2},
                                    "petal_length": {"0": 6.0}, "petal_width": {"0": 1.8}}}).encode()
MULTIPART = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n"
             b"Content-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n")

MULTIPART_WITH_FIELD = (b"--XyZ\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue 1\r\n" + MULTIPART)


def swagger_cases(versions=("", "version=2", "version=2.0", "version=3", "version=3.0", "version=3.1",
                            "version=5", "version=", "version=3.2")):
    return [(f"swagger[{q}]", "GET", "/swagger.json", q, [], b"") for q in versions]


# script -> [(label, method, path, query, headers, body)]
CASES = {
    "sklearn_plain": [
        ("score", "POST", "/score", "", JSON, json.dumps({"data": [list(range(1, 11)), list(range(10, 0, -1))]}).encode()),
        ("run-raises-on-bad-json", "POST", "/score", "", JSON, b"{not json"),
        ("get-query", "GET", "/score", "data=[[1,2,3,4,5,6,7,8,9,10]]", [], b""),
        ("health", "GET", "/", "", [], b""),
        ("health-head", "HEAD", "/", "", [], b""),
        ("options-score", "OPTIONS", "/score", "", [], b""),
        ("options-root", "OPTIONS", "/", "", [], b""),
        ("put-score", "PUT", "/score", "", JSON, b"{}"),
        ("delete-score", "DELETE", "/score", "", [], b""),
        ("patch-score", "PATCH", "/score", "", [], b""),
        ("head-score", "HEAD", "/score", "", [], b""),
        ("unknown-path", "GET", "/nope", "", [], b""),
        ("score-trailing-slash", "POST", "/score/", "", JSON, b"{}"),
        ("post-root", "POST", "/", "", [], b""),
        ("post-swagger", "POST", "/swagger.json", "", [], b""),
        *swagger_cases(),
    ],
    "headers_plain": [
        ("text-with-headers", "POST", "/score", "", [*TEXT, ("x-custom-header", "v1"), ("x-repeated", "a"),
                                                     ("x-repeated", "b")], b"plain text body"),
        ("no-content-type", "POST", "/score", "", [], b"abc"),
        ("all-headers", "POST", "/score", "", [*TEXT, ("x-ms-client-request-id", "C1"), ("x-b3-traceid", "t"),
                                               ("accept", "*/*"), ("user-agent", "differential/1.0")], b"all-headers"),
        ("form-urlencoded", "POST", "/score", "", [("content-type", "application/x-www-form-urlencoded")], b"a=1&b=2"),
        ("multipart", "POST", "/score", "", [("content-type", "multipart/form-data; boundary=XyZ")], MULTIPART),
        ("non-utf8", "POST", "/score", "", [("content-type", "application/octet-stream")], b"\xff\xfeab"),
        ("get-query", "GET", "/score", "a=1&b=[1,2]&a=2&c=x&d=null&e=%7B%22k%22%3A1%7D&f=&g=a+b&h=1.5e3&i=%E2%9C%93",
         [], b""),
        ("get-no-query", "GET", "/score", "", [], b""),
        ("options", "OPTIONS", "/score", "", [], b""),
    ],
    "numpy_decorated": [
        ("ok-default-k", "POST", "/score", "", JSON, NUMPY_OK),
        ("ok-k-extra-key", "POST", "/score", "", JSON, b'{"data": [[1, 2]], "k": 2, "other": true}'),
        ("plus-json", "POST", "/score", "", [("content-type", "application/vnd.x+json; charset=utf-8")], NUMPY_OK),
        ("text-plain-415", "POST", "/score", "", TEXT, NUMPY_OK),
        ("no-content-type-415", "POST", "/score", "", [], NUMPY_OK),
        ("empty-400", "POST", "/score", "", JSON, b""),
        ("list-400", "POST", "/score", "", JSON, b"[1, 2]"),
        ("missing-param-400", "POST", "/score", "", JSON, b'{"k": 1}'),
        ("bad-json-400", "POST", "/score", "", JSON, b"{bad"),
        ("non-utf8-json", "POST", "/score", "", JSON, b"\xff\xfe\xfd"),
        ("shape-mismatch-500", "POST", "/score", "", JSON, b'{"data": [[1, 2, 3]]}'),
        ("get-params", "GET", "/score", "data=[[1,2]]&k=3", [], b""),
        ("get-missing-400", "GET", "/score", "k=3", [], b""),
        ("options", "OPTIONS", "/score", "", [], b""),
        *swagger_cases(("", "version=3", "version=3.1", "version=7")),
    ],
    "standard_decorated": [
        ("ok", "POST", "/score", "", [*JSON, ("x-tag", "t1")], b'{"text": "hi", "options": {"upper": true, "repeat": 2}}'),
        ("missing", "POST", "/score", "", JSON, b'{"text": "hi"}'),
        *swagger_cases(("", "version=3", "version=3.1")),
    ],
    "pandas_decorated": [
        ("records", "POST", "/score", "", JSON, IRIS_RECORDS),
        ("columns-dict", "POST", "/score", "", JSON, IRIS_COLUMNS),
        *swagger_cases(("", "version=3", "version=3.1")),
    ],
    "rawhttp_contrib": [
        ("get-binary-201", "GET", "/score", "x=1", [], b""),
        ("echo", "POST", "/score", "a=1&a=2&b=x", [("content-type", "text/csv"), ("x-custom-header", "c")], b"1,2\n"),
        ("json-202", "POST", "/score", "mode=json&v=1&v=2", JSON, b'{"q": [1]}'),
        ("fail-503", "POST", "/score", "mode=fail", [], b""),
        ("none", "POST", "/score", "mode=none", [], b""),
        ("raise", "POST", "/score", "mode=raise", [], b""),
        ("form", "POST", "/score", "mode=form", [("content-type", "application/x-www-form-urlencoded")], b"a=1&b=two"),
        ("files", "POST", "/score", "mode=files&q=1", [("content-type", "multipart/form-data; boundary=XyZ")],
         MULTIPART_WITH_FIELD),
        ("options-204", "OPTIONS", "/score", "", [], b""),
        ("delete-405", "DELETE", "/score", "", [], b""),
        *swagger_cases(("",)),
    ],
    "rawhttp_server": [
        ("bytes", "POST", "/score", "", [("content-type", "application/octet-stream")], b"\x00\x01abc"),
        ("fail-502", "POST", "/score", "mode=fail", [], b""),
    ],
    "returns": [
        (raw, "POST", "/score", "", TEXT, raw.encode())
        for raw in ("str", "none", "numpy", "list", "unicode", "raise", "float64", "other")
    ],
    "swagger_override": swagger_cases(("", "version=2", "version=3", "version=3.1", "version=9")),
    "driver": [("driver", "POST", "/score", "", TEXT, b"x")],
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port, method, path, query, headers, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path + (f"?{query}" if query else ""), skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return worker_client.Reply(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], data)
    finally:
        conn.close()


def wire_headers(method, headers, body):
    """The exact header list sent to both sides (so request_headers compare equal)."""
    out = [("host", "127.0.0.1"), *headers]
    if body or method in ("POST", "PUT", "PATCH"):
        out.append(("content-length", str(len(body))))
    return out


class Reference:
    """azmlinfsrv processes, one per script, started together."""

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.procs = {}

    def start_all(self, names):
        for name in names:
            port = _free_port()
            folder = os.path.join(SCRIPTS, name)
            env = {**os.environ, "AML_APP_ROOT": folder, "AZUREML_MODEL_DIR": self.model_dir}
            for var in ("AZUREML_ENTRY_SCRIPT", "SERVER_PORT", "HEALTH_PORT"):
                env.pop(var, None)
            log = open(os.path.join(self.model_dir, f"azmlinfsrv-{name}.log"), "wb")
            proc = subprocess.Popen([AZMLINFSRV, "--entry_script", "score.py", "--port", str(port)],
                                    cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self.procs[name] = (proc, port, log)
        deadline = time.monotonic() + 120
        for name, (proc, port, _) in self.procs.items():
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"azmlinfsrv for {name} exited with {proc.returncode}: {self.log(name)}")
                try:
                    if http_request(port, "GET", "/", "", [("host", "127.0.0.1")], b"").status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"azmlinfsrv for {name} did not come up: {self.log(name)}")
                time.sleep(0.2)

    def log(self, name):
        with open(os.path.join(self.model_dir, f"azmlinfsrv-{name}.log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def port(self, name):
        return self.procs[name][1]

    def stop_all(self):
        for proc, _, log in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _, log in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)  # the group this test started (gunicorn master + workers)
                proc.wait()
            log.close()


@pytest.fixture(scope="module")
def reference(model_dir):
    ref = Reference(model_dir)
    try:
        ref.start_all(CASES)
        yield ref
    finally:
        ref.stop_all()


def _comparable_headers(reply):
    out = Counter()
    for k, v in reply.headers:
        if k in IGNORED_HEADERS:
            continue
        if k == "allow":  # Flask builds it from a set: its order changes from one process to the next
            v = ", ".join(sorted(m.strip() for m in v.split(",")))
        out[(k, v)] += 1
    return out


def _body_view(reply, method):
    if method == "HEAD":
        return None  # HTTP strips HEAD bodies; the worker leaves that to the replica's HTTP layer
    ctype = reply.header("content-type") or ""
    if ctype.startswith("application/json"):
        try:
            return ("json", json.loads(reply.body))
        except ValueError:
            pass
    return ("bytes", reply.body)


@pytest.mark.parametrize("name, case", [(n, c) for n, cs in CASES.items() for c in cs],
                         ids=[f"{n}:{c[0]}" for n, cs in CASES.items() for c in cs])
def test_same_answer_as_azmlinfsrv(reference, workers, name, case):
    label, method, path, query, headers, body = case
    sent = wire_headers(method, headers, body)
    want = http_request(reference.port(name), method, path, query, sent, body)
    got = workers(name).request(method, path, query, sent, body)

    assert got.status == want.status, (want.body, got.body)
    assert _body_view(got, method) == _body_view(want, method)
    if method != "HEAD":
        # byte-for-byte too: both sides use json.dumps with its defaults
        assert got.body == want.body
    assert _comparable_headers(got) == _comparable_headers(want)
    assert (got.header("x-ms-run-fn-exec-ms") is None) == (want.header("x-ms-run-fn-exec-ms") is None)


@pytest.mark.parametrize("name", ["init_raises", "missing_run", "bad_signature", "import_error"])
def test_boot_failure_exit_codes_match(model_dir, name):
    folder = os.path.join(SCRIPTS, name)
    env = {**os.environ, "AML_APP_ROOT": folder, "AZUREML_MODEL_DIR": model_dir}
    ref = subprocess.run([AZMLINFSRV, "--entry_script", "score.py", "--port", str(_free_port())], cwd=folder,
                         env=env, capture_output=True, timeout=120)
    w = worker_client.start_worker(script_path(name), env={"AZUREML_MODEL_DIR": model_dir}, expect_ready=False)
    assert w.proc.wait(30) == 3
    assert ref.returncode == 3, ref.stdout[-3000:]
