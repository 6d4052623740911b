"""Whole-set metrics (C3): confusion matrix, per-class precision/recall/F1, regression residuals.

Plain numpy on aligned arrays, so each number can be checked by hand in a test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["confusion_matrix", "ClassMetrics", "per_class_metrics", "residual_summary"]


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class. Labels outside 0..C-1 are ignored."""
    t, p = np.asarray(targets, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    ok = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    return np.bincount(t[ok] * num_classes + p[ok], minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass
class ClassMetrics:
    """Per-class precision, recall, F1 and support, with macro averages and accuracy."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    accuracy: float
    macro_f1: float
    macro_precision: float
    macro_recall: float


def per_class_metrics(cm: np.ndarray) -> ClassMetrics:
    """Metrics from a confusion matrix; a class never predicted has precision 0, never present recall 0.

    Macro averages are over the classes present in the targets (support > 0).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    total = cm.sum()
    return ClassMetrics(
        precision=precision,
        recall=recall,
        f1=f1,
        support=support.astype(np.int64),
        accuracy=float(tp.sum() / total) if total else float("nan"),
        macro_f1=float(f1[present].mean()) if present.any() else float("nan"),
        macro_precision=float(precision[present].mean()) if present.any() else float("nan"),
        macro_recall=float(recall[present].mean()) if present.any() else float("nan"),
    )


def residual_summary(predicted: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Residuals (prediction - target): bias, spread, quantiles, MAE, RMSE, R², and the mean-baseline RMSE."""
    r = (np.asarray(predicted, dtype=np.float64) - np.asarray(targets, dtype=np.float64)).reshape(-1)
    t = np.asarray(targets, dtype=np.float64).reshape(-1)
    q = np.quantile(r, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    var_t = float(t.var())
    mse = float(np.mean(r ** 2))
    return {
        "n": int(r.size),
        "mean": float(r.mean()),
        "std": float(r.std()),
        "mae": float(np.abs(r).mean()),
        "rmse": float(np.sqrt(mse)),
        "r2": 1 - mse / var_t if var_t > 0 else float("nan"),
        "baseline_rmse": float(np.sqrt(var_t)),
        **{f"p{int(p * 100)}": float(v) for p, v in zip([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99], q)},
    }
