"""A model server of the user's own, as in Azure ML's "custom container" examples (TF Serving's
half_plus_two): it listens on $PORT and serves TF Serving's REST routes. Standard library only.

    GET  /v1/models/half_plus_two           liveness and readiness
    POST /v1/models/half_plus_two:predict   {"instances": [1.0, 2.0]} -> {"predictions": [2.5, 3.0]}
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_DIR = os.environ.get("AZUREML_MODEL_DIR", ".")
with open(os.path.join(MODEL_DIR, "model", "half_plus_two.json")) as f:
    PARAMS = json.load(f)


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/models/half_plus_two":
            self._send(200, {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})
        else:
            self._send(404, {"error": "not found: " + self.path})

    def do_POST(self):
        if self.path != "/v1/models/half_plus_two:predict":
            return self._send(404, {"error": "not found: " + self.path})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            xs = [float(x) for x in body["instances"]]
        except (ValueError, KeyError, TypeError) as e:
            return self._send(400, {"error": "expected {\"instances\": [numbers]}: %s" % e})
        self._send(200, {"predictions": [PARAMS["slope"] * x + PARAMS["intercept"] for x in xs]})

    def log_message(self, fmt, *args):
        sys.stderr.write("half_plus_two: " + fmt % args + "\n")


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8501"))
    print("half_plus_two serving on port %d" % port, flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
