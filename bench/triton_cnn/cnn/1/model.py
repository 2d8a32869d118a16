# Triton Python backend model for bench/run.sh's triton-python-cnn row: runs model.onnx (next to
# this file) with onnxruntime on one thread, and, like the kit's lr model.py, runs the requests that
# dynamic batching hands over as one batch.
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        xs = [pb_utils.get_input_tensor_by_name(r, "image").as_numpy() for r in requests]
        sizes = [x.shape[0] for x in xs]
        (probs,) = self.sess.run(["probs"], {"image": np.concatenate(xs).astype(np.float32, copy=False)})
        out, i = [], 0
        for n in sizes:
            out.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("probs", probs[i:i + n])]))
            i += n
        return out
