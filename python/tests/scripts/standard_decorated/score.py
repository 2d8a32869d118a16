from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("text", StandardPythonParameterType("hello"))
@input_schema("options", StandardPythonParameterType({"upper": True, "repeat": 1}))
@output_schema(StandardPythonParameterType(["HELLO"]))
def run(text, options, request_headers):
    out = text.upper() if options.get("upper") else text
    return [out] * int(options.get("repeat", 1)) + [request_headers.get("X-Tag", "")]
