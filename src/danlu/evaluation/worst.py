"""The worst cases and the suspicious labels (C2): which samples to look at first.

- Worst cases: the samples with the highest loss, whatever the reason.
- Suspicious labels: samples the model predicts as another class with confidence, ranked
  by the margin p(predicted) - p(label). A high margin on a model that is right most of
  the time is the signature of a wrong label (or of a genuinely ambiguous sample), so
  these are the candidates for relabelling.
"""

from __future__ import annotations

import numpy as np

from danlu.evaluation.predict import Predictions

__all__ = ["worst_cases", "suspicious_labels", "SUSPICIOUS_MIN_CONFIDENCE", "CONFIDENT"]

#: A misclassified sample is a relabelling candidate when its predicted class has at least this probability.
SUSPICIOUS_MIN_CONFIDENCE = 0.5
#: Candidates at or above this confidence are counted as "confidently wrong".
CONFIDENT = 0.9


def worst_cases(p: Predictions, k: int) -> np.ndarray:
    """Indices of the k samples with the highest loss, worst first (ties by index)."""
    order = np.lexsort((np.arange(len(p)), -p.losses))
    return order[:k]


def suspicious_labels(p: Predictions, min_confidence: float = SUSPICIOUS_MIN_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """(indices, margins) of misclassified samples predicted with >= min_confidence, ranked by margin.

    margin = p(predicted class) - p(labelled class), in (0, 1]; classification only.
    Labels outside the model's classes count as p(label) = 0.
    """
    if p.probs is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    pred = p.predicted
    conf = p.confidence
    t = p.targets.astype(np.int64)
    valid = (t >= 0) & (t < p.num_classes)
    p_label = np.where(valid, p.probs[np.arange(len(p)), np.clip(t, 0, p.num_classes - 1)], 0.0)
    wrong = (pred != t) & (conf >= min_confidence)
    idx = np.flatnonzero(wrong)
    margin = conf[idx] - p_label[idx]
    order = np.lexsort((idx, -margin))
    return idx[order], margin[order]
