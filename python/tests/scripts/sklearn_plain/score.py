# The azureml-examples canonical scoring script (cli/endpoints/online/model-1/onlinescoring/score.py),
# rewritten: load a pickled scikit-learn model from AZUREML_MODEL_DIR in init(), predict in run().
import json
import logging
import os

import joblib

model = None


def init():
    global model
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model/sklearn_regression_model.pkl")
    model = joblib.load(model_path)
    logging.info("Init complete")


def run(raw_data):
    logging.info("model 1: request received")
    data = json.loads(raw_data)["data"]
    result = model.predict(data)
    logging.info("Request processed")
    return result.tolist()
