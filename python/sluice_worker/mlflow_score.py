"""The scoring script Sluice runs for an MLflow model deployed without code ("no-code").

A normal Azure ML ``score.py`` (``init()`` and a ``@rawhttp`` ``run(request)``) that the worker loads
as its entry script::

    SLUICE_MLFLOW_MODEL_PATH=/models/iris/1/model \\
    SLUICE_MLFLOW_MLMODEL='{"flavors": {...}, "signature": {...}}' \\
      python -m sluice_worker --socket S --entry-script <dir of sluice_worker>/sluice_worker/mlflow_score.py

Environment:

- ``SLUICE_MLFLOW_MODEL_PATH``: absolute path of the MLflow model folder (the one holding ``MLmodel``).
  Without it, ``$AZUREML_MODEL_DIR/$MLFLOW_MODEL_FOLDER`` (as Azure's image sets them), else
  ``$AZUREML_MODEL_DIR`` or its only subfolder, whichever holds ``MLmodel``.
- ``SLUICE_MLFLOW_MLMODEL``: the ``MLmodel`` content converted to JSON (the environment may lack
  PyYAML). Without it ``MLmodel`` is read with ``yaml`` if that is importable.
- ``SLUICE_MLFLOW_LOADER``: ``auto`` (default: ``mlflow.pyfunc.load_model`` when ``mlflow`` is
  importable, else the built-in loader), ``mlflow`` (mlflow required) or ``builtin`` (never import
  mlflow; the built-in loader knows the ``sklearn`` flavor only).
- ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` defaults to ``true`` here: the deployment asked for this
  model to be served, and mlflow >= 3.x refuses to unpickle otherwise. Set it to ``false`` to keep
  mlflow's refusal (the built-in loader honours it too).

Requests (``POST /score``; ``/invocations`` too, see ``sluice_score_paths``), ``Content-Type:
application/json`` (parameters such as ``charset`` allowed), a JSON object body:

- with ``input_data``: Azure ML semantics (split DataFrame, tensor list or named tensors, optional
  ``params``); the answer is a bare JSON value (DataFrames in records orient); errors are
  ``{"message": ...}``;
- with exactly one of ``dataframe_split``, ``dataframe_records``, ``inputs``, ``instances``: MLflow
  scoring-server semantics; the answer is ``{"predictions": ...}``; errors are
  ``{"error_code": "BAD_REQUEST", "message": ...}``. On ``/invocations`` these are the only
  semantics (``input_data`` is not special there).

The input is checked against the model signature (missing columns, types, tensor shapes: 400) and
converted to what the model expects: a pandas DataFrame with the signature's dtypes when pandas is
importable, else numpy arrays (columns in signature order), else plain lists.

``sluice_swagger(version)`` gives the worker the ``ServiceInput``/``ServiceOutput`` schemas derived
from the signature (see sluice_worker/swagger.py).
"""

import base64
import importlib
import json
import math
import os
import sys
import traceback

from azureml.contrib.services.aml_request import rawhttp
from azureml.contrib.services.aml_response import AMLResponse

ENV_MODEL_PATH = "SLUICE_MLFLOW_MODEL_PATH"
ENV_MLMODEL = "SLUICE_MLFLOW_MLMODEL"
ENV_LOADER = "SLUICE_MLFLOW_LOADER"

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "inputs", "instances")
AZURE_KEY = "input_data"
INVOCATIONS_PATH = "/invocations"

# The worker answers these paths with run() too (see sluice_worker/app.py).
sluice_score_paths = (INVOCATIONS_PATH,)

MSG_CONTENT_TYPE = "Expects Content-Type to be application/json"
MSG_METHOD = "Method not allowed"

_JSON_HEADERS = {"Content-Type": "application/json"}


def _log(message):
    print(f"mlflow_score: {message}", file=sys.stderr, flush=True)


class InitError(RuntimeError):
    """The model cannot be served; raised from init() so the worker exits 3 with this message."""


class BadInput(Exception):
    """A client error: 400 with this message."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.message = message
        self.status = status


# --- MLmodel and signature -------------------------------------------------------------------

def find_model_path(environ=os.environ):
    path = environ.get(ENV_MODEL_PATH)
    if path:
        return os.path.abspath(path)
    model_dir = environ.get("AZUREML_MODEL_DIR")
    if not model_dir:
        raise InitError(f"{ENV_MODEL_PATH} is not set (nor AZUREML_MODEL_DIR): no MLflow model to load")
    candidates = []
    folder = environ.get("MLFLOW_MODEL_FOLDER")
    if folder:
        candidates.append(os.path.join(model_dir, folder))
    candidates.append(model_dir)
    try:
        subdirs = [os.path.join(model_dir, d) for d in sorted(os.listdir(model_dir))]
    except OSError:
        subdirs = []
    subdirs = [d for d in subdirs if os.path.isdir(d)]
    if len(subdirs) == 1:
        candidates.append(subdirs[0])
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "MLmodel")):
            return os.path.abspath(candidate)
    raise InitError(f"{ENV_MODEL_PATH} is not set and no MLmodel was found under {model_dir}")


def read_mlmodel(model_path, environ=os.environ):
    text = environ.get(ENV_MLMODEL)
    if text:
        try:
            mlmodel = json.loads(text)
        except ValueError as ex:
            raise InitError(f"{ENV_MLMODEL} is not valid JSON: {ex}") from None
    else:
        path = os.path.join(model_path, "MLmodel")
        if not os.path.isfile(path):
            raise InitError(f"{path} does not exist: {model_path} is not an MLflow model folder")
        try:
            import yaml
        except ImportError:
            raise InitError(
                f"cannot read {path}: PyYAML is not installed in this environment and {ENV_MLMODEL} "
                "(the MLmodel content as JSON) is not set"
            ) from None
        with open(path, encoding="utf-8") as f:
            mlmodel = yaml.safe_load(f)
    if not isinstance(mlmodel, dict):
        raise InitError("the MLmodel content is not a mapping")
    return mlmodel


def _schema_list(value, what):
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as ex:
            raise InitError(f"signature {what} is not valid JSON: {ex}") from None
    if not isinstance(value, list):
        raise InitError(f"signature {what} must be a list, got {type(value).__name__}")
    return value


# MLflow column types -> (numpy dtype, swagger schema)
COLUMN_TYPES = {
    "boolean": ("bool", {"type": "boolean"}),
    "integer": ("int32", {"type": "integer", "format": "int32"}),
    "long": ("int64", {"type": "integer", "format": "int64"}),
    "float": ("float32", {"type": "number", "format": "float"}),
    "double": ("float64", {"type": "number", "format": "double"}),
    "string": ("object", {"type": "string"}),
    "binary": ("object", {"type": "string", "format": "byte"}),
    "datetime": ("datetime64[ns]", {"type": "string", "format": "date-time"}),
}
_INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class Column:
    def __init__(self, entry):
        self.name = entry.get("name")
        kind = entry.get("type")
        self.type = kind if isinstance(kind, str) else "object"
        self.required = entry.get("required", True) is not False
        self.entry = entry

    @property
    def label(self):
        return self.type if self.type in COLUMN_TYPES else (self.type or "any")

    def swagger(self):
        return dict(COLUMN_TYPES.get(self.type, (None, {}))[1])


class TensorSpec:
    def __init__(self, entry):
        spec = entry.get("tensor-spec") or {}
        self.name = entry.get("name")
        self.dtype = str(spec.get("dtype", "object"))
        shape = spec.get("shape")
        self.shape = [int(d) for d in shape] if isinstance(shape, list) else None

    def shape_text(self):
        return "[" + ", ".join(str(d) for d in self.shape) + "]"

    def swagger(self):
        item = _dtype_swagger(self.dtype)
        for _ in range(len(self.shape) if self.shape is not None else 1):
            item = {"type": "array", "items": item}
        return item


def _dtype_swagger(dtype):
    d = dtype.lower()
    if d.startswith("float"):
        return {"type": "number", "format": "float" if d == "float32" else "double"}
    if d.startswith(("int", "uint")):
        return {"type": "integer", "format": "int64" if d.endswith("64") else "int32"}
    if d == "bool":
        return {"type": "boolean"}
    if d in ("str", "object", "unicode", "bytes"):
        return {"type": "string"}
    return {}


class Schema:
    """One side of a signature: column-based (``columns``) or tensor-based (``tensors``)."""

    def __init__(self, entries):
        self.columns = None
        self.tensors = None
        if all(isinstance(e, dict) and e.get("type") == "tensor" for e in entries):
            self.tensors = [TensorSpec(e) for e in entries]
        else:
            self.columns = [Column(e if isinstance(e, dict) else {}) for e in entries]

    @property
    def named(self):
        items = self.columns if self.columns is not None else self.tensors
        return bool(items) and all(i.name is not None for i in items)

    def column_names(self):
        return [c.name if c.name is not None else str(i) for i, c in enumerate(self.columns)]


class Signature:
    def __init__(self, mlmodel):
        sig = mlmodel.get("signature") or {}
        inputs = _schema_list(sig.get("inputs"), "inputs")
        outputs = _schema_list(sig.get("outputs"), "outputs")
        self.inputs = Schema(inputs) if inputs else None
        self.outputs = Schema(outputs) if outputs else None
        self.params = _schema_list(sig.get("params"), "params") or []


# --- loading the model -----------------------------------------------------------------------

def _mlflow_importable():
    try:
        importlib.import_module("mlflow.pyfunc")
        return True, None
    except Exception as ex:  # ImportError, or an mlflow broken by missing dependencies
        return False, f"{type(ex).__name__}: {ex}"


def _add_code_paths(model_path, conf):
    code = conf.get("code")
    if code:
        path = os.path.join(model_path, code)
        if os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)


def _pickle_allowed():
    return os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").strip().lower() in ("true", "1")


class BuiltinSklearnModel:
    """What ``mlflow.sklearn``'s pyfunc wrapper does, without mlflow: unpickle, call ``predict_fn``."""

    def __init__(self, model_path, flavors):
        sk = flavors.get("sklearn") or {}
        pyfunc = flavors.get("python_function") or {}
        rel = sk.get("pickled_model") or pyfunc.get("model_path") or pyfunc.get("data")
        if not rel:
            raise InitError("the sklearn flavor names no pickled_model file")
        fmt = sk.get("serialization_format") or "pickle"
        self.predict_fn = pyfunc.get("predict_fn") or "predict"
        _add_code_paths(model_path, pyfunc)
        _add_code_paths(model_path, sk)
        path = os.path.join(model_path, rel)
        if not _pickle_allowed():
            raise InitError("MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false: refusing to unpickle the model")
        if fmt in ("pickle", "cloudpickle"):
            if fmt == "cloudpickle":
                try:
                    import cloudpickle as loader
                except ImportError:
                    raise InitError(
                        "the model was saved with cloudpickle, which is not installed in this environment: "
                        "add cloudpickle to the model's requirements"
                    ) from None
            else:
                import pickle as loader
            with open(path, "rb") as f:
                self.model = loader.load(f)
        elif fmt == "skops":
            try:
                import skops.io
            except ImportError:
                raise InitError("the model was saved with skops, which is not installed in this environment") from None
            self.model = skops.io.load(path, trusted=sk.get("skops_trusted_types"))
        else:
            raise InitError(f"unknown sklearn serialization_format {fmt!r}")
        self.predict = getattr(self.model, self.predict_fn)
        self.description = f"the built-in sklearn loader ({rel}, {fmt}, {self.predict_fn})"

    def __call__(self, data, params):
        if params:
            _log(f"params {sorted(params)} ignored: a scikit-learn model takes no params")
        return self.predict(data)


class MlflowPyfuncModel:
    def __init__(self, model_path):
        os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
        import mlflow
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(model_path)
        self.description = f"mlflow.pyfunc.load_model (mlflow {getattr(mlflow, '__version__', '?')})"

    def __call__(self, data, params):
        if params is not None:
            return self.model.predict(data, params=params)
        return self.model.predict(data)


def _builtin_flavor(flavors):
    if "sklearn" in flavors:
        return "sklearn"
    pyfunc = flavors.get("python_function") or {}
    if pyfunc.get("loader_module") == "mlflow.sklearn":
        return "sklearn"
    return None


def load_model(model_path, mlmodel, environ=os.environ):
    flavors = mlmodel.get("flavors") or {}
    if not isinstance(flavors, dict) or not flavors:
        raise InitError("the MLmodel file lists no flavors")
    mode = (environ.get(ENV_LOADER) or "auto").strip().lower()
    if mode not in ("auto", "mlflow", "builtin"):
        raise InitError(f"{ENV_LOADER} must be auto, mlflow or builtin, not {mode!r}")
    if mode != "builtin":
        ok, why = _mlflow_importable()
        if ok and ("python_function" in flavors or mode == "mlflow" or _builtin_flavor(flavors) is None):
            if "python_function" not in flavors:
                raise InitError(
                    f"the model has no python_function flavor (flavors: {', '.join(sorted(flavors))}): "
                    "mlflow cannot serve it"
                )
            return MlflowPyfuncModel(model_path)
        if mode == "mlflow":
            raise InitError(f"{ENV_LOADER}=mlflow but mlflow cannot be imported: {why}")
        if why and "No module named 'mlflow" not in why:
            _log(f"mlflow is installed but cannot be imported ({why}); trying the built-in loader")
    if _builtin_flavor(flavors) == "sklearn":
        return BuiltinSklearnModel(model_path, flavors)
    names = ", ".join(sorted(f for f in flavors if f != "python_function") or ["python_function"])
    loader = (flavors.get("python_function") or {}).get("loader_module")
    detail = f" (python_function loader_module {loader})" if loader else ""
    raise InitError(
        f"cannot load an MLflow model with flavor(s) {names}{detail} without mlflow: the built-in loader "
        "knows only the sklearn flavor. Add mlflow (or mlflow-skinny) to the model's conda.yaml / "
        "requirements.txt, or give the deployment an environment that has mlflow."
    )


# --- request bodies -> one of three forms ----------------------------------------------------

class Frame:
    """A DataFrame-like payload: ``columns`` (None for positional rows), ``rows``, optional ``index``."""

    def __init__(self, columns, rows, index=None):
        self.columns = columns
        self.rows = rows
        self.index = index


class Tensor:
    def __init__(self, value):
        self.value = value


class Named:
    def __init__(self, mapping):
        self.mapping = mapping


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def split_frame(value, what):
    if not isinstance(value, dict):
        raise BadInput(
            f'{what} must be a split-orient DataFrame {{"columns": [...], "data": [[...]]}}, got {_kind(value)}'
        )
    columns = value.get("columns")
    if columns is not None:
        if not isinstance(columns, list):
            raise BadInput("'columns' must be a list of column names")
        for c in columns:
            if isinstance(c, bool) or not isinstance(c, (str, int, float)):
                raise BadInput(f"'columns' must hold strings, found {_kind(c)}")
        columns = [c if isinstance(c, str) else json.dumps(c) for c in columns]
    data = value.get("data")
    if not isinstance(data, list):
        raise BadInput("'data' must be a list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list):
            raise BadInput(f"row {i} of 'data' must be a list, found {_kind(row)}")
        if columns is not None and len(row) != len(columns):
            raise BadInput(f"row {i} of 'data' has {len(row)} values but there are {len(columns)} columns")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise BadInput(f"'index' must be a list of {len(data)} labels, one per row of 'data'")
    return Frame(columns, data, index)


def records_frame(items):
    columns = []
    seen = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadInput(f"records must be objects, found {_kind(item)} at position {i}")
        for key in item:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    rows = [[item.get(c) for c in columns] for item in items]
    return Frame(columns, rows)


def _is_records(value):
    return isinstance(value, list) and value and all(isinstance(v, dict) for v in value)


def parse_input_data(value):
    """Azure ML ``input_data``."""
    if isinstance(value, dict) and "columns" in value and "data" in value:
        return split_frame(value, "input_data")
    if isinstance(value, dict):
        return Named(value)
    if _is_records(value):
        return records_frame(value)
    return Tensor(value)


def parse_mlflow(body, key):
    value = body[key]
    if key == "dataframe_split":
        return split_frame(value, "dataframe_split")
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise BadInput(f"'dataframe_records' must be a list of records, got {_kind(value)}")
        return records_frame(value)
    if _is_records(value):
        return records_frame(value)
    if isinstance(value, dict):
        return Named(value)
    if isinstance(value, list):
        return Tensor(value)
    raise BadInput(f"'{key}' must be a list or an object, got {_kind(value)}")


# --- conversion against the signature --------------------------------------------------------

def _bad_cell(col, row, value):
    shown = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else _kind(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    row_text = f", row {row}" if row is not None else ""
    return BadInput(f"column '{col.name}' ({col.label}){row_text}: {shown} is not a valid {col.label} value")


def convert_cell(col, value, row):
    t = col.type
    if t in ("double", "float"):
        if value is None:
            return math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _bad_cell(col, row, value)
    if t in ("long", "integer"):
        if isinstance(value, bool) or value is None:
            raise _bad_cell(col, row, value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int):
            lo, hi = _INT_RANGES[t]
            if lo <= value <= hi:
                return value
        raise _bad_cell(col, row, value)
    if t == "boolean":
        if isinstance(value, bool):
            return value
        raise _bad_cell(col, row, value)
    if t == "string":
        if value is None or isinstance(value, str):
            return value
        raise _bad_cell(col, row, value)
    if t == "binary":
        if value is None or isinstance(value, bytes):
            return value
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                pass
        raise _bad_cell(col, row, value)
    if t == "datetime":
        if value is None or isinstance(value, str):
            return value
        raise _bad_cell(col, row, value)
    return value  # array / object / map / any: passed through


def frame_for_columns(data, schema):
    """Any payload form -> a Frame in signature column order, values converted; extra columns dropped."""
    cols = schema.columns
    names = schema.column_names()
    n = len(cols)
    if isinstance(data, Named):
        # {"col": [values...] | value, ...}: a DataFrame given column by column.
        mapping = {k: list(v.values()) if isinstance(v, dict) else v for k, v in data.mapping.items()}
        lengths = {len(v) for v in mapping.values() if isinstance(v, list)}
        if len(lengths) > 1:
            raise BadInput("the columns have different numbers of values")
        length = lengths.pop() if lengths else 1
        columns = list(mapping)
        rows = [[mapping[c][i] if isinstance(mapping[c], list) else mapping[c] for c in columns] for i in range(length)]
        data = Frame(columns, rows)
    elif isinstance(data, Tensor):
        value = data.value
        if not isinstance(value, list):
            value = [value]
        if value and all(isinstance(r, list) for r in value):
            for i, r in enumerate(value):
                if len(r) != n:
                    raise BadInput(
                        f"row {i} has {len(r)} values but the model signature has {n} columns "
                        f"({', '.join(names)}); send a DataFrame in split orient to name them"
                    )
            data = Frame(None, value)
        elif n == 1:
            data = Frame(None, [[v] for v in value])
        elif len(value) == n:
            data = Frame(None, [value])
        else:
            raise BadInput(
                f"the model signature has {n} columns ({', '.join(names)}); send a DataFrame in split orient "
                '{"columns": [...], "data": [[...]]} or rows of that many values'
            )

    if data.columns is None or not schema.named:
        # Positional: the signature's order.
        for i, row in enumerate(data.rows):
            if len(row) != n:
                raise BadInput(
                    f"row {i} has {len(row)} values but the model signature has {n} columns ({', '.join(names)})"
                )
        positions = list(range(n))
    else:
        where = {}
        for i, c in enumerate(data.columns):
            where.setdefault(c, i)
        positions = []
        for col in cols:
            if col.name in where:
                positions.append(where[col.name])
            elif col.required:
                raise BadInput(
                    f"missing column '{col.name}' required by the model signature "
                    f"(the request has columns: {', '.join(data.columns)})"
                )
            else:
                positions.append(None)
    kept = [(col, pos) for col, pos in zip(cols, positions) if pos is not None]
    rows = [[convert_cell(col, row[pos], r) for col, pos in kept] for r, row in enumerate(data.rows)]
    columns = [col.name for col, _ in kept] if schema.named else None
    return Frame(columns, rows, data.index), [col for col, _ in kept]


def build_frame(frame, kept):
    """A Frame (already converted) -> DataFrame / ndarray / list of rows."""
    pd = _optional("pandas")
    np = _optional("numpy")
    if pd is not None:
        data = {}
        for j, col in enumerate(kept):
            values = [row[j] for row in frame.rows]
            key = col.name if frame.columns is not None else j
            dtype = COLUMN_TYPES.get(col.type, ("object",))[0]
            if col.type == "datetime":
                try:
                    data[key] = pd.to_datetime(pd.Series(values, dtype="object"))
                except (ValueError, TypeError) as ex:
                    raise BadInput(f"column '{col.name}' (datetime): {ex}") from None
            else:
                data[key] = pd.Series(values, dtype=dtype)
        df = pd.DataFrame(data, columns=list(data))
        if frame.index is not None:
            df.index = frame.index
        return df
    if np is not None:
        dtypes = [COLUMN_TYPES.get(c.type, ("object",))[0] for c in kept]
        numeric = all(d not in ("object", "datetime64[ns]") for d in dtypes)
        dtype = np.result_type(*dtypes) if numeric and dtypes else object
        return np.array(frame.rows, dtype=dtype).reshape(len(frame.rows), len(kept))
    return frame.rows


def frame_without_signature(frame):
    pd = _optional("pandas")
    if pd is not None:
        if frame.columns is None:
            return pd.DataFrame(frame.rows, index=frame.index)
        return pd.DataFrame(frame.rows, columns=frame.columns, index=frame.index)
    if frame.columns is not None:
        return {c: [row[i] for row in frame.rows] for i, c in enumerate(frame.columns)}
    return frame.rows


def _shape_of(value):
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _check_ragged(value, shape, depth=0):
    if depth == len(shape):
        return not isinstance(value, list)
    if not isinstance(value, list) or len(value) != shape[depth]:
        return False
    return all(_check_ragged(v, shape, depth + 1) for v in value)


def _cast_py(value, dtype, name):
    if isinstance(value, list):
        return [_cast_py(v, dtype, name) for v in value]
    d = dtype.lower()
    try:
        if d.startswith("float"):
            return float(value)
        if d.startswith(("int", "uint")):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if d == "bool":
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
    except (TypeError, ValueError):
        raise BadInput(f"input '{name}': {json.dumps(value)} is not a valid {dtype} value") from None
    return value


def convert_tensor(value, spec, name):
    np = _optional("numpy")
    if np is None:
        shape = _shape_of(value)
        if not _check_ragged(value, shape):
            raise BadInput(f"input '{name}': the nested lists are ragged (not a rectangular tensor)")
        converted = _cast_py(value, spec.dtype, name)
    else:
        try:
            arr = np.asarray(value)
        except ValueError:
            raise BadInput(f"input '{name}': the nested lists are ragged (not a rectangular tensor)") from None
        try:
            target = np.dtype(spec.dtype)
        except TypeError:
            target = None
        if target is not None and arr.dtype != target:
            if target.kind in "iu" and arr.dtype.kind == "f":
                if not np.all(np.isfinite(arr)) or not np.all(arr == np.floor(arr)):
                    raise BadInput(f"input '{name}' expects {spec.dtype} values but the data has fractional numbers")
            try:
                arr = arr.astype(target)
            except (ValueError, TypeError, OverflowError):
                raise BadInput(f"input '{name}': the values cannot be converted to {spec.dtype}") from None
        if arr.dtype == object and arr.ndim and any(isinstance(v, list) for v in arr.ravel()):
            raise BadInput(f"input '{name}': the nested lists are ragged (not a rectangular tensor)")
        converted = arr
        shape = list(arr.shape)
    if spec.shape is not None:
        ok = len(shape) == len(spec.shape) and all(w == -1 or w == g for w, g in zip(spec.shape, shape))
        if not ok:
            got = "[" + ", ".join(str(d) for d in shape) + "]"
            raise BadInput(f"input '{name}' expects shape {spec.shape_text()} but the data has shape {got}")
    return converted


def tensors_for_signature(data, schema):
    specs = schema.tensors
    if len(specs) == 1:
        spec = specs[0]
        name = spec.name or "input"
        if isinstance(data, Named):
            mapping = data.mapping
            if spec.name in mapping:
                value = mapping[spec.name]
            elif len(mapping) == 1:
                value = next(iter(mapping.values()))
            else:
                raise BadInput(f"the model has one input ('{name}'); send it as a list, not an object with "
                               f"{len(mapping)} keys")
        elif isinstance(data, Frame):
            value = data.rows
        else:
            value = data.value
        converted = convert_tensor(value, spec, name)
        return {spec.name: converted} if spec.name and isinstance(data, Named) else converted
    names = [s.name or str(i) for i, s in enumerate(specs)]
    if isinstance(data, Frame) and data.columns is not None:
        mapping = {c: [row[i] for row in data.rows] for i, c in enumerate(data.columns)}
    elif isinstance(data, Named):
        mapping = data.mapping
    else:
        raise BadInput(f"the model has {len(specs)} inputs ({', '.join(names)}); send named tensors: "
                       '{"<input name>": [...], ...}')
    out = {}
    for spec, name in zip(specs, names):
        if name not in mapping:
            raise BadInput(f"missing input '{name}' (model inputs: {', '.join(names)})")
        out[name] = convert_tensor(mapping[name], spec, name)
    return out


def model_input(data, signature):
    schema = signature.inputs
    if schema is None:
        if isinstance(data, Frame):
            return frame_without_signature(data)
        np = _optional("numpy")
        if isinstance(data, Named):
            return {k: _asarray(np, v) for k, v in data.mapping.items()}
        return _asarray(np, data.value)
    if schema.tensors is not None:
        return tensors_for_signature(data, schema)
    frame, kept = frame_for_columns(data, schema)
    return build_frame(frame, kept)


def _asarray(np, value):
    if np is None or not isinstance(value, list):
        return value
    try:
        return np.asarray(value)
    except ValueError:
        return value


def _optional(name):
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# --- predictions -> JSON ---------------------------------------------------------------------

def jsonable(obj):
    """numpy arrays -> lists, DataFrames -> records, Series -> lists, numpy scalars -> Python
    scalars, NaN/inf -> null, bytes -> base64, datetimes -> ISO strings."""
    pd = sys.modules.get("pandas")
    np = sys.modules.get("numpy")
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if pd is not None:
        if isinstance(obj, pd.DataFrame):
            return [jsonable(r) for r in obj.to_dict(orient="records")]
        if isinstance(obj, pd.Series):
            return [jsonable(v) for v in obj.tolist()]
        if isinstance(obj, pd.Timestamp):
            return obj.isoformat()
        if obj is pd.NaT:
            return None
    if np is not None:
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "biu":
                return obj.tolist()
            return jsonable(obj.tolist())
        if isinstance(obj, np.generic):
            return jsonable(obj.item())
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    raise TypeError(f"the model returned a {type(obj).__name__}, which cannot be sent as JSON")


# --- swagger ---------------------------------------------------------------------------------

def _read_input_example(model_path, mlmodel):
    info = mlmodel.get("saved_input_example_info") or {}
    rel = info.get("artifact_path") or "input_example.json"
    path = os.path.join(model_path, rel)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f), info
    except (OSError, ValueError):
        return None, info


def _example_value(col):
    t = col.type
    return {"boolean": False, "integer": 0, "long": 0, "float": 0.0, "double": 0.0, "string": "",
            "binary": "", "datetime": "2024-01-01T00:00:00"}.get(t)


def _split_example(schema, example):
    names = schema.column_names()
    if isinstance(example, dict) and "inputs" in example and len(example) == 1:
        example = example["inputs"]
    if _is_records(example):
        example = {"columns": list(example[0]), "data": [list(r.values()) for r in example]}
    if isinstance(example, dict) and isinstance(example.get("data"), list):
        data = example["data"][:5]
        columns = example.get("columns") or names
        return {"columns": columns, "index": list(range(len(data))), "data": data}
    return {"columns": names, "index": [0], "data": [[_example_value(c) for c in schema.columns]]}


def _tensor_example(spec):
    if not spec.shape:
        return None
    value = {"float": 0.0, "int": 0, "uint": 0, "bool": False}
    leaf = next((v for k, v in value.items() if spec.dtype.startswith(k)), "")
    for d in reversed(spec.shape):
        leaf = [leaf] * (d if d > 0 else 1)
    return leaf


def _params_swagger(params):
    props = {}
    example = {}
    for p in params:
        if not isinstance(p, dict) or "name" not in p:
            continue
        schema = dict(COLUMN_TYPES.get(p.get("type"), (None, {}))[1])
        if p.get("shape"):
            schema = {"type": "array", "items": schema}
        if "default" in p:
            schema["default"] = p["default"]
            example[p["name"]] = p["default"]
        props[p["name"]] = schema
    return {"type": "object", "properties": props, "example": example}


def build_swagger_schemas(signature, model_path, mlmodel):
    """``{"ServiceInput": ..., "ServiceOutput": ...}`` as Azure's generated MLflow script declares
    them (input_data in split orient for a column signature; output an array)."""
    example, _ = _read_input_example(model_path, mlmodel)
    schema = signature.inputs
    if schema is None:
        input_data = {"description": "A split-orient DataFrame, a list (tensor) or an object of named tensors."}
        input_example = example if example is not None else {}
    elif schema.columns is not None:
        described = ", ".join(f"{n} ({c.label})" for n, c in zip(schema.column_names(), schema.columns))
        kinds = [c.swagger() for c in schema.columns]
        item = kinds[0] if kinds and all(k == kinds[0] for k in kinds) else {}
        input_example = _split_example(schema, example)
        input_data = {
            "type": "object",
            "required": ["columns", "index", "data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "index": {"type": "array", "items": {"type": "integer", "format": "int64"}},
                "data": {"type": "array", "items": {"type": "array", "items": item}},
            },
            "description": f"A DataFrame in split orient with the columns {described}.",
            "example": input_example,
            "format": "pandas.DataFrame:split",
        }
    else:
        specs = schema.tensors
        if isinstance(example, dict) and "inputs" in example:
            example = example["inputs"]
        if len(specs) == 1 and not (specs[0].name and isinstance(example, dict)):
            input_data = specs[0].swagger()
            input_example = example if isinstance(example, list) else _tensor_example(specs[0])
        else:
            input_data = {"type": "object", "required": [s.name for s in specs if s.name],
                          "properties": {s.name or str(i): s.swagger() for i, s in enumerate(specs)}}
            input_example = example if isinstance(example, dict) else {
                s.name or str(i): _tensor_example(s) for i, s in enumerate(specs)}
        input_data["format"] = "numpy.ndarray"
        if input_example is not None:
            input_data["example"] = input_example
    service_input = {"type": "object", "required": ["input_data"], "properties": {"input_data": input_data},
                     "example": {"input_data": input_example}}
    if signature.params:
        params = _params_swagger(signature.params)
        service_input["properties"]["params"] = params
        if params["example"]:
            service_input["example"]["params"] = params["example"]

    out = signature.outputs
    if out is None:
        items = {}
    elif out.columns is not None:
        if out.named:
            items = {"type": "object", "properties": {c.name: c.swagger() for c in out.columns}}
        else:
            items = out.columns[0].swagger() if len(out.columns) == 1 else {}
    elif len(out.tensors) == 1 and out.tensors[0].shape:
        spec = out.tensors[0]
        items = spec.swagger()["items"] if spec.swagger().get("type") == "array" else spec.swagger()
    else:
        items = {}
    service_output = {"type": "array", "items": items, "description": "The predictions, one per input row."}
    return {"ServiceInput": service_input, "ServiceOutput": service_output}


# --- the scorer ------------------------------------------------------------------------------

class Scorer:
    def __init__(self, model_path, mlmodel, model):
        self.model_path = model_path
        self.mlmodel = mlmodel
        self.signature = Signature(mlmodel)
        self.model = model
        self._swagger = None

    @classmethod
    def from_environment(cls, environ=os.environ):
        model_path = find_model_path(environ)
        mlmodel = read_mlmodel(model_path, environ)
        Signature(mlmodel)  # a broken signature fails init before the (slower) model load
        model = load_model(model_path, mlmodel, environ)
        _log(f"serving {model_path} with {model.description}")
        return cls(model_path, mlmodel, model)

    def swagger(self, version):
        if self._swagger is None:
            self._swagger = build_swagger_schemas(self.signature, self.model_path, self.mlmodel)
        return self._swagger

    def handle(self, request):
        invocations = request.path == INVOCATIONS_PATH
        envelope = "mlflow" if invocations else "azure"
        if request.method == "OPTIONS":
            return AMLResponse("", 200)
        if request.method != "POST":
            return self.error(405, MSG_METHOD, envelope)
        mimetype = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if mimetype != "application/json":
            return self.error(415, MSG_CONTENT_TYPE, envelope)
        body = request.get_data()
        try:
            parsed = json.loads(body)
        except ValueError as ex:
            if body.strip():
                return self.error(400, f"POST body could not be decoded as JSON: {ex}", envelope)
            return self.error(400, "POST body is empty. Expecting a JSON dictionary.", envelope)
        if not isinstance(parsed, dict):
            return self.error(400, "POST body should be a JSON dictionary.", envelope)

        present = [k for k in MLFLOW_KEYS if k in parsed]
        if not invocations and AZURE_KEY in parsed:
            key = AZURE_KEY
        elif len(present) == 1:
            key = present[0]
            envelope = "mlflow"
        elif present or invocations:
            return self.error(
                400,
                "The body must be a JSON object with exactly one of the fields dataframe_split, dataframe_records, "
                f"instances, inputs; it has: {', '.join(parsed) or 'no fields'}",
                "mlflow",
            )
        else:
            return self.error(400, "A value is not provided for the 'input_data' parameter.", envelope)

        try:
            params = parsed.get("params")
            if params is not None and not isinstance(params, dict):
                raise BadInput(f"'params' must be an object, got {_kind(params)}")
            data = parse_input_data(parsed[key]) if key == AZURE_KEY else parse_mlflow(parsed, key)
            model_in = model_input(data, self.signature)
        except BadInput as ex:
            return self.error(ex.status, ex.message, envelope)

        try:
            predictions = self.model(model_in, params)
        except Exception as ex:
            client_error = _mlflow_client_error(ex)
            if client_error:
                return self.error(400, client_error, envelope)
            _log("prediction failed:\n" + traceback.format_exc())
            text = str(ex).strip().splitlines()[0] if str(ex).strip() else ""
            text = f"{type(ex).__name__}: {text}" if text else type(ex).__name__
            return self.error(500, f"The model failed to predict: {text[:500]}", envelope)
        try:
            result = jsonable(predictions)
            if envelope == "mlflow":
                result = {"predictions": result}
            out = json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as ex:
            _log("cannot encode the predictions:\n" + traceback.format_exc())
            return self.error(500, f"The model's predictions cannot be sent as JSON: {ex}", envelope)
        return AMLResponse(out, 200, dict(_JSON_HEADERS))

    @staticmethod
    def error(status, message, envelope):
        if envelope == "mlflow":
            code = "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
            body = {"error_code": code, "message": message}
        else:
            body = {"message": message}
        return AMLResponse(json.dumps(body), status, dict(_JSON_HEADERS), run_function_failed=status >= 500)


def _mlflow_client_error(ex):
    """An MlflowException that mlflow's scoring server answers with 400 (schema enforcement)."""
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(ex, getattr(exceptions, "MlflowException", ())):
        return None
    if getattr(ex, "error_code", None) in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"):
        return getattr(ex, "message", None) or str(ex)
    return None


# --- the score.py contract -------------------------------------------------------------------

_scorer = None


def init():
    global _scorer
    _scorer = Scorer.from_environment()


@rawhttp
def run(request):
    return _scorer.handle(request)


def sluice_swagger(version):
    """The worker's swagger hook (sluice_worker/swagger.py): schemas from the MLflow signature."""
    if _scorer is None:
        return None
    return _scorer.swagger(version)
