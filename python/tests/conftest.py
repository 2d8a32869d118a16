"""Fixtures for the sluice_worker tests.

Run with the dev venv:  $(bash scripts/python-env.sh | tail -1)/bin/python -m pytest python/tests
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import worker_client  # noqa: E402

SCRIPTS = os.path.join(HERE, "scripts")


def script_path(name):
    return os.path.join(SCRIPTS, name, "score.py")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """An AZUREML_MODEL_DIR laid out as Azure mounts a model registered from ``model/``:
    ``$AZUREML_MODEL_DIR/model/sklearn_regression_model.pkl`` (a tiny fitted LinearRegression)."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LinearRegression

    root = tmp_path_factory.mktemp("azureml-models") / "sklearn-regression" / "1"
    (root / "model").mkdir(parents=True)
    x = np.arange(40, dtype=float).reshape(4, 10)
    y = x.sum(axis=1)
    joblib.dump(LinearRegression().fit(x, y), root / "model" / "sklearn_regression_model.pkl")
    return str(root)


@pytest.fixture(scope="session")
def workers(model_dir):
    """``workers(name)``: a READY worker for scripts/<name>/score.py, started once per session."""
    started = {}

    def get(name, python_flags=()):
        key = (name, tuple(python_flags))
        if key not in started:
            started[key] = worker_client.start_worker(
                script_path(name), env={"AZUREML_MODEL_DIR": model_dir}, python_flags=python_flags
            )
        return started[key]

    yield get
    for w in started.values():
        w.stop()


@pytest.fixture
def start(model_dir):
    """Start a private worker (for tests that stop it or expect it to fail)."""
    procs = []

    def go(name_or_path, expect_ready=True, env=None, **kw):
        path = name_or_path if os.path.isabs(name_or_path) else script_path(name_or_path)
        full_env = {"AZUREML_MODEL_DIR": model_dir, **(env or {})}
        w = worker_client.start_worker(path, env=full_env, expect_ready=expect_ready, **kw)
        procs.append(w)
        return w

    yield go
    for w in procs:
        w.stop()
