import json


def init():
    print("headers_plain init")


def run(raw_data, request_headers):
    print("headers_plain run", len(raw_data))
    if raw_data == "all-headers":
        return request_headers
    return {
        "raw": raw_data,
        "custom": request_headers.get("X-Custom-Header"),
        "ctype": request_headers.get("Content-Type"),
        "repeated": request_headers.get("X-Repeated"),
        "names": sorted(k for k in request_headers if k.startswith("X-")),
    }
