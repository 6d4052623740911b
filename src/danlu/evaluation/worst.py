"""The worst cases (C2): the samples with the highest loss, whatever the reason, to look at first.

Suspicious labels, the other list to look at, are in danlu.evaluation.label_issues.
"""

from __future__ import annotations

import numpy as np

from danlu.evaluation.predict import Predictions

__all__ = ["worst_cases"]


def worst_cases(p: Predictions, k: int) -> np.ndarray:
    """Indices of the k samples with the highest loss, worst first (ties by index)."""
    order = np.lexsort((np.arange(len(p)), -p.losses))
    return order[:k]
