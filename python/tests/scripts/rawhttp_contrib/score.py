import json

from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse

PNG = b"\x89PNG\r\n\x1a\n\x00\x01\x02\xff"


def init():
    pass


@rawhttp
def run(request):
    if request.method == "GET":
        return AMLResponse(
            PNG, 201, {"Content-Type": "image/png", "X-Custom": "a, b"}
        )
    if request.method == "OPTIONS":
        return AMLResponse("", 204)
    if request.path == "/score" and request.args.get("mode") == "json":
        return AMLResponse({"echo": request.get_json(), "args": request.args.getlist("v")}, 202, json_str=True)
    if request.args.get("mode") == "fail":
        return AMLResponse("service unavailable", 503)
    if request.args.get("mode") == "none":
        return AMLResponse(None, 200)
    if request.args.get("mode") == "raise":
        raise RuntimeError("boom")
    if request.args.get("mode") == "files":
        return {
            "files": {k: [f.filename, f.read().decode(), f.mimetype] for k, f in request.files.items()},
            "form": request.form.to_dict(),
            "values": request.values.to_dict(),
        }
    if request.args.get("mode") == "form":
        return {"form": request.form.to_dict(), "data": request.data.decode()}
    return {
        "method": request.method,
        "path": request.path,
        "full_path": request.full_path,
        "data": request.get_data(as_text=True),
        "len": len(request.data),
        "ctype": request.headers.get("Content-Type"),
        "custom": request.headers.get("x-custom-header"),
        "args": request.args.to_dict(),
        "is_json": request.is_json,
    }
