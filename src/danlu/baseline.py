"""What a model gets without learning anything: the yardstick for "no better than chance"
(D1, T2, C3). One definition, used by the audit, the curve reader and the case study.

- :func:`baseline_loss`: classification, the cross-entropy of always predicting the
  training class prior, which is the prior's entropy (nats; a majority-class guess with
  calibrated confidence); regression, the mean squared error of always predicting the
  training mean (the mean-predictor baseline: the variance). Both are what the recipe's
  default losses report, so curves compare directly.
- :func:`majority_baseline`: the training set's most common class and the accuracy of
  always predicting it on the evaluated labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["baseline_loss", "majority_baseline", "dataset_targets"]


def baseline_loss(targets: Any, task: str) -> float | None:
    """Entropy of the class prior (classification) or target variance (regression)."""
    y = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if y.numel() == 0:
        return None
    if task == "classification":
        y = y.reshape(-1).long()
        counts = torch.bincount(y - y.min()).double()
        p = counts[counts > 0] / counts.sum()
        return float(-(p * p.log()).sum())
    if task == "regression":
        y = y.double().reshape(len(y), -1)
        return float(((y - y.mean(0)) ** 2).mean())
    return None


def majority_baseline(train_labels: Any, eval_labels: Any) -> tuple[int, float]:
    """(majority class of the training labels, accuracy of always predicting it on eval_labels)."""
    train = np.asarray(train_labels).reshape(-1).astype(np.int64)
    evaluated = np.asarray(eval_labels).reshape(-1).astype(np.int64)
    values, counts = np.unique(train, return_counts=True)
    majority = int(values[np.argmax(counts)])
    acc = float(np.mean(evaluated == majority)) if len(evaluated) else float("nan")
    return majority, acc


def dataset_targets(dataset: Any, max_items: int = 20_000) -> torch.Tensor | None:
    """A dataset's targets, read cheaply: TensorDataset tensors, `.targets`, Subset indices,
    else item by item (at most max_items, spread evenly). None when they cannot be read."""
    from torch.utils.data import Subset, TensorDataset

    try:
        if isinstance(dataset, Subset):
            inner = dataset_targets(dataset.dataset, max_items=len(dataset.dataset))
            if inner is not None:
                return inner[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
        if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
            return dataset.tensors[1]
        targets = getattr(dataset, "targets", None)
        if targets is not None:
            return torch.as_tensor(np.asarray(targets))
        n = len(dataset)
        idx = np.linspace(0, n - 1, min(n, max_items)).astype(int) if n else []
        return torch.stack([torch.as_tensor(dataset[int(i)][1]) for i in idx]) if len(idx) else None
    except Exception:  # a dataset we cannot read cheaply: no baseline, never an error
        return None
