"""Slices (C2): metrics by class, by input length, and by any metadata the dataset exposes.

An aggregate number hides a slice that fails: the night-time images, the long
sentences, one scanner. Slices are listed weakest first; a slice is flagged when it is
clearly below the rest (accuracy lower than the overall by more than 5 points and more
than two binomial standard errors; for regression a mean absolute error 25% above the
overall and two standard errors out), with at least MIN_SLICE samples.

Metadata comes from, in order: a `metadata` attribute of the dataset (a dict of
per-sample lists, a list of per-sample dicts, or a pandas DataFrame), or a dict as the
third element of each item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from danlu.checks.audit.inputs import split_item
from danlu.evaluation.predict import Predictions

__all__ = ["Slice", "slices", "dataset_metadata", "MIN_SLICE"]

MIN_SLICE = 10
_MAX_GROUPS = 20


@dataclass
class Slice:
    group: str          # "class", "length", or "meta:<key>"
    name: str           # e.g. "class 3", "length 12-40", "source=scanner_b"
    n: int
    score: float        # accuracy (classification) or mean absolute error (regression)
    loss: float         # mean per-sample loss
    flagged: bool = False


def dataset_metadata(dataset: Dataset) -> dict[str, list]:
    """Per-sample metadata columns the dataset exposes (see module docstring); {} when none."""
    n = len(dataset)
    meta = getattr(dataset, "metadata", None)
    if meta is not None:
        if hasattr(meta, "to_dict") and hasattr(meta, "columns"):
            meta = meta.to_dict(orient="list")
        if isinstance(meta, dict):
            return {str(k): list(v) for k, v in meta.items() if hasattr(v, "__len__") and len(v) == n}
        if isinstance(meta, (list, tuple)) and len(meta) == n and all(isinstance(m, dict) for m in meta):
            keys = sorted({k for m in meta for k in m})
            return {str(k): [m.get(k) for m in meta] for k in keys}
        return {}
    try:
        first = split_item(dataset[0])[2]
    except Exception:
        return {}
    if not isinstance(first, dict):
        return {}
    rows = [split_item(dataset[i])[2] or {} for i in range(n)]
    keys = sorted({k for r in rows for k in r})
    return {str(k): [_plain(r.get(k)) for r in rows] for k in keys}


def _plain(v: Any) -> Any:
    item = getattr(v, "item", None)
    if callable(item) and getattr(v, "ndim", 1) == 0:
        return item()
    return v


def slices(p: Predictions, metadata: dict[str, list] | None = None) -> list[Slice]:
    """Every slice with its score, weakest first (flagged ones before the rest)."""
    correct = (p.predicted == p.targets) if p.task == "classification" else None
    err = None if p.task == "classification" else np.abs(
        np.asarray(p.outputs, dtype=np.float64).reshape(len(p), -1) - np.asarray(p.targets, np.float64).reshape(len(p), -1)
    ).mean(axis=1)
    groups: list[tuple[str, str, np.ndarray]] = []
    if p.task == "classification":
        for c in np.unique(p.targets):
            groups.append(("class", f"class {int(c)}", p.targets == c))
    if p.lengths is not None and len(np.unique(p.lengths)) > 1:
        groups += _numeric_bins("length", "length", np.asarray(p.lengths, dtype=np.float64))
    for key, values in (metadata or {}).items():
        groups += _meta_groups(key, values)
    out = []
    for group, name, mask in groups:
        n = int(mask.sum())
        if not n:
            continue
        score = float(correct[mask].mean()) if correct is not None else float(err[mask].mean())
        out.append(Slice(group, name, n, score, float(p.losses[mask].mean())))
    _flag(out, correct, err)
    classification = correct is not None
    return sorted(out, key=lambda s: (not s.flagged, s.score if classification else -s.score, s.name))


def _flag(found: list[Slice], correct: np.ndarray | None, err: np.ndarray | None) -> None:
    if correct is not None:
        overall = float(correct.mean())
        for s in found:
            se = np.sqrt(max(overall * (1 - overall), 1e-12) / s.n)
            s.flagged = bool(s.n >= MIN_SLICE and s.score < overall - max(0.05, 2 * se))
    else:
        overall, spread = float(err.mean()), float(err.std())
        for s in found:
            s.flagged = bool(s.n >= MIN_SLICE and s.score > max(1.25 * overall, overall + 2 * spread / np.sqrt(s.n)))


def _numeric_bins(group: str, label: str, values: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    finite = np.isfinite(values)
    edges = np.unique(np.quantile(values[finite], [0, 0.25, 0.5, 0.75, 1.0]))
    if len(edges) < 2:
        return []
    out = []
    for k in range(len(edges) - 1):
        lo, hi = edges[k], edges[k + 1]
        mask = finite & (values >= lo) & ((values <= hi) if k == len(edges) - 2 else (values < hi))
        out.append((group, f"{label} {_num(lo)}-{_num(hi)}", mask))
    return out


def _meta_groups(key: str, values: list) -> list[tuple[str, str, np.ndarray]]:
    group = f"meta:{key}"
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values if v is not None)
    distinct = {_hashable(v) for v in values}
    integers = numeric and all(float(v).is_integer() for v in values if v is not None)
    if integers and len(distinct) == len(values):
        return []  # every value different: an identifier, not a property of the sample
    if numeric and len(distinct) > _MAX_GROUPS:
        return _numeric_bins(group, key, np.array([np.nan if v is None else float(v) for v in values]))
    if len(distinct) > _MAX_GROUPS or len(distinct) < 2:
        return []  # identifiers (all different) or constants say nothing about slices
    keys = np.array([_hashable(v) for v in values], dtype=object)
    return [(group, f"{key}={v}", keys == v) for v in sorted(distinct, key=str)]


def _hashable(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return str(v)


def _num(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}"
