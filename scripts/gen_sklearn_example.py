"""Writes examples/sklearn-score/model/sklearn_iris.joblib: a scikit-learn LogisticRegression on
the iris data set, for the scoring-script example. Run with the dev venv's Python."""
import os

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500, random_state=0).fit(X, y)
out = os.path.join(HERE, "..", "examples", "sklearn-score", "model", "sklearn_iris.joblib")
joblib.dump(model, out)
print(out, model.predict([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]))
