#!/usr/bin/env python3
"""Check a Sluice endpoint with NVIDIA's own Triton HTTP client (tritonclient.http).

Usage (run with the dev venv from scripts/python-env.sh):

    VENV_PYTHON tests/python/check_tritonclient.py \
        --url 127.0.0.1:PORT/endpoints/iris-ep --key KEY \
        --model iris --repo examples/iris/model_repository

What it checks, each call sending `Authorization: Bearer KEY` via `headers=`:
  * is_server_live() and is_model_ready(MODEL) are true;
  * get_model_metadata(MODEL) lists the model's inputs and outputs with the names, datatypes
    and ranks of the ONNX file in --repo (MODEL/<highest version>/model.onnx);
  * infer() with random float32 inputs for several batch sizes, with the JSON tensor encoding
    and with the binary tensor extension (tritonclient's default), requesting the outputs
    explicitly and implicitly: every output must match onnxruntime in Python on the same file
    (integer outputs equal, float outputs allclose with atol=rtol=1e-5);
  * infer() without the key is refused (HTTP 401/403) unless --no-auth-check.
Prints one line per check, then `N passed, M failed`; exits 0 only if nothing failed.

Base path: tritonclient.http.InferenceServerClient supports a path after host:port natively.
In tritonclient 2.73 (tritonclient/http/_client.py) the constructor does
`self._parsed_url = URL(scheme + url)` (geventhttpclient.URL) and
`self._base_uri = self._parsed_url.request_uri.rstrip("/")`, and `_get`/`_post` send
`self._base_uri + "/" + "v2/..."`. So url="127.0.0.1:PORT/endpoints/iris-ep" sends requests to
http://127.0.0.1:PORT/endpoints/iris-ep/v2/health/live, .../v2/models/iris/infer and so on; no
subclass or wrapper is needed. The script asserts this (client._base_uri) at start-up so a
tritonclient that stops doing it fails loudly instead of hitting the wrong URLs.
"""
import argparse
import os
import sys
import traceback

import numpy as np

ONNX_TO_V2 = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
    "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
    "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report every failure and keep going
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            if os.environ.get("CHECK_VERBOSE"):
                traceback.print_exc()
        else:
            self.passed += 1
            print(f"ok   {name}")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True,
                    help="host:port[/base/path], no scheme, e.g. 127.0.0.1:8080/endpoints/iris-ep")
    ap.add_argument("--key", required=True, help="endpoint key, sent as 'Authorization: Bearer KEY'")
    ap.add_argument("--model", required=True, help="model name, e.g. iris")
    ap.add_argument("--repo", required=True, help="Triton model repository holding MODEL/<v>/model.onnx")
    ap.add_argument("--batch-sizes", default="1,2,7,32",
                    help="comma-separated batch sizes to infer (default 1,2,7,32)")
    ap.add_argument("--modes", default="json,binary",
                    help="tensor encodings to test: json, binary or both (default json,binary)")
    ap.add_argument("--no-auth-check", action="store_true",
                    help="skip the check that a request without the key is refused")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    args = ap.parse_args(argv)
    if "://" in args.url:
        ap.error("--url must not include the scheme (tritonclient adds http://)")
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        ap.error("--batch-sizes must be comma-separated integers")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        ap.error("--batch-sizes must be positive integers")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in ("json", "binary") for m in args.modes):
        ap.error("--modes must be a comma-separated subset of json,binary")
    return args


def model_file(repo, model):
    d = os.path.join(repo, model)
    versions = sorted((int(v) for v in os.listdir(d) if v.isdigit()), reverse=True) if os.path.isdir(d) else []
    for v in versions:
        f = os.path.join(d, str(v), "model.onnx")
        if os.path.isfile(f):
            return f
    raise SystemExit(f"error: no {d}/<version>/model.onnx found")


def main(argv=None):
    args = parse_args(argv)
    import onnxruntime as ort
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    path = model_file(args.repo, args.model)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ins, outs = sess.get_inputs(), sess.get_outputs()
    headers = {"Authorization": f"Bearer {args.key}"}

    client = httpclient.InferenceServerClient(
        url=args.url, connection_timeout=args.timeout, network_timeout=args.timeout)
    want_base = ("/" + args.url.split("/", 1)[1]).rstrip("/") if "/" in args.url else ""
    if getattr(client, "_base_uri", None) != want_base:
        raise SystemExit(f"error: this tritonclient does not keep the base path of --url "
                         f"(base_uri={getattr(client, '_base_uri', None)!r}, want {want_base!r})")
    print(f"server http://{args.url} model {args.model} file {path}")

    c = Checks()

    def live():
        assert client.is_server_live(headers=headers), "is_server_live() returned False"

    def ready():
        assert client.is_model_ready(args.model, headers=headers), \
            f"is_model_ready({args.model!r}) returned False"

    def metadata():
        md = client.get_model_metadata(args.model, headers=headers)
        assert md.get("name") == args.model, f"metadata name {md.get('name')!r} != {args.model!r}: {md}"
        for kind, spec in (("inputs", ins), ("outputs", outs)):
            got = {t["name"]: t for t in md.get(kind, [])}
            want = [t.name for t in spec]
            assert sorted(got) == sorted(want), f"metadata {kind} {sorted(got)} != {sorted(want)}"
            for t in spec:
                g = got[t.name]
                dt = ONNX_TO_V2.get(t.type)
                assert g.get("datatype") == dt, f"{kind} {t.name}: datatype {g.get('datatype')} != {dt}"
                assert len(g.get("shape", [])) == len(t.shape), \
                    f"{kind} {t.name}: shape {g.get('shape')} has not the rank of {t.shape}"
                for gd, od in zip(g["shape"], t.shape):
                    if isinstance(od, int):
                        assert gd == od, f"{kind} {t.name}: shape {g['shape']} != {t.shape}"

    c.run("is_server_live", live)
    c.run(f"is_model_ready({args.model})", ready)
    c.run(f"get_model_metadata({args.model})", metadata)

    rng = np.random.RandomState(args.seed)

    def make_inputs(n):
        feed = {}
        for t in ins:
            if t.type != "tensor(float)":
                raise SystemExit(f"error: input {t.name} is {t.type}; only float32 inputs are supported")
            shape = [n if i == 0 else (d if isinstance(d, int) else 1) for i, d in enumerate(t.shape)]
            feed[t.name] = (rng.standard_normal(shape) * 2.0 + 3.0).astype(np.float32)
        return feed

    def infer_check(n, mode, explicit_outputs, h=headers):
        binary = mode == "binary"
        feed = make_inputs(n)
        reqs = []
        for name, x in feed.items():
            i = httpclient.InferInput(name, list(x.shape), "FP32")
            i.set_data_from_numpy(x, binary_data=binary)
            reqs.append(i)
        outputs = [httpclient.InferRequestedOutput(o.name, binary_data=binary) for o in outs] \
            if explicit_outputs else None
        res = client.infer(args.model, reqs, outputs=outputs, headers=h)
        want = sess.run(None, feed)
        for o, w in zip(outs, want):
            got = res.as_numpy(o.name)
            assert got is not None, f"output {o.name} missing from response {res.get_response()}"
            assert tuple(got.shape) == tuple(w.shape), f"{o.name}: shape {got.shape} != {w.shape}"
            if np.issubdtype(w.dtype, np.floating):
                assert np.allclose(got, w, rtol=1e-5, atol=1e-5), \
                    f"{o.name}: max abs diff {np.abs(got.astype(np.float64) - w).max()}"
            else:
                assert np.array_equal(got, w), f"{o.name}: {got.tolist()} != {w.tolist()}"

    for mode in args.modes:
        for n in args.batch_sizes:
            c.run(f"infer {mode} batch={n}", lambda n=n, mode=mode: infer_check(n, mode, True))
        c.run(f"infer {mode} batch={args.batch_sizes[-1]} outputs=default",
              lambda mode=mode: infer_check(args.batch_sizes[-1], mode, False))

    if not args.no_auth_check:
        def refused():
            try:
                infer_check(1, args.modes[0], True, h={})
            except InferenceServerException as e:
                st = str(e.status())
                assert st in ("401", "403") or "401" in str(e) or "403" in str(e), \
                    f"expected HTTP 401/403, got status {e.status()}: {e}"
            else:
                raise AssertionError("infer without the key succeeded")
        c.run("infer without key is refused", refused)

    client.close()
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
