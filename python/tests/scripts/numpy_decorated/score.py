# Contract §9a: decorated run(data, k=5) with numpy + standard parameter types.
import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0]])))
@input_schema("k", StandardPythonParameterType(1))
@output_schema(StandardPythonParameterType({"sum": [3.0]}))
def run(data, k=5):
    assert isinstance(data, np.ndarray)
    return {"sum": (data.sum(axis=1) * k).tolist()}
