# The azureml-examples inference-schema sample in its pandas form.
import pandas as pd
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema

sample = pd.DataFrame(
    {"sepal_length": [7.2], "sepal_width": [3.2], "petal_length": [6.0], "petal_width": [1.8]}
)


def init():
    pass


@input_schema("iris", PandasParameterType(sample))
@output_schema(StandardPythonParameterType([0.0]))
def run(iris):
    assert isinstance(iris, pd.DataFrame)
    return (iris["sepal_length"] + iris["petal_length"]).tolist()
