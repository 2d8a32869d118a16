"""MLServer custom runtime for the CNN rows of bench/run.sh: the kit's onnx_runtime.OnnxModel
(../shared/bench/peers/mlserver/lr-onnx), except that the input keeps its shape ([N, 1, 28, 28]
images; the kit's runtime flattens to [-1, features], which only fits the 20-feature classifier)."""
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(uri, so, providers=["CPUExecutionProvider"])
        self._in = self._sess.get_inputs()[0].name
        self._outs = [o.name for o in self._sess.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        res = self._sess.run(None, {self._in: x})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(name=n, payload=r) for n, r in zip(self._outs, res)],
        )
