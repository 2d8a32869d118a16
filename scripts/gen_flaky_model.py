"""Writes testdata/models/flaky: an ONNX model named `iris` (same input and outputs as the iris
example) that fails at run time for about 20 % of requests, chosen by its own RandomUniform.

It exists to test what a platform does with a deployment that returns errors: rollouts that
must roll back, mirrors whose failures must not reach live clients. The failure is real: an
`If` branch gathers index 100 of a 4-column input, which ONNX Runtime rejects while running.

Run with the dev venv: $(bash scripts/python-env.sh | tail -1)/bin/python scripts/gen_flaky_model.py
"""

import os
import numpy as np
import onnx
from onnx import TensorProto, helper

FAIL_SHARE = 0.2
ROOT = os.path.join(os.path.dirname(__file__), "..", "testdata", "models", "flaky", "model_repository", "iris")


def branch(name, index):
    """A subgraph gathering column `index` of the outer `input` (out of range fails)."""
    idx = helper.make_tensor(f"{name}_idx", TensorProto.INT64, [1], [index])
    node = helper.make_node("Gather", ["input", f"{name}_idx_c"], [f"{name}_out"], axis=1)
    const = helper.make_node("Constant", [], [f"{name}_idx_c"], value=idx)
    out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [None, 1])
    return helper.make_graph([const, node], name, [], [out])


def main():
    rng = np.random.RandomState(0)
    w = rng.randn(4, 3).astype(np.float32)
    nodes = [
        helper.make_node("RandomUniform", [], ["r"], shape=[1], low=0.0, high=1.0, dtype=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["share"], value=helper.make_tensor("share_v", TensorProto.FLOAT, [1], [FAIL_SHARE])),
        helper.make_node("Less", ["r", "share"], ["fail1"]),
        helper.make_node("Squeeze", ["fail1"], ["fail"]),
        helper.make_node("If", ["fail"], ["picked"], then_branch=branch("boom", 100), else_branch=branch("fine", 0)),
        helper.make_node("Constant", [], ["w"], value=helper.make_tensor("w_v", TensorProto.FLOAT, [4, 3], w.flatten())),
        helper.make_node("MatMul", ["input", "w"], ["logits0"]),
        # Adding 0 * picked makes the result depend on the If, so it always runs.
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("zero_v", TensorProto.FLOAT, [1], [0.0])),
        helper.make_node("Mul", ["picked", "zero"], ["nothing"]),
        helper.make_node("Add", ["logits0", "nothing"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "flaky_iris",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sluice-tests")
    onnx.checker.check_model(model)
    os.makedirs(os.path.join(ROOT, "1"), exist_ok=True)
    onnx.save(model, os.path.join(ROOT, "1", "model.onnx"))

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # the failures are the point; don't print each one
    sess = ort.InferenceSession(os.path.join(ROOT, "1", "model.onnx"), options)
    x = np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)
    failures = 0
    for _ in range(2000):
        try:
            sess.run(None, {"input": x})
        except Exception:
            failures += 1
    print(f"flaky model fails {failures / 2000:.1%} of runs")


if __name__ == "__main__":
    main()
