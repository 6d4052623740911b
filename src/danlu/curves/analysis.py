"""The smoothed, binned view of a run's curves that every diagnosis rule reads.

Computed once per diagnosis (:func:`analyse`), so each rule stays a few lines of
comparisons. Windows are given as fractions of the training span: ``(0.75, 1.0)`` is the
last quarter of the steps, for the training and the validation curve alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from danlu.curves.series import Curves, Series, Trend, binned, median_smooth, relative_scale, trend

__all__ = [
    "Analysis",
    "analyse",
    "TRAIN_SMOOTH_FRACTION",
    "VAL_SMOOTH_FRACTION",
    "VAL_SMOOTH_MIN_POINTS",
    "MIN_TRAIN_POINTS",
    "LEARNED_FRACTION",
]

#: Width of the training curve's running median, as a fraction of its (binned) points.
TRAIN_SMOOTH_FRACTION = 0.05
#: Width of the validation curve's running median, as a fraction of its points (at least 3,
#: from VAL_SMOOTH_MIN_POINTS points on; fewer points are used as they are).
VAL_SMOOTH_FRACTION = 0.1
VAL_SMOOTH_MIN_POINTS = 5
#: Below this many finite training points there is nothing to diagnose yet.
MIN_TRAIN_POINTS = 10
#: A run "learned something" once its smoothed loss fell this far (relative) below its start;
#: rules about how learning goes (noise, still improving, LR decay) wait for it.
LEARNED_FRACTION = 0.10


@dataclass
class Analysis:
    """A run's curves, cleaned (finite points), binned and smoothed; plus window helpers."""

    curves: Curves
    train: Series                  # finite training points
    use_log: bool                  # compare on a log scale (all values > 0) or a scaled linear one
    scale: float                   # linear scale when not use_log
    steps: np.ndarray              # binned training steps
    smooth: np.ndarray             # running median of the binned training curve (loss units)
    val: Series | None             # finite validation points
    val_smooth: np.ndarray | None  # running median of the validation curve
    val_use_log: bool = True
    val_scale: float = 1.0

    @property
    def start(self) -> float:
        return float(self.train.steps[0])

    @property
    def end(self) -> float:
        return float(self.train.steps[-1])

    @property
    def final(self) -> bool:
        return self.curves.final

    @property
    def start_level(self) -> float:
        """The loss at the start: the first point (the untrained model), or the smoothed start if lower.

        The first point matters when the loss explodes within a few steps, which drags the
        running median's first value up with it.
        """
        return float(min(self.train.values[0], self.smooth[0]))

    @property
    def learned(self) -> float:
        """How far the smoothed training loss came down from its start to its best (loss units)."""
        return max(self.start_level - float(np.min(self.smooth)), 0.0)

    @property
    def learned_enough(self) -> bool:
        """The smoothed loss fell at least LEARNED_FRACTION below its start at some point."""
        return -self.rel(float(np.min(self.smooth)), self.start_level) >= LEARNED_FRACTION

    def of_learned(self, delta: float) -> float:
        """A change in loss units as a fraction of what was learned (inf when nothing was)."""
        learned = self.learned
        return abs(delta) / learned if learned > 0 else float("inf")

    def at(self, fraction: float) -> float:
        """The step a fraction of the way through training."""
        return self.start + fraction * (self.end - self.start)

    def rel(self, value: float, ref: float) -> float:
        """Relative difference of value against ref (0.1 = 10 % higher), on this curve's scale."""
        if self.use_log:
            return float(value / ref - 1.0) if ref > 0 else float("inf")
        return float((value - ref) / self.scale)

    def rel_array(self, values: np.ndarray, ref: float) -> np.ndarray:
        """:meth:`rel` for many values at once."""
        if self.use_log:
            return values / ref - 1.0 if ref > 0 else np.full(len(values), np.inf)
        return (values - ref) / self.scale

    def val_rel(self, value: float, ref: float) -> float:
        """Relative difference on the validation curve's scale."""
        if self.val_use_log:
            return float(value / ref - 1.0) if ref > 0 else float("inf")
        return float((value - ref) / self.val_scale)

    def train_trend(self, a: float, b: float = 1.0) -> Trend:
        w = self.train.window(self.at(a), self.at(b))
        return trend(w.steps, w.values, use_log=self.use_log, scale=self.scale)

    def val_trend(self, a: float, b: float = 1.0) -> Trend | None:
        if self.val is None or len(self.val) < 2:
            return None
        w = self.val.window(self.at(a), self.at(b))
        return trend(w.steps, w.values, use_log=self.val_use_log, scale=self.val_scale)

    def smooth_at(self, step: float) -> float:
        """The smoothed training loss at (the bin nearest to) a step."""
        return float(self.smooth[int(np.argmin(np.abs(self.steps - step)))])

    def lr_window(self, a: float, b: float = 1.0) -> np.ndarray:
        """LR values logged within a window (empty without an LR curve)."""
        lr = self.curves.lr
        if lr is None:
            return np.empty(0)
        w = lr.finite().window(self.at(a), self.at(b))
        return w.values

    def evidence_base(self) -> dict[str, Any]:
        return {"train_points": len(self.train), "val_points": 0 if self.val is None else len(self.val)}


def analyse(curves: Curves) -> Analysis | None:
    """Clean, bin and smooth; None when there are fewer than MIN_TRAIN_POINTS finite training points."""
    train = curves.train.finite()
    if len(train) < MIN_TRAIN_POINTS:
        return None
    use_log, scale = relative_scale(train.values)
    steps, values = binned(train.steps, train.values)
    width = int(round(len(values) * TRAIN_SMOOTH_FRACTION)) | 1
    smooth = median_smooth(values, min(width, 51))
    val = curves.val.finite() if curves.val is not None else None
    val_smooth = None
    if val is not None and len(val):
        n = len(val)
        k = 1 if n < VAL_SMOOTH_MIN_POINTS else max(3, int(round(n * VAL_SMOOTH_FRACTION)) | 1)
        val_smooth = median_smooth(val.values, k)
    elif val is not None:
        val = None
    val_use_log, val_scale = relative_scale(val.values) if val is not None else (True, 1.0)
    return Analysis(curves, train, use_log, scale, steps, smooth, val, val_smooth, val_use_log, val_scale)
