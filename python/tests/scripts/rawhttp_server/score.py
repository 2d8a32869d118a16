# Same as rawhttp_contrib, through the azureml_inference_server_http.api import path.
from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    if request.args.get("mode") == "fail":
        return AMLResponse({"error": "nope"}, 502, json_str=True)
    body = request.get_data()
    return AMLResponse(body[::-1], 200, {"Content-Type": "application/octet-stream", "X-Len": str(len(body))})
