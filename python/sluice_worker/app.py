"""Loading the scoring script and answering one request the way azmlinfsrv does (contract §2.1, §2.4).

``App.handle(method, path, query, headers, body) -> (status, [(name, value)], body_bytes)`` is the
whole HTTP surface of a worker: ``/score``, ``/swagger.json`` and ``/``. Everything that can be
decided once (the invocation mode, the parameter list, the swagger documents) is decided at boot.
"""

import importlib.util
import inspect
import json
import os
import sys
import time
import traceback
from types import ModuleType

from sluice_worker import _aml
from sluice_worker.swagger import Swagger, SwaggerError, is_schema_decorated

# Messages azmlinfsrv sends (werkzeug's descriptions where Flask's router answers).
MSG_SCRIPT_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
MSG_INTERNAL = "An unexpected internal error occurred. Check the logs for more info."
MSG_METHOD_NOT_ALLOWED = "Method not allowed"
MSG_WERKZEUG_405 = "The method is not allowed for the requested URL."
MSG_WERKZEUG_404 = (
    "The requested URL was not found on the server. If you entered the URL manually please check your "
    "spelling and try again."
)

CT_JSON = ("content-type", "application/json")
CT_HTML = ("content-type", "text/html; charset=utf-8")
RUN_OK = ("x-ms-run-function-failed", "False")

# Framing carries the body length; these never leave the worker.
_DROPPED_RESPONSE_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive"))

MODE_RAW = "rawhttp"
MODE_SCHEMA = "input_schema"
MODE_PLAIN = "plain"


class BootError(Exception):
    """The scoring script cannot be served; the worker exits with code 3."""


def _eprint(*args):
    print(*args, file=sys.stderr, flush=True)


def error_response(status, message, run_function_failed=False):
    headers = [CT_JSON, ("x-ms-run-function-failed", "True" if run_function_failed else "False")]
    return status, headers, json.dumps({"message": message}).encode("utf-8")


# --- boot ------------------------------------------------------------------------------------

def walk_path(path, depth=0, indent_space=4):
    """Lines of an indented tree listing (directories end with a separator), as Azure logs it."""
    path = os.path.normpath(path)
    base = os.path.basename(path.rstrip(os.sep))
    indent = " " * depth * indent_space
    if os.path.isdir(path):
        yield f"{indent}{base}{os.sep}"
        try:
            children = sorted(os.listdir(path))
        except OSError:
            children = []
        for child in children:
            yield from walk_path(os.path.join(path, child), depth + 1, indent_space)
    else:
        yield f"{indent}{base}"


def log_model_dir(limit=200):
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not model_dir or not os.path.exists(model_dir):
        return
    _eprint("Model Directory Contents:")
    tree = walk_path(model_dir)
    for i, line in enumerate(tree):
        if i == limit:
            _eprint(f"Output Truncated. First {limit} lines shown.")
            break
        _eprint(line)


def load_module(script_path):
    """Import the entry script as azmlinfsrv does: ``spec_from_file_location("entry_module", path)``."""
    spec = importlib.util.spec_from_file_location("entry_module", script_path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load a Python module from {script_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raw_http_requested():
    if _aml.raw_http_requested():
        return True
    # The real azureml-inference-server-http keeps its flag in this module's globals.
    real = sys.modules.get("azureml_inference_server_http.api.aml_request")
    return bool(real is not None and real.__dict__.get("_rawHttpRequested", False))


class App:
    def __init__(self, module, app_root):
        if not hasattr(module, "init"):
            raise BootError(f"User script at {module.__file__} does not have a init() function defined.")
        if not hasattr(module, "run"):
            raise BootError(f"User script at {module.__file__} does not have a run() function defined.")

        # Driver-module quirk: some Azure SDKs generate a proxy script whose ``driver_module``
        # attribute is the real score module; its run() is called directly, the outer init() kept.
        inner = getattr(module, "driver_module", None)
        if isinstance(inner, ModuleType) and hasattr(inner, "run"):
            self.run = inner.run
        else:
            self.run = module.run
        self.init = module.init
        self.module = module
        self.app_root = app_root
        # Hook: a script may answer more paths than /score (mlflow_score.py adds /invocations).
        extra = getattr(module, "sluice_score_paths", ())
        if isinstance(extra, str) or not all(isinstance(p, str) and p.startswith("/") for p in extra):
            raise BootError("sluice_score_paths must be a list of paths starting with '/'.")
        self.score_paths = frozenset(("/score", *extra))
        self._analyze_run()
        self.swagger = None

    def _analyze_run(self):
        params = list(inspect.signature(self.run).parameters.values())
        if any(p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
            raise BootError("run() cannot accept positional-only arguments, *args, or **kwargs.")
        self.wants_headers = any(p.name == "request_headers" for p in params)
        params = [p for p in params if p.name != "request_headers"]
        if not params:
            if self.wants_headers:
                raise BootError('run() needs to accept an argument other than "request_headers".')
            raise BootError("run() needs to accept an argument for input data.")
        self.first_param = params[0].name
        # (name, default or inspect.Parameter.empty) for the decorated mode.
        self.params = [(p.name, p.default) for p in params]

        raw = _raw_http_requested()
        decorated = is_schema_decorated(self.run)
        if raw and decorated:
            raise BootError("run() cannot be decorated with both @rawhttp and @input_schema")
        self.mode = MODE_RAW if raw else MODE_SCHEMA if decorated else MODE_PLAIN

    def call_init(self):
        self.init()

    def build_swagger(self):
        self.swagger = Swagger(self.app_root, self.run, module=self.module)

    # --- requests ----------------------------------------------------------------------------

    def handle(self, method, path, query, headers, body):
        """Answer one request. ``headers`` is a list of ``(lowercase name, value)``."""
        if path in self.score_paths:
            if method not in ("GET", "POST", "OPTIONS", "HEAD"):
                return error_response(405, MSG_WERKZEUG_405)
            return self.score(method, path, query, headers, body)
        if path == "/":
            if method in ("GET", "HEAD"):
                return 200, [CT_HTML], b"Healthy"
            if method == "OPTIONS":
                return 200, [CT_HTML, ("allow", "GET, HEAD, OPTIONS")], b""
            return error_response(405, MSG_WERKZEUG_405)
        if path == "/swagger.json":
            if method in ("GET", "HEAD"):
                return self.get_swagger(query)
            if method == "OPTIONS":
                return 200, [CT_HTML, ("allow", "GET, HEAD, OPTIONS")], b""
            return error_response(405, MSG_WERKZEUG_405)
        return error_response(404, MSG_WERKZEUG_404)

    def get_swagger(self, query):
        version = "2"
        for key, value in _aml.parse_query(query):
            if key == "version":
                version = value
                break
        try:
            body = self.swagger.get(version)
        except SwaggerError as ex:
            return error_response(404, str(ex))
        except Exception:
            _eprint("Encountered Exception: " + traceback.format_exc())
            return error_response(500, MSG_INTERNAL)
        return 200, [CT_JSON, RUN_OK], body

    def _inputs(self, method, path, query, headers, body):
        """The keyword arguments for run(), or a finished error response (a tuple)."""
        mode = self.mode
        if mode == MODE_RAW:
            return {self.first_param: _aml.AMLRequest(method, path, query, headers, body)}
        if method == "GET":
            parsed = parse_get_parameters(query)
            if mode == MODE_PLAIN:
                return {self.first_param: json.dumps(parsed)}
            return self._extract(parsed)
        if method == "POST":
            mimetype = _content_mimetype(headers)
            if mode == MODE_PLAIN:
                if mimetype in _aml.FORM_MIMETYPES:
                    # Flask consumes form bodies: request.data is empty.
                    return {self.first_param: ""}
                try:
                    return {self.first_param: str(body, "utf-8")}
                except UnicodeDecodeError as ex:
                    return error_response(400, f"Input cannot be decoded as UTF-8: {ex}")
            if not _aml.mimetype_is_json(mimetype):
                return error_response(415, "Expects Content-Type to be application/json")
            try:
                parsed = json.loads(body)
            except json.JSONDecodeError as ex:
                if body:
                    return error_response(400, f"POST body could not be decoded as JSON: {ex}")
                return error_response(400, "POST body is empty. Expecting a JSON dictionary.")
            if not isinstance(parsed, dict):
                return error_response(400, "POST body should be a JSON dictionary.")
            return self._extract(parsed)
        if method == "OPTIONS":
            return 200, [CT_HTML, RUN_OK], b""
        return error_response(405, MSG_METHOD_NOT_ALLOWED)

    def _extract(self, parsed):
        kwargs = {}
        empty = inspect.Parameter.empty
        for name, default in self.params:
            value = parsed.get(name, default)
            if value is empty:
                return error_response(400, f"A value is not provided for the {name!r} parameter.")
            kwargs[name] = value
        return kwargs

    def score(self, method, path, query, headers, body):
        try:
            kwargs = self._inputs(method, path, query, headers, body)
        except Exception:
            _eprint("Encountered Exception: " + traceback.format_exc())
            return error_response(500, MSG_INTERNAL)
        if isinstance(kwargs, tuple):
            return kwargs
        if self.wants_headers:
            kwargs["request_headers"] = _aml.flask_style_headers(headers)

        start = time.perf_counter()
        try:
            output = self.run(**kwargs)
        except Exception:
            _eprint("Encountered Exception: " + traceback.format_exc())
            return error_response(500, MSG_SCRIPT_FAILED, run_function_failed=True)
        elapsed_ms = (time.perf_counter() - start) * 1000.0

        try:
            status, out_headers, out_body = encode_output(output)
        except Exception:
            _eprint("Encountered Exception: " + traceback.format_exc())
            return error_response(500, MSG_INTERNAL)
        out_headers.append(("x-ms-run-fn-exec-ms", f"{elapsed_ms:.3f}"))
        return status, out_headers, out_body


def parse_get_parameters(query):
    """``a=1&b=[1,2]&a=2&c=x`` -> ``{"a": [1, 2], "b": [1, 2], "c": "x"}``: each value JSON-parsed
    (kept as a string if it is not JSON), a key given more than once becomes a list."""
    groups = {}
    for key, value in _aml.parse_query(query):
        groups.setdefault(key, []).append(value)
    return {
        key: _parse_value(values[0]) if len(values) == 1 else [_parse_value(v) for v in values]
        for key, values in groups.items()
    }


def _parse_value(value):
    try:
        return json.loads(value)
    except ValueError:
        return value


def _content_mimetype(headers):
    for name, value in headers:
        if name == "content-type":
            return _aml.split_content_type(value)[0]
    return ""


def _is_response(output):
    if isinstance(output, _aml.AMLResponse):
        return True
    flask = sys.modules.get("flask")
    return flask is not None and isinstance(output, flask.Response)


def encode_output(output):
    """run()'s return value -> (status, headers, body); raises if it cannot be JSON-encoded."""
    if not _is_response(output):
        # azmlinfsrv wraps it in AMLResponse(output, 200, json_str=True): None becomes {}.
        body = b"{}" if output is None else json.dumps(output).encode("utf-8")
        return 200, [CT_JSON, RUN_OK], body

    status = int(output.status_code)
    if isinstance(output, _aml.AMLResponse):
        pairs = output.headers.to_wsgi_list()
        body = output.get_data()
    else:  # a Flask/werkzeug Response (the real AMLResponse included)
        pairs = output.headers.to_wsgi_list()
        try:
            body = b"".join(output.iter_encoded())
        finally:
            close = getattr(output, "close", None)
            if close is not None:
                close()
    headers = []
    failed_seen = False
    for name, value in pairs:
        lname = name.lower()
        if lname in _DROPPED_RESPONSE_HEADERS:
            continue
        if lname == "x-ms-run-function-failed" and status >= 500:
            if failed_seen:
                continue  # werkzeug's headers[k] = v replaces the first and drops the rest
            failed_seen = True
            value = "True"
        headers.append((lname, str(value)))
    if status >= 500 and not failed_seen:
        headers.append(("x-ms-run-function-failed", "True"))
    return status, headers, bytes(body)
