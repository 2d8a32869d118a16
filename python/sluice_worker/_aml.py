"""Flask-free stand-ins for what a scoring script sees of azmlinfsrv's HTTP layer.

* ``rawhttp``: the decorator that asks for the raw request (sets a process-wide flag, as the real
  one does);
* ``AMLRequest``: the request handed to a ``@rawhttp`` ``run()``; it offers the parts of Flask's
  ``Request`` that scoring scripts use (``data``, ``get_data()``, ``headers``, ``method``,
  ``args``, ``json``/``get_json()``, ``form``, ``files``, ``path``, ``full_path`` ...);
* ``AMLResponse(message, status_code, response_headers={}, json_str=False, run_function_failed=False)``
  with the same constructor semantics as azmlinfsrv's Flask-based class.

The shim modules under ``shims/`` re-export these as ``azureml.contrib.services.aml_request`` /
``aml_response`` and ``azureml_inference_server_http.api.aml_request`` / ``aml_response``.
"""

import email.parser
import email.policy
import io
import json
from urllib.parse import parse_qsl

_raw_http_requested = False


def rawhttp(func):
    """Mark ``run()`` as wanting the raw request (an ``AMLRequest``) as its first argument."""
    global _raw_http_requested
    _raw_http_requested = True
    return func


def raw_http_requested():
    return _raw_http_requested


class BadRequest(Exception):
    """Raised by ``AMLRequest.get_json()`` (werkzeug raises its HTTP exceptions of the same name)."""

    code = 400

    def __init__(self, description):
        super().__init__(description)
        self.description = description


class UnsupportedMediaType(BadRequest):
    code = 415


FORM_MIMETYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def split_content_type(value):
    """``"Application/JSON; charset=utf-8"`` -> ``("application/json", {"charset": "utf-8"})``."""
    if not value:
        return "", {}
    parts = value.split(";")
    mimetype = parts[0].strip().lower()
    params = {}
    for part in parts[1:]:
        key, sep, val = part.partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return mimetype, params


def mimetype_is_json(mimetype):
    # werkzeug's rule: application/json or any application/*+json.
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def werkzeug_header_name(name):
    """The spelling Flask shows for a header received over WSGI: ``x-ms-foo`` -> ``X-Ms-Foo``."""
    return name.replace("_", "-").title()


def flask_style_headers(pairs):
    """Request headers as Flask's ``dict(request.headers)`` shows them: title-cased names, repeated
    headers joined with ``,`` (as gunicorn does when it builds the WSGI environ)."""
    out = {}
    for name, value in pairs:
        key = werkzeug_header_name(name)
        if key in out:
            out[key] = out[key] + "," + value
        else:
            out[key] = value
    return out


class Headers:
    """A small case-insensitive, multi-valued header list in werkzeug's image.

    Iterating yields ``(name, value)`` tuples; ``dict(headers)`` gives the first value per name.
    """

    __slots__ = ("_list",)

    def __init__(self, items=None):
        self._list = []
        if items:
            if hasattr(items, "items"):
                items = items.items()
            for key, value in items:
                self._list.append((str(key), str(value)))

    def get(self, key, default=None, type=None):  # noqa: A002 - werkzeug's signature
        lkey = key.lower()
        for k, v in self._list:
            if k.lower() == lkey:
                if type is None:
                    return v
                try:
                    return type(v)
                except (ValueError, TypeError):
                    return default
        return default

    def getlist(self, key, type=None):  # noqa: A002
        lkey = key.lower()
        out = []
        for k, v in self._list:
            if k.lower() == lkey:
                if type is None:
                    out.append(v)
                else:
                    try:
                        out.append(type(v))
                    except (ValueError, TypeError):
                        pass
        return out

    get_all = getlist

    def __getitem__(self, key):
        if isinstance(key, int):
            return self._list[key]
        lkey = key.lower()
        for k, v in self._list:
            if k.lower() == lkey:
                return v
        raise KeyError(key)

    def __contains__(self, key):
        lkey = key.lower()
        return any(k.lower() == lkey for k, _ in self._list)

    def __iter__(self):
        return iter(list(self._list))

    def __len__(self):
        return len(self._list)

    def __bool__(self):
        return bool(self._list)

    def __eq__(self, other):
        if isinstance(other, Headers):
            return self._list == other._list
        return NotImplemented

    def keys(self, lower=False):
        seen = []
        for k, _ in self._list:
            key = k.lower() if lower else k
            if key not in seen:
                seen.append(key)
        return seen

    def values(self):
        return [v for _, v in self._list]

    def items(self, lower=False):
        return [(k.lower() if lower else k, v) for k, v in self._list]

    def add(self, key, value, **params):
        value = str(value)
        for pk, pv in params.items():
            value += f"; {pk.replace('_', '-')}={pv}"
        self._list.append((str(key), value))

    add_header = add

    def remove(self, key):
        lkey = key.lower()
        self._list = [(k, v) for k, v in self._list if k.lower() != lkey]

    __delitem__ = remove

    def pop(self, key, default=None):
        value = self.get(key)
        if value is None:
            return default
        self.remove(key)
        return value

    def set(self, key, value):
        """Replace the first header named ``key`` (dropping any others), or append it."""
        lkey = key.lower()
        value = str(value)
        out = []
        placed = False
        for k, v in self._list:
            if k.lower() == lkey:
                if not placed:
                    out.append((str(key), value))
                    placed = True
            else:
                out.append((k, v))
        if not placed:
            out.append((str(key), value))
        self._list = out

    def __setitem__(self, key, value):
        self.set(key, value)

    def setdefault(self, key, default):
        if key in self:
            return self[key]
        self.add(key, default)
        return default

    def extend(self, items):
        if hasattr(items, "items"):
            items = items.items()
        for k, v in items:
            self.add(k, v)

    update = extend

    def to_wsgi_list(self):
        return list(self._list)

    def copy(self):
        return Headers(self._list)

    def __repr__(self):
        return f"Headers({self._list!r})"


class MultiDict:
    """werkzeug-style MultiDict: ``md[k]`` / ``md.get(k)`` give the first value, ``getlist(k)`` all."""

    __slots__ = ("_d",)

    def __init__(self, pairs=()):
        self._d = {}
        for k, v in pairs:
            self._d.setdefault(k, []).append(v)

    def __getitem__(self, key):
        values = self._d[key]
        return values[0]

    def get(self, key, default=None, type=None):  # noqa: A002
        values = self._d.get(key)
        if not values:
            return default
        if type is None:
            return values[0]
        try:
            return type(values[0])
        except (ValueError, TypeError):
            return default

    def getlist(self, key, type=None):  # noqa: A002
        values = self._d.get(key, [])
        if type is None:
            return list(values)
        out = []
        for v in values:
            try:
                out.append(type(v))
            except (ValueError, TypeError):
                pass
        return out

    def __contains__(self, key):
        return key in self._d

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)

    def __bool__(self):
        return bool(self._d)

    def keys(self):
        return self._d.keys()

    def values(self):
        return [v[0] for v in self._d.values()]

    def items(self, multi=False):
        if multi:
            return [(k, v) for k, vs in self._d.items() for v in vs]
        return [(k, vs[0]) for k, vs in self._d.items()]

    def lists(self):
        return [(k, list(vs)) for k, vs in self._d.items()]

    def to_dict(self, flat=True):
        if flat:
            return {k: vs[0] for k, vs in self._d.items()}
        return {k: list(vs) for k, vs in self._d.items()}

    def __repr__(self):
        return f"MultiDict({self.items(multi=True)!r})"


def parse_query(query):
    """Query string -> ordered ``[(key, value)]`` as werkzeug parses it (blank values kept)."""
    if not query:
        return []
    return parse_qsl(query, keep_blank_values=True, errors="replace")


class FileStorage:
    """One uploaded file of a multipart request (werkzeug's ``FileStorage`` in miniature)."""

    def __init__(self, data, filename=None, name=None, content_type=None, headers=None):
        self.stream = io.BytesIO(data)
        self.filename = filename
        self.name = name
        self.content_type = content_type
        self.mimetype = split_content_type(content_type)[0]
        self.headers = headers or Headers()

    def read(self, *args):
        return self.stream.read(*args)

    def save(self, dst, buffer_size=16384):
        if isinstance(dst, (str, bytes)) or hasattr(dst, "__fspath__"):
            with open(dst, "wb") as f:
                f.write(self.stream.getvalue())
        else:
            dst.write(self.stream.getvalue())

    def __bool__(self):
        return bool(self.filename)

    def __repr__(self):
        return f"<FileStorage: {self.filename!r} ({self.content_type!r})>"


def _parse_multipart(content_type, body):
    form, files = [], []
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not msg.is_multipart():
        return form, files
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        filename = part.get_param("filename", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            headers = Headers((k, str(v)) for k, v in part.items())
            files.append((name, FileStorage(payload, filename, name, part.get("content-type"), headers)))
        else:
            charset = part.get_content_charset() or "utf-8"
            form.append((name, payload.decode(charset, "replace")))
    return form, files


class AMLRequest:
    """The request a ``@rawhttp`` ``run()`` receives: the parts of Flask's ``Request`` scoring
    scripts use, built lazily from one protocol frame."""

    def __init__(self, method="GET", path="/score", query="", headers=(), body=b""):
        self.method = method
        self.path = path
        self._query = query or ""
        self._header_pairs = headers
        self._body = body
        self._headers = None
        self._args = None
        self._form = None
        self._files = None
        self._json = _UNSET

    # -- URL ---------------------------------------------------------------------------------
    @property
    def query_string(self):
        return self._query.encode("latin-1", "replace")

    @property
    def full_path(self):
        return f"{self.path}?{self._query}"

    @property
    def args(self):
        if self._args is None:
            self._args = MultiDict(parse_query(self._query))
        return self._args

    @property
    def host(self):
        return self.headers.get("Host", "localhost")

    scheme = "http"
    remote_addr = None
    root_path = ""

    @property
    def host_url(self):
        return f"{self.scheme}://{self.host}/"

    url_root = host_url

    @property
    def base_url(self):
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def url(self):
        return self.base_url + (f"?{self._query}" if self._query else "")

    @property
    def endpoint(self):
        return "main.handle_score"

    # -- headers ------------------------------------------------------------------------------
    @property
    def headers(self):
        if self._headers is None:
            self._headers = Headers(flask_style_headers(self._header_pairs).items())
        return self._headers

    @property
    def content_type(self):
        return self.headers.get("Content-Type")

    @property
    def mimetype(self):
        return split_content_type(self.content_type)[0]

    @property
    def mimetype_params(self):
        return split_content_type(self.content_type)[1]

    @property
    def content_length(self):
        return self.headers.get("Content-Length", type=int)

    @property
    def content_encoding(self):
        return self.headers.get("Content-Encoding")

    @property
    def user_agent(self):
        return self.headers.get("User-Agent", "")

    @property
    def cookies(self):
        pairs = []
        for chunk in (self.headers.get("Cookie") or "").split(";"):
            k, sep, v = chunk.strip().partition("=")
            if sep:
                pairs.append((k, v))
        return MultiDict(pairs)

    # -- body ---------------------------------------------------------------------------------
    def get_data(self, cache=True, as_text=False, parse_form_data=False):
        if parse_form_data and self.mimetype in FORM_MIMETYPES:
            self._load_form()
            data = b""
        else:
            data = self._body
        return data.decode("utf-8", "replace") if as_text else data

    @property
    def data(self):
        # Like Flask: form-encoded bodies are consumed as form data and ``data`` is empty.
        return self.get_data(parse_form_data=True)

    @property
    def stream(self):
        return io.BytesIO(self._body)

    input_stream = stream

    @property
    def is_json(self):
        return mimetype_is_json(self.mimetype)

    def get_json(self, force=False, silent=False, cache=True):
        if cache and self._json is not _UNSET:
            return self._json
        if not (force or self.is_json):
            if silent:
                return None
            raise UnsupportedMediaType(
                "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."
            )
        try:
            value = json.loads(self._body)
        except ValueError as ex:
            if silent:
                return None
            raise BadRequest(f"Failed to decode JSON object: {ex}") from None
        if cache:
            self._json = value
        return value

    @property
    def json(self):
        return self.get_json()

    def _load_form(self):
        if self._form is not None:
            return
        form, files = [], []
        mimetype = self.mimetype
        if mimetype == "application/x-www-form-urlencoded":
            form = parse_qsl(self._body.decode("utf-8", "replace"), keep_blank_values=True)
        elif mimetype == "multipart/form-data":
            try:
                form, files = _parse_multipart(self.content_type, self._body)
            except Exception:  # malformed multipart: empty form, as werkzeug does
                form, files = [], []
        self._form = MultiDict(form)
        self._files = MultiDict(files)

    @property
    def form(self):
        self._load_form()
        return self._form

    @property
    def files(self):
        self._load_form()
        return self._files

    @property
    def values(self):
        return MultiDict(self.args.items(multi=True) + self.form.items(multi=True))

    @property
    def environ(self):
        env = {
            "REQUEST_METHOD": self.method,
            "PATH_INFO": self.path,
            "QUERY_STRING": self._query,
            "SCRIPT_NAME": "",
            "wsgi.url_scheme": self.scheme,
        }
        for name, value in flask_style_headers(self._header_pairs).items():
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            env[key] = value
        return env

    def __repr__(self):
        return f"<AMLRequest '{self.base_url}' [{self.method}]>"


_UNSET = object()


class AMLResponse:
    """``AMLResponse(message, status_code, response_headers={}, json_str=False, run_function_failed=False)``.

    * ``json_str=True``: the body is ``json.dumps(message)``, content type ``application/json``;
    * otherwise ``message`` (str, bytes or an iterable of chunks) is the body, content type
      ``text/html; charset=utf-8`` unless ``response_headers`` has a ``Content-Type``;
    * ``message=None``: the body is ``{}`` as JSON;
    * each ``response_headers`` value is split on commas into repeated headers (azmlinfsrv does so);
    * ``x-ms-run-function-failed`` is set from ``run_function_failed``.
    """

    default_mimetype = "text/html"

    def __init__(self, message=None, status_code=200, response_headers={}, json_str=False,  # noqa: B006
                 run_function_failed=False):
        self.headers = Headers()
        self.status_code = status_code
        if message is not None:
            if json_str:
                self.set_data(json.dumps(message))
                self.headers["Content-Type"] = "application/json"
            else:
                self._set_body(message)
                self.headers["Content-Type"] = "text/html; charset=utf-8"
                if "Content-Type" in response_headers:
                    self.headers.remove("Content-Type")
        else:
            self.set_data(json.dumps({}))
            self.headers["Content-Type"] = "application/json"

        self.headers["x-ms-run-function-failed"] = run_function_failed

        for header, value in response_headers.items():
            for v in value.split(","):
                self.headers.add(header, v.strip())

    # -- status -------------------------------------------------------------------------------
    @property
    def status_code(self):
        return self._status_code

    @status_code.setter
    def status_code(self, value):
        if isinstance(value, str):
            value = int(value.strip().split(None, 1)[0])
        self._status_code = int(value)

    @property
    def status(self):
        return str(self._status_code)

    @status.setter
    def status(self, value):
        self.status_code = value

    # -- body ---------------------------------------------------------------------------------
    def _set_body(self, message):
        if isinstance(message, (str, bytes, bytearray)):
            self.set_data(message)
        else:
            self.response = message
            self._data = None

    def set_data(self, value):
        if isinstance(value, str):
            value = value.encode("utf-8")
        self._data = bytes(value)
        self.response = [self._data]

    def get_data(self, as_text=False):
        if self._data is None:
            self._data = b"".join(c.encode("utf-8") if isinstance(c, str) else bytes(c) for c in self.response)
            self.response = [self._data]
        return self._data.decode("utf-8") if as_text else self._data

    data = property(get_data, set_data)

    @property
    def is_streamed(self):
        return self._data is None

    @property
    def content_type(self):
        return self.headers.get("Content-Type")

    @content_type.setter
    def content_type(self, value):
        self.headers["Content-Type"] = value

    @property
    def mimetype(self):
        return split_content_type(self.content_type)[0]

    @mimetype.setter
    def mimetype(self, value):
        if value.startswith("text/") and "charset" not in value:
            value += "; charset=utf-8"
        self.headers["Content-Type"] = value

    def __repr__(self):
        return f"<AMLResponse [{self._status_code}]>"
