"""KServe peer for the CNN rows of bench/run.sh: the kit's kserve_server.py (sklearnserver-style
ModelServer, loopback only, no gRPC) with its ONNX backend, except that every model output is
returned under its own name (the kit's predict asks for the lr model's "label" output).

    python kserve_cnn.py --kit-server ../shared/bench/peers/kserve_server.py \
        --model_name cnn --model_dir DIR --http_port 8090 --backend onnx
"""
import importlib.util
import sys
import uuid

import numpy as np


def main():
    argv = sys.argv[1:]
    i = argv.index("--kit-server")
    path = argv[i + 1]
    sys.argv = [sys.argv[0], *argv[:i], *argv[i + 2:]]
    spec = importlib.util.spec_from_file_location("kit_kserve_server", path)
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)  # the kit's module only defines things (its main is behind __name__)

    from kserve.protocol.infer_type import InferOutput, InferResponse
    from kserve.utils.utils import get_predict_input

    class CnnModel(kit.PeerModel):
        def predict(self, payload, headers=None, response_headers=None):
            x = np.asarray(get_predict_input(payload), dtype=np.float32)
            names = [o.name for o in self.sess.get_outputs()]
            outs = self.sess.run(names, {self.in_name: x})
            outputs = []
            for name, y in zip(names, outs):
                o = InferOutput(name=name, shape=list(y.shape), datatype="FP32")
                o.set_data_from_numpy(y.astype(np.float32, copy=False))
                outputs.append(o)
            return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id or str(uuid.uuid4()))

    parser = kit.argparse.ArgumentParser(parents=[kit.kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--backend", default="onnx", choices=["onnx"])
    args, _ = parser.parse_known_args()
    model = CnnModel(args.model_name, args.model_dir, args.backend)
    kit.kserve.ModelServer(http_port=args.http_port, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
