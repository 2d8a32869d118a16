"""sluice_worker behaviour, through the framed protocol (contract §2.1-§2.4)."""

import json
import os
import signal
import socket
import struct
import subprocess
import time

import pytest

import worker_client

JSON = [("content-type", "application/json")]
SCRIPT_FAILED = {"message": "An unexpected error occurred in scoring script. Check the logs for more info."}
INTERNAL = {"message": "An unexpected internal error occurred. Check the logs for more info."}


# --- plain (undecorated) mode ----------------------------------------------------------------

def test_canonical_sklearn_script(workers):
    w = workers("sklearn_plain")
    data = [list(range(1, 11)), list(range(10, 0, -1))]
    r = w.post_json({"data": data})
    assert r.status == 200
    assert r.content_type == "application/json"
    assert r.header("x-ms-run-function-failed") == "False"
    assert float(r.header("x-ms-run-fn-exec-ms")) >= 0
    assert r.json() == pytest.approx([55.0, 55.0])


def test_plain_run_gets_raw_text_and_request_headers(workers):
    w = workers("headers_plain")
    r = w.request("POST", headers=[("content-type", "text/plain"), ("x-custom-header", "v1"),
                                   ("x-repeated", "a"), ("x-repeated", "b")], body=b"not json at all")
    assert r.status == 200
    assert r.json() == {
        "raw": "not json at all",
        "custom": "v1",
        "ctype": "text/plain",
        "repeated": "a,b",
        "names": ["X-Custom-Header", "X-Repeated"],
    }
    assert w.wait_output("headers_plain run 15", "stdout")  # user print() reaches the worker's stdout


def test_plain_form_body_arrives_empty(workers):
    # Flask consumes form bodies, so azmlinfsrv hands run() "" (contract §2.1, observed §9a).
    r = workers("headers_plain").request(
        "POST", headers=[("content-type", "application/x-www-form-urlencoded")], body=b"a=1&b=2")
    assert r.json()["raw"] == ""


def test_plain_non_utf8_body_is_400(workers):
    r = workers("headers_plain").request("POST", headers=[("content-type", "application/octet-stream")],
                                         body=b"\xff\xfe")
    assert r.status == 400
    assert r.json()["message"].startswith("Input cannot be decoded as UTF-8: ")


def test_get_query_parsing(workers):
    r = workers("headers_plain").request("GET", query="a=1&b=[1,2]&a=2&c=x&d=null&e=%7B%22k%22%3A1%7D")
    assert r.status == 200
    assert r.json()["raw"] == '{"a": [1, 2], "b": [1, 2], "c": "x", "d": null, "e": {"k": 1}}'


def test_methods(workers):
    w = workers("headers_plain")
    r = w.request("OPTIONS")
    assert (r.status, r.body) == (200, b"")
    r = w.request("PUT")
    assert r.status == 405 and r.json() == {"message": "The method is not allowed for the requested URL."}
    r = w.request("HEAD")
    assert r.status == 405 and r.json() == {"message": "Method not allowed"}


# --- return values ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, status, body", [
    ("str", 200, b'"{\\"a\\": 1}"'),                         # str is sent as a JSON string literal
    ("none", 200, b"{}"),                                     # None becomes {}
    ("list", 200, b'[1, 2.5, "x", null, true]'),
    ("unicode", 200, b'"h\\u00e9llo \\u2713"'),              # json.dumps defaults: ASCII escapes
    ("float64", 200, b'{"v": 1.5}'),
    ("other", 200, b'{"echo": "other"}'),
])
def test_return_value_encoding(workers, raw, status, body):
    r = workers("returns").request("POST", headers=[("content-type", "text/plain")], body=raw)
    assert (r.status, r.body, r.content_type) == (status, body, "application/json")
    assert r.header("x-ms-run-function-failed") == "False"


def test_unserializable_return_is_internal_500(workers):
    w = workers("returns")
    r = w.request("POST", body="numpy")
    assert r.status == 500 and r.json() == INTERNAL
    assert r.header("x-ms-run-function-failed") == "False"  # azmlinfsrv: run() itself succeeded
    assert w.wait_output("not JSON serializable")


def test_run_raising_is_500_with_header_and_traceback(workers):
    w = workers("returns")
    r = w.request("POST", body="raise")
    assert r.status == 500 and r.json() == SCRIPT_FAILED
    assert r.header("x-ms-run-function-failed") == "True"
    assert r.header("x-ms-run-fn-exec-ms") is None
    assert w.wait_output("ValueError: scoring failed on purpose")
    assert "Traceback (most recent call last)" in w.stderr
    # and the worker keeps serving
    assert w.request("POST", body="ok").status == 200


# --- @input_schema mode ----------------------------------------------------------------------

def test_numpy_decorated(workers):
    w = workers("numpy_decorated")
    r = w.post_json({"data": [[1, 2], [3, 4]]})
    assert (r.status, r.json()) == (200, {"sum": [15.0, 35.0]})      # default k=5 applied
    r = w.post_json({"data": [[1, 2]], "k": 2, "ignored": 1})
    assert r.json() == {"sum": [6.0]}


@pytest.mark.parametrize("headers, body, status, message", [
    ([("content-type", "text/plain")], b'{"data": [[1, 2]]}', 415, "Expects Content-Type to be application/json"),
    ([], b'{"data": [[1, 2]]}', 415, "Expects Content-Type to be application/json"),
    (JSON, b"", 400, "POST body is empty. Expecting a JSON dictionary."),
    (JSON, b"[1, 2]", 400, "POST body should be a JSON dictionary."),
    (JSON, b'{"k": 1}', 400, "A value is not provided for the 'data' parameter."),
    (JSON, b"{bad", 400,
     "POST body could not be decoded as JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
])
def test_numpy_decorated_client_errors(workers, headers, body, status, message):
    r = workers("numpy_decorated").request("POST", headers=headers, body=body)
    assert (r.status, r.json()) == (status, {"message": message})
    assert r.header("x-ms-run-function-failed") == "False"


def test_decorated_json_suffix_content_type_accepted(workers):
    r = workers("numpy_decorated").request(
        "POST", headers=[("content-type", "application/vnd.api+json; charset=utf-8")], body=b'{"data": [[1, 1]]}')
    assert r.json() == {"sum": [10.0]}


def test_numpy_shape_mismatch_is_500(workers):
    # inference-schema validates inside run(): azmlinfsrv answers 500, not 400 (contract §9a).
    r = workers("numpy_decorated").post_json({"data": [[1, 2, 3]]})
    assert r.status == 500 and r.json() == SCRIPT_FAILED
    assert r.header("x-ms-run-function-failed") == "True"


def test_decorated_get(workers):
    r = workers("numpy_decorated").request("GET", query="data=[[1,2]]&k=3")
    assert (r.status, r.json()) == (200, {"sum": [9.0]})
    r = workers("numpy_decorated").request("GET", query="k=3")
    assert r.status == 400


def test_standard_decorated_with_request_headers(workers):
    w = workers("standard_decorated")
    r = w.post_json({"text": "hi", "options": {"upper": True, "repeat": 2}}, headers=[("x-tag", "t1")])
    assert (r.status, r.json()) == (200, ["HI", "HI", "t1"])


def test_pandas_decorated(workers):
    w = workers("pandas_decorated")
    records = {"iris": [{"sepal_length": 7.2, "sepal_width": 3.2, "petal_length": 6.0, "petal_width": 1.8},
                        {"sepal_length": 4.2, "sepal_width": 3.5, "petal_length": 1.0, "petal_width": 3.0}]}
    r = w.post_json(records)
    assert (r.status, r.json()) == (200, pytest.approx([13.2, 5.2]))


# --- @rawhttp mode ---------------------------------------------------------------------------

def test_rawhttp_binary_response_with_custom_status_and_headers(workers):
    r = workers("rawhttp_contrib").request("GET", query="x=1")
    assert r.status == 201
    assert r.body == b"\x89PNG\r\n\x1a\n\x00\x01\x02\xff"
    assert r.header_all("content-type") == ["image/png"]
    assert r.header_all("x-custom") == ["a", "b"]          # azmlinfsrv splits values on commas
    assert r.header("x-ms-run-function-failed") == "False"
    assert r.header("x-ms-run-fn-exec-ms") is not None


def test_rawhttp_request_object(workers):
    r = workers("rawhttp_contrib").request(
        "POST", query="a=1&a=2&b=x", headers=[("content-type", "text/csv"), ("x-custom-header", "c")], body=b"1,2\n")
    assert r.status == 200
    assert r.json() == {
        "method": "POST", "path": "/score", "full_path": "/score?a=1&a=2&b=x", "data": "1,2\n", "len": 4,
        "ctype": "text/csv", "custom": "c", "args": {"a": "1", "b": "x"}, "is_json": False,
    }


def test_rawhttp_json_and_statuses(workers):
    w = workers("rawhttp_contrib")
    r = w.request("POST", query="mode=json&v=1&v=2", headers=JSON, body=b'{"q": [1]}')
    assert (r.status, r.json(), r.content_type) == (202, {"echo": {"q": [1]}, "args": ["1", "2"]},
                                                    "application/json")
    r = w.request("POST", query="mode=fail")
    assert (r.status, r.body) == (503, b"service unavailable")
    assert r.header("x-ms-run-function-failed") == "True"
    r = w.request("POST", query="mode=none")
    assert (r.status, r.body, r.content_type) == (200, b"{}", "application/json")
    r = w.request("POST", query="mode=raise")
    assert (r.status, r.json()) == (500, SCRIPT_FAILED)
    r = w.request("POST", query="mode=form", headers=[("content-type", "application/x-www-form-urlencoded")],
                  body=b"a=1&b=two")
    assert r.json() == {"form": {"a": "1", "b": "two"}, "data": ""}
    r = w.request("OPTIONS")
    assert (r.status, r.body) == (204, b"")                # OPTIONS reaches run() under @rawhttp
    r = w.request("DELETE")
    assert r.status == 405


def test_rawhttp_real_flask_response_objects(workers):
    # scripts/rawhttp_server imports azureml_inference_server_http.api: in the dev venv that is the
    # real (Flask-based) package, so run() returns a real flask Response.
    w = workers("rawhttp_server")
    r = w.request("POST", body=b"\x00\x01abc")
    assert (r.status, r.body) == (200, b"cba\x01\x00")
    assert r.header_all("content-type") == ["application/octet-stream"]
    assert r.header("x-len") == "5"
    assert r.header("content-length") is None               # framing carries the length
    r = w.request("POST", query="mode=fail")
    assert (r.status, r.json()) == (502, {"error": "nope"})
    assert r.header("x-ms-run-function-failed") == "True"


@pytest.mark.parametrize("name", ["rawhttp_server", "rawhttp_contrib", "headers_plain"])
def test_bare_environment_uses_shims(workers, name):
    # python -S: no site-packages, so no flask and no azureml packages; the shims must serve.
    w = workers(name, python_flags=("-S",))
    r = w.request("POST", headers=[("content-type", "text/plain")], body=b"xyz")
    assert r.status == 200
    if name == "rawhttp_server":
        assert r.body == b"zyx"


# --- swagger and health ----------------------------------------------------------------------

def test_health_and_unknown_paths(workers):
    w = workers("headers_plain")
    r = w.request("GET", "/")
    assert (r.status, r.body, r.content_type) == (200, b"Healthy", "text/html; charset=utf-8")
    r = w.request("GET", "/nope")
    assert r.status == 404 and r.content_type == "application/json" and "message" in r.json()
    r = w.request("POST", "/")
    assert r.status == 405


@pytest.mark.parametrize("query, key, value", [
    ("", "swagger", "2.0"), ("version=2", "swagger", "2.0"), ("version=2.0", "swagger", "2.0"),
    ("version=3", "openapi", "3.0.3"), ("version=3.0", "openapi", "3.0.3"), ("version=3.1", "openapi", "3.1.0"),
])
def test_swagger_versions_undecorated(workers, query, key, value):
    r = workers("headers_plain").request("GET", "/swagger.json", query)
    assert r.status == 200 and r.content_type == "application/json"
    doc = r.json()
    assert doc[key] == value
    schemas = doc["definitions"] if key == "swagger" else doc["components"]["schemas"]
    assert schemas["ServiceInput"] == {"type": "object", "example": {}}
    assert schemas["ServiceOutput"] == {"type": "object", "example": {}}
    assert doc["info"]["title"] == "ML service"
    assert set(doc["paths"]) == {"/", "/score", "/swagger.json"}


def test_swagger_unknown_version(workers):
    r = workers("headers_plain").request("GET", "/swagger.json", "version=5")
    assert (r.status, r.json()) == (404, {"message": "Swagger version [5] is not valid. Supported versions: [2, 3, 3.1]."})


def test_swagger_decorated(workers):
    doc = workers("numpy_decorated").request("GET", "/swagger.json").json()
    service_input = doc["definitions"]["ServiceInput"]
    assert service_input["type"] == "object"
    assert service_input["properties"]["data"]["format"] == "numpy.ndarray"
    assert service_input["properties"]["k"] == {"type": "integer", "format": "int64"}
    assert service_input["example"] == {"data": [[1.0, 2.0]], "k": 1}
    assert doc["definitions"]["ServiceOutput"]["example"] == {"sum": [3.0]}
    doc3 = workers("numpy_decorated").request("GET", "/swagger.json", "version=3").json()
    assert doc3["components"]["schemas"]["ServiceInput"] == service_input


def test_user_swagger_files_win(workers):
    w = workers("swagger_override")
    assert w.request("GET", "/swagger.json", "version=2").json()["x-from-user"] is True
    assert w.request("GET", "/swagger.json", "version=3").json()["info"]["title"] == "user supplied v3"
    assert w.request("GET", "/swagger.json", "version=3.1").json()["openapi"] == "3.1.0"  # generated


def test_swagger_service_env(start):
    w = start("headers_plain", env={"SERVICE_NAME": 'my "svc"', "SERVICE_VERSION": "7", "SERVICE_PATH_PREFIX": "/api/x/"})
    doc = w.request("GET", "/swagger.json").json()
    assert doc["info"]["title"] == 'my "svc"' and doc["info"]["version"] == "7"
    assert "/api/x/score" in doc["paths"]


# --- boot ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, needle", [
    ("init_raises", "RuntimeError: model file is corrupt (on purpose)"),
    ("missing_run", "does not have a run() function defined"),
    ("bad_signature", "run() cannot accept positional-only arguments, *args, or **kwargs."),
    ("import_error", "ModuleNotFoundError: No module named 'module_that_does_not_exist'"),
])
def test_boot_failures_exit_3(start, name, needle):
    w = start(name, expect_ready=False)
    assert w.proc.wait(10) == 3
    assert needle in w.stderr
    assert worker_client.READY not in w.stdout


def test_init_failure_lists_model_dir(start, model_dir):
    w = start("init_raises", expect_ready=False)
    w.proc.wait(10)
    time.sleep(0.2)
    assert "Traceback (most recent call last)" in w.stderr
    assert "Model Directory Contents:" in w.stderr
    assert "    sklearn_regression_model.pkl" in w.stderr


def test_driver_module_quirk(workers):
    r = workers("driver").request("POST", body="x")
    assert r.json() == {"from": "inner", "init": "inner", "data": "x"}


def test_environment_and_app_root(tmp_path):
    script = tmp_path / "code" / "onlinescoring" / "score.py"
    script.parent.mkdir(parents=True)
    (tmp_path / "code" / "helper_mod.py").write_text("VALUE = 42\n")
    (tmp_path / "code" / "src").mkdir()
    (tmp_path / "code" / "src" / "src_mod.py").write_text("VALUE = 7\n")
    script.write_text(
        "import os, sys\n"
        "def init():\n    pass\n"
        "def run(raw_data):\n"
        "    import helper_mod, src_mod\n"
        "    return {k: os.environ.get(k) for k in ('AML_APP_ROOT', 'AZUREML_ENTRY_SCRIPT', 'MY_VAR')} | "
        "{'helper': helper_mod.VALUE, 'src': src_mod.VALUE, 'name': __name__}\n")
    w = worker_client.start_worker(
        "onlinescoring/score.py", app_root=str(tmp_path / "code"),
        env={"MY_VAR": "v", "AZUREML_SOURCE_DIRECTORY": "src"})
    try:
        r = w.request("POST", body="")
        assert r.json() == {"AML_APP_ROOT": str(tmp_path / "code"), "AZUREML_ENTRY_SCRIPT": "onlinescoring/score.py",
                            "MY_VAR": "v", "helper": 42, "src": 7, "name": "entry_module"}
    finally:
        w.stop()


# --- process and protocol --------------------------------------------------------------------

def test_sigterm_exits_0_after_current_request(tmp_path):
    script = tmp_path / "score.py"
    script.write_text("import time\ndef init():\n    pass\ndef run(raw_data):\n    time.sleep(float(raw_data))\n"
                      "    return 'done'\n")
    w = worker_client.start_worker(str(script))
    sock = w.connect()
    sock.sendall(worker_client.encode_frame(
        {"id": 7, "method": "POST", "path": "/score", "query": "", "headers": []}, b"0.5"))
    time.sleep(0.15)
    w.proc.send_signal(signal.SIGTERM)
    header, body = worker_client.read_frame(sock)
    assert (header["id"], header["status"], body) == (7, 200, b'"done"')
    assert w.proc.wait(5) == 0
    assert not os.path.exists(w.socket_path)


def test_sigterm_when_idle(start):
    w = start("headers_plain")
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(5) == 0


@pytest.mark.parametrize("connected", [False, True], ids=["waiting-for-a-connection", "waiting-for-a-request"])
def test_sigterm_taken_by_another_thread_stops_a_waiting_worker(tmp_path, connected):
    """The kernel may hand a SIGTERM for the process to any of its threads; the main thread,
    blocked in accept or recv, is then not interrupted, and Python runs handlers only there."""
    script = tmp_path / "score.py"
    script.write_text(worker_client.THREAD_IN_INIT + "def run(raw_data):\n    return 'ok'\n")
    w = worker_client.start_worker(str(script))
    try:
        if connected:
            assert w.request("POST", body=b"x").status == 200  # then it waits for the next one
        worker_client.signal_other_thread(w.proc.pid, signal.SIGTERM)
        assert w.proc.wait(10) == 0
    finally:
        w.stop()


def test_one_connection_at_a_time_and_reconnect(start):
    w = start("headers_plain")
    assert w.request("GET", "/").status == 200
    w.disconnect()
    assert w.request("GET", "/").status == 200              # a new connection after the first closes
    # garbage on a connection drops that connection only
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    w.disconnect()
    s.connect(w.socket_path)
    s.sendall(struct.pack(">I", 3) + b"{{{" + struct.pack(">Q", 0))
    assert s.recv(10) == b""
    s.close()
    assert w.request("GET", "/").status == 200


def test_pipelined_requests_and_large_body(start):
    w = start("headers_plain")
    sock = w.connect()
    big = b"y" * (3 << 20)
    frames = b"".join(worker_client.encode_frame(
        {"id": i, "method": "POST", "path": "/score", "query": "", "headers": [["content-type", "text/plain"]]},
        big if i == 2 else b"small") for i in range(1, 4))
    sock.sendall(frames)
    for i in range(1, 4):
        header, body = worker_client.read_frame(sock)
        assert header["id"] == i and header["status"] == 200
        assert len(json.loads(body)["raw"]) == (len(big) if i == 2 else 5)


def test_many_pipelined_requests_are_answered_in_order_and_none_is_held(start):
    # The worker holds answers while the next request is already buffered (at most 8 of them) and sends
    # them before it could block: all 20 come, in order, and so does a lone request after them.
    w = start("headers_plain")
    sock = w.connect()
    frame = lambda i: worker_client.encode_frame(
        {"id": i, "method": "POST", "path": "/score", "query": "", "headers": [["content-type", "text/plain"]]},
        f"req{i}".encode())
    sock.sendall(b"".join(frame(i) for i in range(1, 21)))
    for i in range(1, 21):
        header, body = worker_client.read_frame(sock)
        assert header["id"] == i and header["status"] == 200
        assert json.loads(body)["raw"] == f"req{i}"
    sock.sendall(frame(21))
    header, body = worker_client.read_frame(sock)
    assert header["id"] == 21 and json.loads(body)["raw"] == "req21"


def test_an_answer_is_not_held_behind_a_request_that_hangs(start, tmp_path):
    # "quick" is answered while "hang" is already buffered behind it: the worker may hold the answer
    # for a moment, but must send it while run() hangs on the next request (the replica would
    # otherwise time the finished request out with the hanging one).
    script = tmp_path / "score.py"
    script.write_text("import time\ndef init():\n    pass\n"
                      "def run(raw_data):\n    if raw_data == 'hang':\n        time.sleep(30)\n    return raw_data\n")
    w = start(str(script))
    sock = w.connect()
    frame = lambda i, body: worker_client.encode_frame(
        {"id": i, "method": "POST", "path": "/score", "query": "", "headers": [["content-type", "text/plain"]]},
        body)
    sock.sendall(frame(1, b"quick") + frame(2, b"hang"))
    sock.settimeout(5)
    header, body = worker_client.read_frame(sock)
    assert header["id"] == 1 and header["status"] == 200 and body == b'"quick"'


def test_user_print_does_not_touch_protocol(start, tmp_path):
    script = tmp_path / "score.py"
    script.write_text("import sys\ndef init():\n    print('SLUICE_WORKER_READY? not yet')\n"
                      "def run(raw_data):\n    print('x' * 100000)\n    sys.stdout.write('\\0\\1')\n"
                      "    return 1\n")
    w = start(str(script))
    for _ in range(3):
        assert w.request("POST", body="a").body == b"1"


def test_usage_error_exit_2():
    p = subprocess.run([worker_client.sys.executable, "-m", "sluice_worker"], env={
        **os.environ, "PYTHONPATH": worker_client.PYTHON_DIR}, capture_output=True, text=True)
    assert p.returncode == 2 and "--socket" in p.stderr


def test_shims_when_a_regular_azureml_package_hides_them(tmp_path, model_dir):
    # An installed ``azureml`` (regular package, no contrib.services) shadows the shim folder's
    # namespace portion: the worker then registers the shims under their dotted names.
    pkg = tmp_path / "site" / "azureml"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("MARK = 'real azureml'\n")
    script = tmp_path / "score.py"
    script.write_text(
        "import azureml\n"
        "from azureml.contrib.services.aml_request import rawhttp\n"
        "from azureml.contrib.services.aml_response import AMLResponse\n"
        "def init():\n    pass\n"
        "@rawhttp\n"
        "def run(request):\n    return AMLResponse(azureml.MARK, 200)\n")
    w = worker_client.start_worker(str(script), env={"PYTHONPATH": str(tmp_path / "site")},
                                   python_flags=("-S",))
    try:
        r = w.request("GET")
        assert (r.status, r.body) == (200, b"real azureml")
    finally:
        w.stop()


EXTRA_PYTHONS = [p for p in os.environ.get("SLUICE_WORKER_EXTRA_PYTHONS", "").split(os.pathsep) if p]


@pytest.mark.skipif(not EXTRA_PYTHONS, reason="set SLUICE_WORKER_EXTRA_PYTHONS=/path/python3.8:... to run")
@pytest.mark.parametrize("python", EXTRA_PYTHONS)
def test_other_interpreters_bare(python):
    """The worker is standard-library only: serve stdlib-only scripts on other Python versions."""
    for name, body, want in [("rawhttp_server", b"abc", b"cba"), ("driver", b"x", None)]:
        w = worker_client.start_worker(os.path.join(os.path.dirname(__file__), "scripts", name, "score.py"),
                                       python=python, python_flags=("-S",))
        try:
            r = w.request("POST", headers=[("content-type", "text/plain")], body=body)
            assert r.status == 200, w.stderr
            if want is not None:
                assert r.body == want
            assert w.request("GET", "/swagger.json", "version=3.1").json()["openapi"] == "3.1.0"
            assert w.request("GET", "/").body == b"Healthy"
        finally:
            assert w.stop() == 0


def test_worker_exits_when_its_parent_is_killed(tmp_path):
    """A replica killed with SIGKILL must not leave its workers behind."""
    import subprocess, sys, time, os, signal as sig

    script = os.path.join(os.path.dirname(__file__), "scripts", "headers_plain", "score.py")
    sock = str(tmp_path / "w.sock")
    pkg = os.path.join(os.path.dirname(__file__), "..")
    launcher = (
        "import subprocess, sys, os\n"
        f"p = subprocess.Popen([sys.executable, '-m', 'sluice_worker', '--socket', {sock!r}, '--entry-script', {script!r}],"
        f" env=dict(os.environ, PYTHONPATH={pkg!r}), stdout=subprocess.PIPE)\n"
        "print(p.pid, flush=True)\n"
        "p.stdout.readline()\n"
        "print('ready', flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    worker_pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "ready"
    parent.send_signal(sig.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return
        # A zombie counts as gone: it has exited and only waits to be reaped by init.
        with open(f"/proc/{worker_pid}/stat") as f:
            if f.read().split(") ")[1].startswith("Z"):
                return
        time.sleep(0.05)
    os.kill(worker_pid, sig.SIGKILL)
    raise AssertionError("the worker outlived its parent")
