"""Batch scoring script in Azure ML's style (azureml-examples' batch_driver.py): init() loads the
model once per worker; run(mini_batch) gets a list of CSV file paths and returns a DataFrame, whose
rows the deployment appends (space-separated, no header) to predictions.csv."""
import glob
import logging
import os
from typing import List

import joblib
import pandas as pd

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


def init():
    global model
    # AZUREML_MODEL_DIR is the registered model's folder; the model file sits below it
    # (model/sklearn_iris.joblib for a model registered from the folder model/).
    model_dir = os.environ["AZUREML_MODEL_DIR"]
    model_file = sorted(glob.glob(os.path.join(model_dir, "**", "*.joblib"), recursive=True))[0]
    model = joblib.load(model_file)
    logging.info("loaded %s", model_file)


def run(mini_batch: List[str]) -> pd.DataFrame:
    print(f"run method start: {__file__}, run({len(mini_batch)} files)")
    results = []
    for file_path in mini_batch:
        data = pd.read_csv(file_path)
        predictions = model.predict(data[FEATURES].to_numpy())
        results.append(
            pd.DataFrame(
                {
                    "file": os.path.basename(file_path),
                    "row": range(len(data)),
                    "class": predictions,
                    "label": [CLASSES[p] for p in predictions],
                }
            )
        )
    return pd.concat(results, ignore_index=True)
