"""Curves as plain series, and the robust statistics every diagnosis rule reads (T1, T2).

A single noisy point must never decide a regime. So rules read curves through three
robust tools, each with its threshold stated as a named constant (and in docs/diagnosis.md):

- **smoothing**: a centred running median (:func:`median_smooth`): it ignores isolated
  spikes and, unlike an EMA, does not lag, so "the step where validation turned" is the
  step where it turned; an EMA (:func:`ema`) is used where only the past is known
  (the LR finder's divergence stop);
- **binning**: long per-step curves are reduced to at most :data:`MAX_POINTS` bin medians
  (:func:`binned`), which also makes neighbouring points nearly independent;
- **trend tests** over a window (:func:`trend`): the Theil-Sen slope (median of pairwise
  slopes, robust to 29 % outliers) gives the size of the change, and the Mann-Kendall
  statistic gives its consistency as a z-score. A trend counts only when it is both large
  (relative change past a threshold) and consistent (|z| >= :data:`TREND_Z`).

Losses are compared in relative terms: on a log scale when every value is positive
(so "fell 10 %" means the same at loss 2.3 and at 0.02), else on a linear scale divided
by the curve's typical magnitude.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Series",
    "Curves",
    "Trend",
    "MAX_POINTS",
    "TREND_Z",
    "MK_MIN_POINTS",
    "TRAIN_SERIES",
    "VAL_SERIES",
    "PROBE_SERIES",
    "LR_SERIES",
    "DATA_WAIT_SERIES",
    "MIN_VAL_EPOCH_POINTS",
    "pick_series",
    "median_smooth",
    "ema",
    "binned",
    "theil_sen",
    "mann_kendall_z",
    "trend",
    "relative_scale",
]

#: Per-step curves longer than this are reduced to this many bin medians before trend tests.
MAX_POINTS = 400
#: Mann-Kendall |z| above which a trend is consistent rather than noise (~1 % two-sided).
TREND_Z = 2.5
#: Below this many points the Mann-Kendall test cannot reach TREND_Z; trends then rest on size alone.
MK_MIN_POINTS = 8

#: Names accepted for each curve, first match wins (engine names first, then common ones
#: from users' own loops logged through danlu.init).
TRAIN_SERIES = ("train/loss", "loss", "train_loss", "training/loss", "train/loss_step", "Loss/train", "loss/train")
VAL_SERIES = ("val/loss", "val_loss", "valid/loss", "validation/loss", "eval/loss", "val/loss_epoch", "eval_loss",
              "Loss/val", "loss/val", "Loss/validation")
PROBE_SERIES = ("val/probe_loss",)
LR_SERIES = ("lr", "train/lr", "learning_rate", "lr-0")
#: The share of time the loop waited for data (danlu.monitor), read by the data-bound rule.
DATA_WAIT_SERIES = ("sys/data_wait",)
#: With fewer whole-set validation points than this, the (denser) probe series is used instead.
MIN_VAL_EPOCH_POINTS = 4


@dataclass(frozen=True)
class Series:
    """One curve: steps (int64, increasing) and values (float64, may hold NaN/Inf)."""

    steps: np.ndarray
    values: np.ndarray
    name: str = ""

    @classmethod
    def of(cls, steps: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray, name: str = "") -> Series:
        """Build from any sequences; sorts by step and keeps the last value of a repeated step."""
        s = np.asarray(steps, dtype=np.int64).reshape(-1)
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if s.shape != v.shape:
            raise ValueError(f"series {name!r}: {len(s)} steps but {len(v)} values")
        order = np.argsort(s, kind="stable")
        s, v = s[order], v[order]
        if len(s) > 1:
            keep = np.append(s[1:] != s[:-1], True)  # last write of a step wins (store contract)
            s, v = s[keep], v[keep]
        return cls(s, v, name)

    def __len__(self) -> int:
        return len(self.steps)

    def finite(self) -> Series:
        ok = np.isfinite(self.values)
        return self if ok.all() else Series(self.steps[ok], self.values[ok], self.name)

    def first_nonfinite(self) -> int | None:
        """Index of the first NaN/Inf value, or None."""
        bad = np.flatnonzero(~np.isfinite(self.values))
        return int(bad[0]) if len(bad) else None

    def window(self, start: float, end: float) -> Series:
        """Points with start <= step <= end."""
        ok = (self.steps >= start) & (self.steps <= end)
        return Series(self.steps[ok], self.values[ok], self.name)


@dataclass
class Curves:
    """Everything a diagnosis reads: the curves, the majority baseline, the task.

    ``val`` is the validation curve used for the trends (whole-set per-epoch ``val/loss``
    when it has enough points, else the random-batch probes ``val/probe_loss``).
    ``final`` says the run has ended, so end-of-run regimes (still improving, LR-decay
    convergence) apply; a live diagnosis passes False.
    """

    train: Series
    val: Series | None = None
    lr: Series | None = None
    baseline_loss: float | None = None
    task: str | None = None
    final: bool = True
    best_checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_series(
        cls,
        series: Mapping[str, tuple[Sequence[int], Sequence[float]]],
        *,
        baseline_loss: float | None = None,
        task: str | None = None,
        final: bool = True,
        best_checkpoint: str | None = None,
    ) -> Curves:
        """Pick the train, validation and LR curves out of named series (see *_SERIES)."""
        train_name = pick_series(series, TRAIN_SERIES)
        if train_name is None:
            raise KeyError(
                "no training-loss series: looked for " + ", ".join(TRAIN_SERIES)
                + "; found " + (", ".join(sorted(series)) or "none")
            )
        train = Series.of(*series[train_name], name=train_name)
        val_name = pick_series(series, VAL_SERIES)
        probe_name = pick_series(series, PROBE_SERIES)
        val = Series.of(*series[val_name], name=val_name) if val_name else None
        if probe_name:
            probe = Series.of(*series[probe_name], name=probe_name)
            if val is None or (len(val) < MIN_VAL_EPOCH_POINTS and len(probe) > len(val)):
                val = probe
        lr_name = pick_series(series, LR_SERIES)
        lr = Series.of(*series[lr_name], name=lr_name) if lr_name else None
        extra: dict[str, Any] = {}
        wait_name = pick_series(series, DATA_WAIT_SERIES)
        if wait_name:
            extra["data_wait"] = Series.of(*series[wait_name], name=wait_name)
        return cls(train=train, val=val, lr=lr, baseline_loss=baseline_loss, task=task,
                   final=final, best_checkpoint=best_checkpoint, extra=extra)


def pick_series(series: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """The first of `names` present in `series` with at least one point."""
    for name in names:
        data = series.get(name)
        if data is not None and len(data[0]):
            return name
    return None


# ------------------------------------------------------------------- smoothing
def median_smooth(values: np.ndarray, k: int) -> np.ndarray:
    """Centred running median of odd width k; the window shrinks at the ends (no padding bias)."""
    v = np.asarray(values, dtype=np.float64)
    k = max(1, int(k) | 1)
    if k == 1 or len(v) < 3:
        return v.copy()
    half = k // 2
    padded = np.concatenate([np.full(half, np.nan), v, np.full(half, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, k)
    return np.nanmedian(windows, axis=1)


def ema(values: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average (as TensorBoard and fast.ai draw it); causal."""
    out = np.empty(len(values), dtype=np.float64)
    avg = 0.0
    for i, x in enumerate(values):
        avg = beta * avg + (1 - beta) * float(x)
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def binned(steps: np.ndarray, values: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a long curve to at most max_points (median step, median value) bins."""
    n = len(steps)
    if n <= max_points:
        return np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    size = -(-n // max_points)              # equal bins of `size` points (the last may be short)
    bins = -(-n // size)
    pad = bins * size - n

    def medians(a: np.ndarray) -> np.ndarray:
        full = np.concatenate([np.asarray(a, dtype=np.float64), np.full(pad, np.nan)])
        return np.nanmedian(full.reshape(bins, size), axis=1)

    return medians(steps), medians(values)


# ---------------------------------------------------------------- trend tests
@functools.lru_cache(maxsize=16)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i < j (cached: live diagnosis asks for the same sizes again and again)."""
    i, j = np.triu_indices(n, k=1)
    i.flags.writeable = False
    j.flags.writeable = False
    return i, j


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Theil-Sen line: slope = median of pairwise slopes, intercept = median(y - slope x)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return 0.0, float(y[0]) if len(y) else 0.0
    i, j = _pairs(len(x))
    dx = x[j] - x[i]
    ok = dx != 0
    if not ok.any():
        return 0.0, float(np.median(y))
    slope = float(np.median((y[j] - y[i])[ok] / dx[ok]))
    return slope, float(np.median(y - slope * x))


def mann_kendall_z(y: np.ndarray) -> float:
    """Mann-Kendall trend statistic as a z-score (> 0 rising, < 0 falling), continuity-corrected."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 3:
        return 0.0
    i, j = _pairs(n)
    s = float(np.sign(y[j] - y[i]).sum())
    var = n * (n - 1) * (2 * n + 5) / 18.0
    if s > 0:
        return (s - 1) / math.sqrt(var)
    if s < 0:
        return (s + 1) / math.sqrt(var)
    return 0.0


def relative_scale(values: np.ndarray) -> tuple[bool, float]:
    """How to compare this curve in relative terms: (use_log, scale for the linear case)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) and (v > 0).all():
        return True, 1.0
    scale = float(np.median(np.abs(v))) if len(v) else 1.0
    spread = float(np.subtract(*np.percentile(v, [75, 25]))) if len(v) else 0.0
    return False, max(scale, spread, 1e-12)


@dataclass(frozen=True)
class Trend:
    """The direction of a curve over a window of steps.

    ``change`` is the relative change of the Theil-Sen line from the window's first to its
    last step (-0.3 = fell 30 %); ``delta`` the same change in loss units; ``z`` is the
    Mann-Kendall z-score (how consistently the points move that way).
    """

    start: float
    end: float
    n: int
    change: float
    z: float
    delta: float = 0.0

    @property
    def consistent(self) -> bool:
        """|z| past TREND_Z, or too few points for the test to say (size alone then decides)."""
        return abs(self.z) >= TREND_Z or self.n < MK_MIN_POINTS

    def falling(self, by: float) -> bool:
        return self.n >= 2 and self.change <= -by and self.consistent and self.z <= 0

    def rising(self, by: float) -> bool:
        return self.n >= 2 and self.change >= by and self.consistent and self.z >= 0

    def flat(self, within: float) -> bool:
        """No change bigger than `within`, or none that is consistent."""
        return abs(self.change) < within or not self.consistent

    def to_dict(self) -> dict[str, float]:
        return {"from_step": int(self.start), "to_step": int(self.end), "points": self.n,
                "change": round(self.change, 4), "delta": float(f"{self.delta:.4g}"), "z": round(self.z, 2)}


def trend(steps: np.ndarray, values: np.ndarray, *, use_log: bool | None = None, scale: float = 1.0) -> Trend:
    """Theil-Sen change and Mann-Kendall z of a curve (binned to MAX_POINTS first)."""
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    s, v = s[ok], v[ok]
    if len(s) < 2:
        start = float(s[0]) if len(s) else 0.0
        return Trend(start, start, len(s), 0.0, 0.0)
    if use_log is None:
        use_log, scale = relative_scale(v)
    s, v = binned(s, v)
    y = np.log(v) if use_log else v / scale
    slope, intercept = theil_sen(s, y)
    span = float(s[-1] - s[0])
    first, last = intercept + slope * s[0], intercept + slope * s[-1]
    if use_log:
        change, delta = math.expm1(slope * span), math.exp(last) - math.exp(first)
    else:
        change, delta = slope * span, (last - first) * scale
    return Trend(float(s[0]), float(s[-1]), len(s), float(change), mann_kendall_z(y), float(delta))


def baseline_name(curves: Curves) -> str:
    """What the baseline is, in words: the majority baseline (classification) or the mean predictor's."""
    return "mean-predictor baseline" if curves.task == "regression" else "majority baseline"
