"""Suspicious labels (C2) against planted label flips: what confident learning finds, and what
the chance count calls "very likely wrong", on clean and noisy versions of the same data.

    .venv/bin/python benchmarks/label_issues.py

For each dataset (scikit-learn's: overlapping and separated blobs, a hard and an easy binary
task, digits raw and standardised), labels are flipped at random for 0%, 1% or 5% of the
samples; 5-fold out-of-fold probabilities come from a logistic regression and an MLP
(scikit-learn), as `danlu cases --split train` gets them from K models. Printed per case:
misclassified samples (what the old margin rule listed, at confidence >= 0.5 roughly), the
candidates and how many are flips, and the "very likely wrong" head and how many are flips.
On clean data every "very likely wrong" is a false alarm.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.datasets import load_digits, make_blobs, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from danlu.evaluation.label_issues import find_label_issues


def datasets():
    digits = load_digits()
    yield "blobs, overlapping", *make_blobs(600, centers=3, cluster_std=2.0, random_state=0)
    yield "blobs, separated", *make_blobs(600, centers=3, cluster_std=0.8, random_state=0)
    yield "binary, hard", *make_classification(800, n_features=10, n_informative=4, flip_y=0, class_sep=0.7,
                                               random_state=0)
    yield "binary, easy", *make_classification(800, n_features=10, n_informative=4, flip_y=0, class_sep=2,
                                               random_state=0)
    yield "digits, raw", digits.data, digits.target
    yield "digits, standardised", StandardScaler().fit_transform(digits.data), digits.target


def main() -> None:
    warnings.filterwarnings("ignore")
    models = {"logistic": LogisticRegression(max_iter=300), "MLP": MLPClassifier((64,), max_iter=300, random_state=0)}
    print(f"{'data':22} {'model':8} {'flip':>4} {'wrong':>5} {'cand':>5} {'hits':>4} {'sure':>4} {'hits':>4}")
    for name, x, y in datasets():
        for rate in (0.0, 0.01, 0.05):
            rng = np.random.default_rng(0)
            count = int(round(rate * len(y)))
            where = rng.choice(len(y), count, replace=False)
            noisy = y.copy()
            classes = int(y.max()) + 1
            noisy[where] = (y[where] + rng.integers(1, classes, count)) % classes
            flipped = set(where.tolist())
            for model_name, model in models.items():
                probs = cross_val_predict(model, x, noisy, cv=5, method="predict_proba")
                issues = find_label_issues(probs, noisy)
                found = set(issues.indices.tolist())
                sure = set(issues.indices[: issues.sure].tolist())
                wrong = int((probs.argmax(axis=1) != noisy).sum())
                print(f"{name:22} {model_name:8} {count:4d} {wrong:5d} {len(found):5d} {len(found & flipped):4d} "
                      f"{len(sure):4d} {len(sure & flipped):4d}")


if __name__ == "__main__":
    main()
