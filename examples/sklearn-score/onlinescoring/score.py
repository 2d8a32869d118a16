"""Scoring script in Azure ML's contract, as in azureml-examples' model-1/onlinescoring/score.py:
init() loads the model once per worker; run() gets the raw request body as a string."""
import json
import logging
import os

import joblib
import numpy


def init():
    global model
    # AZUREML_MODEL_DIR is the registered model's folder; its basename (model/) is kept below it.
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model", "sklearn_iris.joblib")
    model = joblib.load(model_path)
    logging.info("init complete")


def run(raw_data):
    data = numpy.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    logging.info("request processed")
    return result.tolist()
