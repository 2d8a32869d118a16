"""Writes an MLflow model folder (sklearn flavor) for the no-code MLflow scorer tests.

    python scripts/gen_mlflow_sklearn.py OUT_DIR        (run with the dev venv's Python)

A scikit-learn LogisticRegression trained on iris from a pandas DataFrame with the columns
sepal_length, sepal_width, petal_length, petal_width, saved with ``mlflow.sklearn.save_model``
(mlflow-skinny) with ``signature=infer_signature(X, y)``, ``input_example=X.head(2)`` and the
``cloudpickle`` serialization format (mlflow 3 would otherwise pick ``skops``).

Afterwards ``conda.yaml``, ``requirements.txt`` and ``python_env.yaml`` are rewritten to list only
python, pip, scikit-learn, numpy, pandas and cloudpickle, pinned to the versions installed here:
in particular any ``mlflow``/``mlflow-skinny`` requirement is dropped, so that an environment built
from them has no mlflow and the worker's built-in sklearn loader is the one that serves the model.
Every change is printed.

OUT_DIR must not exist, be empty, or hold an earlier MLflow model (a folder with ``MLmodel``),
which is replaced. The checked-in copy is testdata/models/mlflow-sklearn/.
"""

import difflib
import os
import platform
import shutil
import sys
import tempfile
from importlib.metadata import version

KEEP = ["cloudpickle", "numpy", "pandas", "scikit-learn"]  # sorted, as MLflow writes them
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def pins():
    return {name: version(name) for name in KEEP}


def _requirement_name(line):
    name = line.strip()
    for sep in ("==", ">=", "<=", "~=", "!=", ">", "<", "[", ";", " "):
        name = name.split(sep, 1)[0]
    return name.strip().lower().replace("_", "-")


def _show_change(path, old, new):
    name = os.path.basename(path)
    if old == new:
        print(f"{name}: unchanged")
        return
    print(f"{name}: rewritten")
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), f"{name} (as MLflow wrote it)", name, lineterm="")
    for line in diff:
        print(f"  {line}")


def _rewrite(path, new):
    old = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    _show_change(path, old, new)
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def fix_environment_files(model_dir):
    py = platform.python_version()
    versions = pins()
    requirements = [f"{name}=={versions[name]}" for name in KEEP]

    # requirements.txt: keep nothing MLflow wrote except our pins (and warn about dropped lines).
    req_path = os.path.join(model_dir, "requirements.txt")
    if os.path.exists(req_path):
        with open(req_path, encoding="utf-8") as f:
            for line in f:
                name = _requirement_name(line)
                if name and not line.lstrip().startswith("#") and name not in KEEP and not name.startswith("mlflow"):
                    print(f"note: dropping requirement {line.strip()!r} (not needed by the model)")
    _rewrite(req_path, "".join(f"{r}\n" for r in requirements))

    conda = (
        "channels:\n"
        "- conda-forge\n"
        "dependencies:\n"
        f"- python={py}\n"
        f"- pip=={version('pip')}\n"
        "- pip:\n"
        + "".join(f"  - {r}\n" for r in requirements)
        + "name: mlflow-env\n"
    )
    _rewrite(os.path.join(model_dir, "conda.yaml"), conda)

    python_env = (
        f"python: {py}\n"
        "build_dependencies:\n"
        f"- pip=={version('pip')}\n"
        "dependencies:\n"
        "- -r requirements.txt\n"
    )
    _rewrite(os.path.join(model_dir, "python_env.yaml"), python_env)


def train():
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    X = pd.DataFrame(iris.data, columns=COLUMNS)
    y = iris.target
    model = LogisticRegression(max_iter=500, random_state=0).fit(X, y)
    return model, X, y


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = os.path.abspath(argv[0])
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, "MLmodel")):
        print(f"{out} is not empty and holds no MLmodel: refusing to replace it", file=sys.stderr)
        return 1

    import mlflow.sklearn
    from mlflow.models import infer_signature

    model, X, y = train()
    signature = infer_signature(X, y)
    with tempfile.TemporaryDirectory(prefix="gen-mlflow-sklearn-") as tmp:
        staged = os.path.join(tmp, "model")
        mlflow.sklearn.save_model(
            model,
            staged,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,  # not skops (3.x default)
            signature=signature,
            input_example=X.head(2),
        )
        fix_environment_files(staged)
        if os.path.isdir(out):
            shutil.rmtree(out)
        shutil.copytree(staged, out)

    sample = X.iloc[[0, 100]]
    print(f"wrote {out}")
    for name in sorted(os.listdir(out)):
        print(f"  {name} ({os.path.getsize(os.path.join(out, name))} bytes)")
    print("predict(rows 0 and 100):", model.predict(sample).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
