#!/usr/bin/env python3
"""Generate Sluice's small test / example models (deterministic, no network).

Run with the dev venv:  "$(scripts/python-env.sh | tail -n1)/bin/python" scripts/gen_models.py

Writes (paths relative to the repository root):
  examples/iris/model_repository/iris/{config.pbtxt,1/model.onnx}
      StandardScaler + LogisticRegression on sklearn's bundled iris data (skl2onnx, opset 17,
      zipmap off).  input `input` FP32 [-1,4]; outputs `label` INT64 [-1], `probabilities` FP32 [-1,3].
  examples/iris/{request.json,expected.json}
      KServe v2 infer request for two iris rows and the onnxruntime (Python) outputs for it,
      written as a KServe v2 response body ({"model_name", "outputs": [...]}).
  testdata/models/lr20/model_repository/lr/{config.pbtxt,1/model.onnx}, testdata/models/lr20/v2_X.json
      Exactly the peer benchmark model of /work/shared/bench/peers/train.py (20 features, 3 classes),
      input `X` FP32 [-1,20]; outputs `label` INT64 [-1], `probabilities` FP32 [-1,3]; v2_X.json is
      the bench's request for row 0 (label 1).
  testdata/models/cnn/model_repository/cnn/{config.pbtxt,1/model.onnx}
      Small CNN written with onnx.helper: input `image` FP32 [N,1,28,28] -> Conv(8,3x3) -> Relu ->
      MaxPool(2x2) -> Flatten -> Gemm(1352->10) -> Softmax -> output `probs` FP32 [N,10].
  examples/iris-mlflow/model/  (MLmodel, model.onnx, ...) via mlflow.onnx.save_model
      The same iris pipeline with a single input `input` FP32 [-1,4] (fed from a DataFrame of the
      4 columns sepal_length, sepal_width, petal_length, petal_width) and ONE output `label`
      INT64 [-1]. The probabilities output is dropped on purpose: MLflow's onnx pyfunc turns a
      DataFrame prediction into a DataFrame of flattened outputs, which fails ("All arrays must be
      of the same length") when a model has a [N] and an [N,3] output.
  examples/iris-mlflow/{request.json,expected.json}
      Azure ML split-orient `input_data` body for the same two rows and the Azure MLflow no-code
      response (a bare records-orient JSON array, e.g. [{"label": 0}, {"label": 2}]).
"""
import json
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_ROWS = [0, 100]  # one setosa, one virginica


def p(*parts):
    return os.path.join(ROOT, *parts)


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_text(path, text):
    write_bytes(path, text.encode())


def write_json(path, obj, compact=False):
    if compact:
        write_text(path, json.dumps(obj, separators=(",", ":")))
    else:
        write_text(path, json.dumps(obj) + "\n")


def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def config_pbtxt(name, inputs, outputs):
    """Triton model config (text format) for an onnxruntime model without Triton batching."""

    def block(items):
        rows = []
        for n, dt, dims in items:
            rows.append("  {\n    name: \"%s\"\n    data_type: %s\n    dims: [ %s ]\n  }"
                        % (n, dt, ", ".join(str(d) for d in dims)))
        return ",\n".join(rows)

    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 0\n"
        f"input [\n{block(inputs)}\n]\n"
        f"output [\n{block(outputs)}\n]\n"
        "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n"
    )


def check_io(sess, inputs, outputs):
    got_in = [(i.name, i.type, i.shape) for i in sess.get_inputs()]
    got_out = [(o.name, o.type, o.shape) for o in sess.get_outputs()]
    assert [g[0] for g in got_in] == inputs, got_in
    assert [g[0] for g in got_out] == outputs, got_out
    return got_in, got_out


# --------------------------------------------------------------------------- iris
def train_iris():
    iris = load_iris()
    X = iris.data.astype(np.float32)
    y = iris.target
    pipe = Pipeline([
        ("scaler", StandardScaler()),
        ("lr", LogisticRegression(max_iter=1000, random_state=0)),
    ]).fit(X, y)
    return pipe, X, y


def iris_onnx(pipe):
    return to_onnx(
        pipe,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(pipe.named_steps["lr"]): {"zipmap": False}},
        target_opset=17,
    )


def gen_iris(pipe, X):
    onx = iris_onnx(pipe)
    ops = {n.op_type for n in onx.graph.node}
    assert "Scaler" in ops, ops
    path = p("examples/iris/model_repository/iris/1/model.onnx")
    write_bytes(path, onx.SerializeToString())
    write_text(p("examples/iris/model_repository/iris/config.pbtxt"), config_pbtxt(
        "iris",
        [("input", "TYPE_FP32", [-1, 4])],
        [("label", "TYPE_INT64", [-1]), ("probabilities", "TYPE_FP32", [-1, 3])],
    ))
    sess = session(path)
    print("iris io", check_io(sess, ["input"], ["label", "probabilities"]))

    rows = X[IRIS_ROWS]
    label, prob = sess.run(None, {"input": rows})
    assert (label == pipe.predict(rows)).all()
    assert np.allclose(prob, pipe.predict_proba(rows), atol=1e-5)
    acc = float((sess.run(None, {"input": X})[0] == pipe.predict(X)).mean())
    assert acc == 1.0
    write_json(p("examples/iris/request.json"), {"inputs": [{
        "name": "input", "shape": list(rows.shape), "datatype": "FP32",
        # float64 source values (5.1, not 5.099999904632568); FP32 parsing gives `rows` exactly.
        "data": load_iris().data[IRIS_ROWS].reshape(-1).tolist(),
    }]})
    write_json(p("examples/iris/expected.json"), {
        "model_name": "iris",
        "outputs": [
            {"name": "label", "shape": list(label.shape), "datatype": "INT64",
             "data": label.reshape(-1).tolist()},
            {"name": "probabilities", "shape": list(prob.shape), "datatype": "FP32",
             "data": prob.reshape(-1).tolist()},
        ],
    })
    print("iris rows", IRIS_ROWS, "label", label.tolist(), "probabilities", prob.tolist())
    return onx


# --------------------------------------------------------------------------- iris (MLflow)
def gen_iris_mlflow(pipe, X):
    import mlflow.onnx
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    onx = iris_onnx(pipe)
    # Keep only `label` (see the module docstring for why).
    keep = [o for o in onx.graph.output if o.name == "label"]
    del onx.graph.output[:]
    onx.graph.output.extend(keep)
    onnx.checker.check_model(onx)

    dst = p("examples/iris-mlflow/model")
    shutil.rmtree(dst, ignore_errors=True)
    signature = ModelSignature(
        # "double", not "float": JSON numbers parse to float64 and MLflow's schema enforcement
        # refuses float64 -> float32 ("Can not safely convert"); the onnx pyfunc casts
        # float64 inputs to float32 before running the model.
        inputs=Schema([ColSpec("double", c) for c in IRIS_COLUMNS]),
        outputs=Schema([ColSpec("long", "label")]),
    )
    mlflow.onnx.save_model(
        onx, dst, signature=signature,
        onnx_execution_providers=["CPUExecutionProvider"],
        save_as_external_data=False,
        pip_requirements=["mlflow", "onnx", "onnxruntime"],
    )
    # Drop volatile metadata (timestamps, uuids) so regenerating gives identical files;
    # everything else stays exactly as mlflow wrote it.
    mlmodel = os.path.join(dst, "MLmodel")
    with open(mlmodel) as f:
        lines = [ln for ln in f if not ln.startswith(("utc_time_created:", "model_uuid:"))]
    with open(mlmodel, "w") as f:
        f.writelines(lines)

    rows = X[IRIS_ROWS]
    body = {"input_data": {"columns": IRIS_COLUMNS, "index": list(range(len(IRIS_ROWS))),
                           "data": load_iris().data[IRIS_ROWS].tolist()}}
    write_json(p("examples/iris-mlflow/request.json"), body)

    import mlflow.pyfunc
    model = mlflow.pyfunc.load_model(dst)
    import io
    df = pd.read_json(io.StringIO(json.dumps(body["input_data"])), orient="split")
    pred = model.predict(df)
    assert list(pred.columns) == ["label"], pred
    expected = json.loads(pred.to_json(orient="records"))
    assert [r["label"] for r in expected] == pipe.predict(rows).tolist()
    write_json(p("examples/iris-mlflow/expected.json"), expected)
    print("iris-mlflow expected", expected)


# --------------------------------------------------------------------------- lr20 (bench peer)
def gen_lr20():
    # Mirrors /work/shared/bench/peers/train.py exactly.
    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10,
                               n_classes=3, random_state=0)
    X = X.astype(np.float32)
    m = LogisticRegression(max_iter=1000).fit(X, y)
    onx = to_onnx(m, X[:1], options={id(m): {"zipmap": False}}, target_opset=17)
    base = p("testdata/models/lr20")
    path = os.path.join(base, "model_repository/lr/1/model.onnx")
    write_bytes(path, onx.SerializeToString())
    write_text(os.path.join(base, "model_repository/lr/config.pbtxt"), config_pbtxt(
        "lr",
        [("X", "TYPE_FP32", [-1, 20])],
        [("label", "TYPE_INT64", [-1]), ("probabilities", "TYPE_FP32", [-1, 3])],
    ))
    sess = session(path)
    print("lr20 io", check_io(sess, ["X"], ["label", "probabilities"]))
    row = X[:1]
    lab, prob = sess.run(None, {"X": row})
    assert int(lab[0]) == int(m.predict(row)[0]) == 1, lab
    # Same body as make_payloads.py's v2_X.json.
    write_json(os.path.join(base, "v2_X.json"), {"inputs": [{
        "name": "X", "shape": [1, row.shape[1]], "datatype": "FP32", "data": row[0].tolist()}]},
        compact=True)
    print("lr20 acc", round(m.score(X, y), 3), "row0 label", int(lab[0]), "probs", prob.tolist())


# --------------------------------------------------------------------------- cnn
def gen_cnn():
    rs = np.random.RandomState(0)
    conv_w = (rs.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32)
    conv_b = (rs.standard_normal(8) * 0.1).astype(np.float32)
    fc_w = (rs.standard_normal((10, 8 * 13 * 13)) * 0.05).astype(np.float32)  # transB=1
    fc_b = (rs.standard_normal(10) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(conv_w, "conv_w"), (conv_b, "conv_b"), (fc_w, "fc_w"), (fc_b, "fc_b")]]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="sluice-gen_models", ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    path = p("testdata/models/cnn/model_repository/cnn/1/model.onnx")
    write_bytes(path, model.SerializeToString())
    write_text(p("testdata/models/cnn/model_repository/cnn/config.pbtxt"), config_pbtxt(
        "cnn", [("image", "TYPE_FP32", [-1, 1, 28, 28])], [("probs", "TYPE_FP32", [-1, 10])]))
    sess = session(path)
    print("cnn io", check_io(sess, ["image"], ["probs"]))
    x = np.random.RandomState(1).random_sample((3, 1, 28, 28)).astype(np.float32)
    (probs,) = sess.run(None, {"image": x})
    # numpy reference
    n = x.shape[0]
    cols = np.stack([x[:, 0, i:i + 26, j:j + 26] for i in range(3) for j in range(3)], axis=-1)
    conv = np.einsum("nhwk,ck->nchw", cols, conv_w.reshape(8, 9)) + conv_b[None, :, None, None]
    relu = np.maximum(conv, 0)
    pool = relu[:, :, :26, :26].reshape(n, 8, 13, 2, 13, 2).max(axis=(3, 5))
    logits = pool.reshape(n, -1) @ fc_w.T + fc_b
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    assert probs.shape == (3, 10) and np.allclose(probs, ref, atol=1e-5), np.abs(probs - ref).max()
    print("cnn ok, argmax", probs.argmax(1).tolist())


def main():
    pipe, X, _ = train_iris()
    gen_iris(pipe, X)
    gen_lr20()
    gen_cnn()
    gen_iris_mlflow(pipe, X)
    big = []
    for d in ["examples/iris", "examples/iris-mlflow", "testdata/models"]:
        for dp, _, fs in os.walk(p(d)):
            for f in fs:
                if os.path.getsize(os.path.join(dp, f)) >= 100 * 1024:
                    big.append(os.path.join(dp, f))
    assert not big, f"generated files over 100 KB: {big}"
    print("done")


if __name__ == "__main__":
    sys.exit(main())
