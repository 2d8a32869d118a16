"""Writes examples/batch-sklearn/data/iris-00.csv ... iris-09.csv: small iris-like CSV files for
the batch example, the same bytes on every run (standard library only, a seeded generator).

With pandas, joblib and scikit-learn importable (the dev venv), it also writes
examples/batch-sklearn/expected-predictions.csv: what the deployment's append_row output must be
when the files are scored in name order. It runs code/batch_driver.py on the model at
examples/sklearn-score/model in mini-batches of settings.mini_batch_size (3) and turns each
DataFrame into lines with the batch worker's own formatting (sluice_worker.batch).

    python scripts/gen_batch_data.py
"""
import importlib.util
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
EXAMPLE = os.path.join(REPO, "examples", "batch-sklearn")
DATA = os.path.join(EXAMPLE, "data")
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# Per-class mean and standard deviation of the four features (Fisher's iris data, rounded).
CLASSES = [
    ((5.0, 3.4, 1.5, 0.2), (0.35, 0.38, 0.17, 0.10)),
    ((5.9, 2.8, 4.3, 1.3), (0.50, 0.30, 0.45, 0.20)),
    ((6.6, 3.0, 5.6, 2.0), (0.60, 0.30, 0.55, 0.27)),
]
FILES = 10
MINI_BATCH_SIZE = 3


def write_data():
    rng = random.Random(20261125)
    os.makedirs(DATA, exist_ok=True)
    paths = []
    for i in range(FILES):
        lines = [",".join(FEATURES)]
        for _ in range(rng.randint(4, 8)):
            mean, sd = CLASSES[rng.randrange(len(CLASSES))]
            values = [max(0.1, round(rng.gauss(m, s), 1)) for m, s in zip(mean, sd)]
            lines.append(",".join(f"{v:.1f}" for v in values))
        path = os.path.join(DATA, f"iris-{i:02d}.csv")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def write_expected(paths):
    try:
        import joblib  # noqa: F401
        import pandas  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as ex:
        print(f"not writing expected-predictions.csv: {ex}", file=sys.stderr)
        return
    sys.path.insert(0, os.path.join(REPO, "python"))
    from sluice_worker.batch import result_rows

    os.environ["AZUREML_MODEL_DIR"] = os.path.join(REPO, "examples", "sklearn-score")
    spec = importlib.util.spec_from_file_location("batch_driver", os.path.join(EXAMPLE, "code", "batch_driver.py"))
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    driver.init()
    rows = []
    ordered = sorted(paths)
    for start in range(0, len(ordered), MINI_BATCH_SIZE):
        rows.extend(result_rows(driver.run(ordered[start:start + MINI_BATCH_SIZE])))
    out = os.path.join(EXAMPLE, "expected-predictions.csv")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(r + "\n" for r in rows))
    print(out, f"{len(rows)} rows")


if __name__ == "__main__":
    files = write_data()
    print(DATA, f"{len(files)} files")
    write_expected(files)
