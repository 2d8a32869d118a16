"""sluice_worker/mlflow_score.py: MLflow models served without code (contract §4.1, §4.2).

Workers are real ``python -m sluice_worker`` processes with the scorer as entry script. The model is
testdata/models/mlflow-sklearn (scripts/gen_mlflow_sklearn.py), served both through
``mlflow.pyfunc.load_model`` and through the built-in sklearn loader (``SLUICE_MLFLOW_LOADER=builtin``,
and with ``mlflow`` made unimportable).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

import worker_client

REPO = os.path.dirname(worker_client.PYTHON_DIR)
MODEL = os.path.join(REPO, "testdata", "models", "mlflow-sklearn")
SCORER = os.path.join(worker_client.PYTHON_DIR, "sluice_worker", "mlflow_score.py")

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]
RECORDS = [dict(zip(COLUMNS, r)) for r in ROWS]
LABELS = [0, 2]
JSON = [("content-type", "application/json")]


def _blocker(root, *names):
    """A folder that, put first on PYTHONPATH, makes ``import <name>`` fail as if not installed."""
    for name in names:
        pkg = root / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}' (hidden by the test)\", name={name!r})\n")
    return str(root)


def _mlmodel_json(model_dir):
    import yaml

    with open(os.path.join(model_dir, "MLmodel"), encoding="utf-8") as f:
        return json.dumps(yaml.safe_load(f))


def start_scorer(model_dir=MODEL, env=None, expect_ready=True):
    full = {"SLUICE_MLFLOW_MODEL_PATH": model_dir, **(env or {})}
    return worker_client.start_worker(SCORER, env=full, expect_ready=expect_ready, timeout=120)


@pytest.fixture(scope="module")
def scorers(tmp_path_factory):
    """``scorers(kind)``: a READY worker on the iris MLflow model, one per kind, started once."""
    blocked = tmp_path_factory.mktemp("blocked")
    kinds = {
        # mlflow is installed in the test venv: mlflow.pyfunc.load_model
        "mlflow": {},
        # the built-in sklearn loader by request
        "builtin": {"SLUICE_MLFLOW_LOADER": "builtin"},
        # no mlflow and no PyYAML in the environment: MLmodel comes as JSON from the replica
        "no-mlflow": {"PYTHONPATH": _blocker(blocked / "a", "mlflow", "yaml"),
                      "SLUICE_MLFLOW_MLMODEL": _mlmodel_json(MODEL)},
        # no pandas either: numpy arrays in signature column order
        "numpy-only": {"PYTHONPATH": _blocker(blocked / "b", "pandas"), "SLUICE_MLFLOW_LOADER": "builtin"},
    }
    started = {}

    def get(kind):
        if kind not in started:
            started[kind] = start_scorer(env=kinds[kind])
        return started[kind]

    yield get
    for w in started.values():
        w.stop()


ALL = ["mlflow", "builtin", "no-mlflow", "numpy-only"]


def test_loader_paths(scorers):
    assert scorers("mlflow").wait_output("with mlflow.pyfunc.load_model")
    for kind in ("builtin", "no-mlflow", "numpy-only"):
        w = scorers(kind)
        assert w.wait_output("with the built-in sklearn loader (model.pkl, cloudpickle, predict)"), w.stderr
        assert "mlflow.pyfunc" not in w.stderr


# --- Azure semantics (input_data) ------------------------------------------------------------

@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("input_data", [
    {"columns": COLUMNS, "index": [0, 1], "data": ROWS},                     # pandas split
    {"columns": COLUMNS, "data": ROWS},                                       # split, no index
    {"columns": COLUMNS[::-1], "data": [r[::-1] for r in ROWS]},              # reordered to the signature
    {"columns": COLUMNS + ["extra"], "data": [r + ["x"] for r in ROWS]},      # extra columns dropped
    ROWS,                                                                     # tensor list (positional)
    {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)},                 # named (one list per column)
], ids=["split", "split-no-index", "reordered", "extra-column", "tensor-list", "named"])
def test_azure_input_data_shapes(scorers, kind, input_data):
    r = scorers(kind).post_json({"input_data": input_data})
    assert (r.status, r.json(), r.content_type) == (200, LABELS, "application/json"), r.body
    assert r.header("x-ms-run-function-failed") == "False"


def test_integral_numbers_in_double_columns(scorers):
    data = [[5, 3.5, 1.4, 0.2], [6.3, 3.3, 6, 2.5]]
    r = scorers("builtin").post_json({"input_data": {"columns": COLUMNS, "data": data}})
    assert (r.status, r.json()) == (200, LABELS)


def test_params_accepted(scorers):
    r = scorers("mlflow").post_json({"input_data": ROWS, "params": {}})
    assert (r.status, r.json()) == (200, LABELS)
    r = scorers("builtin").post_json({"input_data": ROWS, "params": 3})
    assert (r.status, r.json()) == (400, {"message": "'params' must be an object, got a number"})


# --- MLflow semantics ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
    {"dataframe_split": {"columns": COLUMNS, "index": [7, 8], "data": ROWS}},
    {"dataframe_records": RECORDS},
    {"inputs": ROWS},
    {"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}},
    {"instances": RECORDS},
    {"instances": ROWS},
], ids=["dataframe_split", "dataframe_split-index", "dataframe_records", "inputs", "inputs-named", "instances",
        "instances-rows"])
def test_mlflow_bodies(scorers, kind, body):
    r = scorers(kind).post_json(body)
    assert (r.status, r.json(), r.content_type) == (200, {"predictions": LABELS}, "application/json"), r.body


def test_invocations_path_uses_mlflow_semantics(scorers):
    w = scorers("builtin")
    r = w.post_json({"dataframe_records": RECORDS}, path="/invocations")
    assert (r.status, r.json()) == (200, {"predictions": LABELS})
    r = w.post_json({"input_data": ROWS}, path="/invocations")
    assert r.status == 400 and r.json()["error_code"] == "BAD_REQUEST"
    r = w.request("POST", "/invocations", headers=[("content-type", "text/csv")], body=b"a,b\n1,2\n")
    assert (r.status, r.json()) == (
        415, {"error_code": "BAD_REQUEST", "message": "Expects Content-Type to be application/json"})


@pytest.mark.parametrize("body", [
    {"inputs": ROWS, "instances": ROWS},
    {"dataframe_split": {"columns": COLUMNS, "data": ROWS}, "dataframe_records": RECORDS},
])
def test_two_mlflow_keys_is_400(scorers, body):
    r = scorers("builtin").post_json(body)
    assert r.status == 400
    doc = r.json()
    assert doc["error_code"] == "BAD_REQUEST"
    assert "exactly one of the fields dataframe_split, dataframe_records, instances, inputs" in doc["message"]


# --- client errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlflow", "builtin", "numpy-only"])
def test_missing_column_names_it(scorers, kind):
    w = scorers(kind)
    body = {"columns": COLUMNS[:3], "data": [r[:3] for r in ROWS]}
    r = w.post_json({"input_data": body})
    assert (r.status, r.json()) == (400, {"message": (
        "missing column 'petal_width' required by the model signature "
        "(the request has columns: sepal_length, sepal_width, petal_length)")})
    r = w.post_json({"dataframe_records": [{k: v for k, v in rec.items() if k != "sepal_width"} for rec in RECORDS]})
    assert r.status == 400
    assert r.json()["error_code"] == "BAD_REQUEST"
    assert "missing column 'sepal_width' required by the model signature" in r.json()["message"]


@pytest.mark.parametrize("bad, shown", [("abc", '"abc"'), (True, "true"), ([1], "a list"), ({"a": 1}, "an object")])
def test_wrong_type_names_column_and_type(scorers, bad, shown):
    data = [[5.1, 3.5, 1.4, 0.2], [5.1, bad, 1.4, 0.2]]
    r = scorers("builtin").post_json({"input_data": {"columns": COLUMNS, "data": data}})
    assert (r.status, r.json()) == (400, {
        "message": f"column 'sepal_width' (double), row 1: {shown} is not a valid double value"})
    r = scorers("mlflow").post_json({"dataframe_records": [dict(zip(COLUMNS, row)) for row in data]})
    assert (r.status, r.json()) == (400, {
        "error_code": "BAD_REQUEST",
        "message": f"column 'sepal_width' (double), row 1: {shown} is not a valid double value"})


def test_null_in_a_double_column_is_nan(scorers):
    # As pandas reads it: the model gets NaN and decides (LogisticRegression refuses NaN: a 500).
    r = scorers("builtin").post_json({"input_data": {"columns": COLUMNS, "data": [[5.1, None, 1.4, 0.2]]}})
    assert r.status == 500
    assert r.json()["message"].startswith("The model failed to predict: ValueError: Input X contains NaN")


def test_tensor_list_of_the_wrong_width(scorers):
    r = scorers("builtin").post_json({"input_data": [[1, 2, 3]]})
    assert r.status == 400
    assert r.json()["message"].startswith("row 0 has 3 values but the model signature has 4 columns")


@pytest.mark.parametrize("headers, body, status, doc", [
    ([("content-type", "text/plain")], b'{"input_data": []}', 415,
     {"message": "Expects Content-Type to be application/json"}),
    ([], b'{"input_data": []}', 415, {"message": "Expects Content-Type to be application/json"}),
    ([("content-type", "application/json; charset=utf-8")], b"[1, 2]", 400,
     {"message": "POST body should be a JSON dictionary."}),
    (JSON, b'"text"', 400, {"message": "POST body should be a JSON dictionary."}),
    (JSON, b"", 400, {"message": "POST body is empty. Expecting a JSON dictionary."}),
    (JSON, b"{bad", 400, {"message": "POST body could not be decoded as JSON: "
                                     "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"}),
    (JSON, b'{"data": [[1, 2, 3, 4]]}', 400, {"message": "A value is not provided for the 'input_data' parameter."}),
    (JSON, b'{"input_data": {"columns": ["a"], "data": [[1, 2]]}}', 400,
     {"message": "row 0 of 'data' has 2 values but there are 1 columns"}),
])
def test_request_errors(scorers, headers, body, status, doc):
    r = scorers("builtin").request("POST", headers=headers, body=body)
    assert (r.status, r.json(), r.content_type) == (status, doc, "application/json")
    assert r.header("x-ms-run-function-failed") == "False"


def test_methods(scorers):
    w = scorers("builtin")
    r = w.request("GET")
    assert (r.status, r.json()) == (405, {"message": "Method not allowed"})
    r = w.request("GET", "/invocations")
    assert (r.status, r.json()) == (405, {"error_code": "BAD_REQUEST", "message": "Method not allowed"})
    assert w.request("OPTIONS").status == 200
    assert w.request("GET", "/").body == b"Healthy"


# --- swagger ---------------------------------------------------------------------------------

@pytest.mark.parametrize("query, key", [("version=2", "definitions"), ("version=3", "components"), ("", "definitions"),
                                        ("version=3.1", "components")])
def test_swagger_from_signature(scorers, query, key):
    r = scorers("no-mlflow").request("GET", "/swagger.json", query)
    assert r.status == 200
    doc = r.json()
    schemas = doc["definitions"] if key == "definitions" else doc["components"]["schemas"]
    service_input = schemas["ServiceInput"]
    input_data = service_input["properties"]["input_data"]
    assert input_data["format"] == "pandas.DataFrame:split"
    assert input_data["properties"]["data"]["items"]["items"] == {"type": "number", "format": "double"}
    for c in COLUMNS:
        assert f"{c} (double)" in input_data["description"]
    # the example is the model's input_example.json (X.head(2)), in split orient with an index
    example = {"columns": COLUMNS, "index": [0, 1], "data": [[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2]]}
    assert service_input["example"] == {"input_data": example}
    assert schemas["ServiceOutput"]["type"] == "array"
    assert schemas["ServiceOutput"]["items"] == {"type": "integer", "format": "int64"}
    assert set(doc["paths"]) == {"/", "/score", "/swagger.json"}
    # and the example really scores
    r = scorers("no-mlflow").post_json(service_input["example"])
    assert (r.status, r.json()) == (200, [0, 0])


def test_user_swagger_file_still_wins(tmp_path):
    # The scorer's app root is the model folder (as the replica starts it): a swagger2.json there wins.
    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    (model / "swagger2.json").write_text('{"swagger": "2.0", "x-user": true}')
    w = worker_client.start_worker(SCORER, app_root=str(model), env={
        "SLUICE_MLFLOW_MODEL_PATH": str(model), "SLUICE_MLFLOW_LOADER": "builtin"})
    try:
        assert w.request("GET", "/swagger.json", "version=2").json() == {"swagger": "2.0", "x-user": True}
        schemas = w.request("GET", "/swagger.json", "version=3").json()["components"]["schemas"]
        assert schemas["ServiceInput"]["properties"]["input_data"]["format"] == "pandas.DataFrame:split"
    finally:
        w.stop()


# --- built-in loader == mlflow loader --------------------------------------------------------

def test_builtin_and_mlflow_loaders_agree(scorers):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = np.round(rng.uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], size=(60, 4)), 1).tolist()
    body = {"input_data": {"columns": COLUMNS, "data": rows}}
    answers = {kind: scorers(kind).post_json(body) for kind in ALL}
    for kind, r in answers.items():
        assert r.status == 200, (kind, r.body)
    first = answers["mlflow"].json()
    assert len(first) == 60 and set(first) == {0, 1, 2}
    for kind in ALL:
        assert answers[kind].json() == first, kind


# --- other models: tensor signature, no signature, failures ----------------------------------

@pytest.fixture(scope="module")
def extra_models(tmp_path_factory):
    """MLflow folders written here with mlflow: a tensor signature, no signature, an unfitted
    model (predict raises), and an unsupported flavor."""
    import pickle

    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression, LogisticRegression

    root = tmp_path_factory.mktemp("mlflow-models")
    x = np.array(ROWS * 3)
    y = np.array([0, 2] * 3)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    mlflow.sklearn.save_model(clf, str(root / "tensor"), serialization_format="cloudpickle",
                              signature=infer_signature(x, y))
    reg = LinearRegression().fit(x, x.sum(axis=1))
    mlflow.sklearn.save_model(reg, str(root / "nosig"), serialization_format="pickle")

    unfitted = root / "unfitted"
    unfitted.mkdir()
    with open(unfitted / "model.pkl", "wb") as f:
        pickle.dump(LogisticRegression(), f)
    (unfitted / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n"
        "  sklearn:\n    pickled_model: model.pkl\n    serialization_format: pickle\n")

    torch = root / "torch"
    torch.mkdir()
    (torch / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pytorch\n    data: data\n"
        "  pytorch:\n    model_data: data\n    pytorch_version: 2.5.0\n")
    return {name: str(root / name) for name in ("tensor", "nosig", "unfitted", "torch")}


@pytest.mark.parametrize("loader", ["auto", "builtin"])
def test_tensor_signature(extra_models, loader):
    w = start_scorer(extra_models["tensor"], env={"SLUICE_MLFLOW_LOADER": loader})
    try:
        assert (w.post_json({"input_data": ROWS}).json()) == LABELS
        assert (w.post_json({"input_data": {"anything": ROWS}}).json()) == LABELS   # one named tensor
        assert (w.post_json({"inputs": ROWS}).json()) == {"predictions": LABELS}
        assert (w.post_json({"instances": [[5, 3, 1, 0]]}).json()) == {"predictions": [0]}  # ints cast to float64
        r = w.post_json({"input_data": [[1, 2, 3]]})
        assert (r.status, r.json()) == (
            400, {"message": "input 'input' expects shape [-1, 4] but the data has shape [1, 3]"})
        r = w.post_json({"input_data": [[1, 2, 3, "x"]]})
        assert (r.status, r.json()) == (400, {"message": "input 'input': the values cannot be converted to float64"})
        r = w.post_json({"input_data": [[1, 2, 3, 4], [1, 2]]})
        assert r.status == 400 and "ragged" in r.json()["message"]
        doc = w.request("GET", "/swagger.json", "version=3").json()["components"]["schemas"]
        input_data = doc["ServiceInput"]["properties"]["input_data"]
        assert input_data["format"] == "numpy.ndarray"
        assert input_data["items"]["items"] == {"type": "number", "format": "double"}
    finally:
        w.stop()


@pytest.mark.parametrize("loader", ["auto", "builtin"])
def test_no_signature(extra_models, loader):
    w = start_scorer(extra_models["nosig"], env={"SLUICE_MLFLOW_LOADER": loader})
    try:
        r = w.post_json({"input_data": ROWS})
        assert r.status == 200
        assert r.json() == pytest.approx([sum(row) for row in ROWS])
        r = w.post_json({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": ROWS}})
        assert r.json()["predictions"] == pytest.approx([sum(row) for row in ROWS])
        schemas = w.request("GET", "/swagger.json").json()["definitions"]
        assert "input_data" in schemas["ServiceInput"]["properties"]
    finally:
        w.stop()


@pytest.mark.parametrize("loader", ["auto", "builtin"])
def test_prediction_failure_is_500(extra_models, loader):
    w = start_scorer(extra_models["unfitted"], env={"SLUICE_MLFLOW_LOADER": loader})
    try:
        r = w.post_json({"input_data": ROWS})
        assert r.status == 500
        assert r.json()["message"].startswith("The model failed to predict: NotFittedError: ")
        assert r.header("x-ms-run-function-failed") == "True"
        assert w.wait_output("Traceback (most recent call last)")
        r = w.post_json({"inputs": ROWS})
        assert r.status == 500 and r.json()["error_code"] == "INTERNAL_ERROR"
    finally:
        w.stop()


@pytest.mark.parametrize("env", [{"SLUICE_MLFLOW_LOADER": "builtin"}, "hide-mlflow"])
def test_unsupported_flavor_without_mlflow_fails_boot(extra_models, tmp_path, env):
    if env == "hide-mlflow":
        env = {"PYTHONPATH": _blocker(tmp_path, "mlflow")}
    w = start_scorer(extra_models["torch"], env=env, expect_ready=False)
    assert w.proc.wait(60) == 3
    assert w.wait_output("flavor(s) pytorch (python_function loader_module mlflow.pytorch) without mlflow")
    assert "Add mlflow (or mlflow-skinny) to the model's conda.yaml / requirements.txt" in w.stderr
    assert worker_client.READY not in w.stdout


def test_init_errors(tmp_path):
    blocked = _blocker(tmp_path / "b", "yaml")
    w = start_scorer(env={"PYTHONPATH": blocked, "SLUICE_MLFLOW_LOADER": "builtin"}, expect_ready=False)
    assert w.proc.wait(60) == 3
    assert w.wait_output("PyYAML is not installed in this environment and SLUICE_MLFLOW_MLMODEL")
    w = start_scorer(model_dir=str(tmp_path), expect_ready=False)
    assert w.proc.wait(60) == 3
    assert w.wait_output("is not an MLflow model folder")
    w = start_scorer(env={"SLUICE_MLFLOW_LOADER": "nope"}, expect_ready=False)
    assert w.proc.wait(60) == 3
    assert w.wait_output("SLUICE_MLFLOW_LOADER must be auto, mlflow or builtin")


def test_bare_python_imports_the_scorer(tmp_path):
    """python -S (no site-packages): the scorer module itself needs only the standard library; init
    fails on what the model needs (cloudpickle), with a clear message."""
    w = worker_client.start_worker(SCORER, python_flags=("-S",), expect_ready=False, env={
        "SLUICE_MLFLOW_MODEL_PATH": MODEL, "SLUICE_MLFLOW_MLMODEL": _mlmodel_json(MODEL)})
    assert w.proc.wait(60) == 3
    assert w.wait_output("the model was saved with cloudpickle, which is not installed in this environment")


_PLAIN_LISTS_CHECK = r"""
import json, sys
from sluice_worker import worker
worker.install_shims()
from sluice_worker import mlflow_score as ms
ms._optional = lambda name: None   # as if neither numpy nor pandas were installed

def bad(fn, *args):
    try:
        fn(*args)
    except ms.BadInput as ex:
        return ex.message
    raise AssertionError("no BadInput")

sig = ms.Signature({"signature": {"inputs": json.dumps([
    {"type": "long", "name": "a"}, {"type": "string", "name": "b"},
    {"type": "double", "name": "c", "required": False}])}})
tsig = ms.Signature({"signature": {"inputs": json.dumps([
    {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}])}})
print(json.dumps({
    "columns": ms.model_input(
        ms.parse_input_data({"columns": ["b", "a", "zz"], "data": [["x", 1, 0], ["y", 2.0, 0]]}), sig),
    "bad_long": bad(ms.model_input, ms.parse_input_data({"columns": ["a", "b"], "data": [[1.5, "x"]]}), sig),
    "tensor": ms.model_input(ms.Tensor([[1, 2], [3, 4]]), tsig),
    "bad_shape": bad(ms.model_input, ms.Tensor([[1, 2, 3]]), tsig),
    "ragged": bad(ms.model_input, ms.Tensor([[1, 2], [3]]), tsig),
    "numpy_imported": "numpy" in sys.modules,
}))
"""


def test_plain_lists_without_numpy_or_pandas():
    """Neither numpy nor pandas: the model gets plain lists (columns in signature order)."""
    p = subprocess.run([sys.executable, "-c", _PLAIN_LISTS_CHECK], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": worker_client.PYTHON_DIR})
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {
        "columns": [[1, "x"], [2, "y"]],
        "bad_long": "column 'a' (long), row 0: 1.5 is not a valid long value",
        "tensor": [[1.0, 2.0], [3.0, 4.0]],
        "bad_shape": "input 'input' expects shape [-1, 2] but the data has shape [1, 3]",
        "ragged": "input 'input': the nested lists are ragged (not a rectangular tensor)",
        "numpy_imported": False,
    }
