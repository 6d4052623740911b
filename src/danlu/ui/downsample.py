"""Server-side downsampling of curves that keeps their extremes (practices T1, T2).

A run logs its training loss every batch (T1), so a long run has millions of points,
while a chart is a few thousand pixels wide. Sending every point makes the browser
choke; sampling every k-th point (TensorBoard's reservoir, MLflow's cap) hides the
spikes and the NaN a diagnosis is about (T2). The downsamplers here pick, for each
bucket of consecutive points, the points that matter for the picture:

- ``minmax`` (default): the smallest and the largest value of each bucket, in step
  order, plus the first and last point. Every spike survives. Vectorised numpy:
  a million points take a few milliseconds.
- ``lttb``: Largest-Triangle-Three-Buckets (Steinarsson, 2013), which keeps the
  visual shape with one point per bucket.

Both return a subset of the input points (never invented values), sorted by step,
of at most ``max_points`` points (and at least the first and last one). Non-finite
values (NaN, inf: a diverged run) are never dropped silently: :func:`downsample`
keeps the first non-finite point and counts them all, and they travel to the browser
as ``null`` with the step where they start.

The registry :data:`DOWNSAMPLERS` maps a name to a function
``(steps, values, max_points) -> index array``; adding a method is adding one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Downsampled", "downsample", "minmax_indices", "lttb_indices", "DOWNSAMPLERS", "window"]

#: (steps, values, max_points) -> sorted indices of the points to keep.
Downsampler = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@dataclass
class Downsampled:
    """The points of one series a chart receives, and what was left out."""

    steps: np.ndarray          # int64, sorted
    values: np.ndarray         # float64; may hold NaN/inf (sent as null)
    total: int                 # points in the requested window before downsampling
    nonfinite: int             # NaN/inf points in the window
    first_nonfinite: int | None  # step of the first NaN/inf, for a marker on the chart
    method: str                # "none" when every point was kept


def window(steps: np.ndarray, values: np.ndarray, start: float | None, end: float | None):
    """The points with ``start <= step <= end`` (either bound optional), by binary search."""
    lo = 0 if start is None else int(np.searchsorted(steps, start, side="left"))
    hi = len(steps) if end is None else int(np.searchsorted(steps, end, side="right"))
    return steps[lo:hi], values[lo:hi]


def minmax_indices(steps: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of each bucket's min and max (finite values), plus the first and last point.

    Buckets hold equal counts of consecutive points (the few left over form one more
    bucket); with ``(max_points - 4) // 2`` buckets the result has at most
    ``max_points`` points. Curves without NaN/inf (the usual case) are not copied.
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 4) // 2)
    size = n // buckets
    main = buckets * size
    if np.isfinite(values.sum()):
        lows = highs = values
    else:
        finite = np.isfinite(values)
        lows = np.where(finite, values, np.inf)
        highs = np.where(finite, values, -np.inf)
    base = np.arange(buckets) * size
    parts = [
        [0, n - 1],
        base + lows[:main].reshape(buckets, size).argmin(axis=1),
        base + highs[:main].reshape(buckets, size).argmax(axis=1),
    ]
    if main < n:
        parts.append([main + int(lows[main:].argmin()), main + int(highs[main:].argmax())])
    return np.unique(np.concatenate(parts))


def lttb_indices(steps: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Largest-Triangle-Three-Buckets: one point per bucket, the one that spans the largest
    triangle with the point kept before it and the average of the next bucket."""
    n = len(values)
    if n <= max_points or max_points < 3:
        return np.arange(n) if n <= max_points else np.array([0, n - 1])
    x = steps.astype(np.float64)
    y = np.where(np.isfinite(values), values, np.nan)
    every = (n - 2) / (max_points - 2)
    out = np.empty(max_points, dtype=np.int64)
    out[0], out[-1] = 0, n - 1
    a = 0
    for i in range(max_points - 2):
        lo, hi = int(i * every) + 1, int((i + 1) * every) + 1           # this bucket
        nlo, nhi = hi, min(int((i + 2) * every) + 1, n)                 # the next one
        nlo, nhi = min(nlo, n - 1), max(nhi, min(nlo, n - 1) + 1)
        ny = y[nlo:nhi]
        cx = x[nlo:nhi].mean()
        cy = float(np.nanmean(ny)) if np.isfinite(ny).any() else 0.0
        with np.errstate(invalid="ignore"):
            area = np.abs((x[a] - cx) * (y[lo:hi] - y[a]) - (x[a] - x[lo:hi]) * (cy - y[a]))
        area = np.where(np.isfinite(area), area, -1.0)
        a = lo + int(area.argmax())
        out[i + 1] = a
    return np.unique(out)


#: Registered downsamplers, by the name the API's ``method`` parameter takes.
DOWNSAMPLERS: dict[str, Downsampler] = {"minmax": minmax_indices, "lttb": lttb_indices}


def downsample(
    steps: np.ndarray,
    values: np.ndarray,
    max_points: int = 2000,
    *,
    start: float | None = None,
    end: float | None = None,
    method: str = "minmax",
) -> Downsampled:
    """The points of ``[start, end]`` reduced to at most ``max_points`` (extremes kept).

    Recomputed for every zoom window: zooming in on a 1,000-step range of a
    million-point curve shows every one of those 1,000 points.
    """
    if method not in DOWNSAMPLERS:
        raise ValueError(f"unknown downsampling method {method!r}; use one of {sorted(DOWNSAMPLERS)}")
    max_points = max(2, int(max_points))
    s, v = window(np.asarray(steps), np.asarray(values, dtype=np.float64), start, end)
    if len(v) and np.isfinite(v.sum()):          # one pass; NaN and inf make the sum non-finite
        nonfinite, first_bad = 0, None
    else:
        bad = ~np.isfinite(v)
        nonfinite = int(bad.sum())
        first_bad = int(np.argmax(bad)) if nonfinite else None
    if len(v) <= max_points:
        idx, used = np.arange(len(v)), "none"
    else:
        budget = max_points - 1 if nonfinite else max_points
        idx, used = DOWNSAMPLERS[method](s, v, budget), method
        if first_bad is not None:
            idx = np.union1d(idx, [first_bad])
    return Downsampled(
        steps=s[idx],
        values=v[idx],
        total=len(v),
        nonfinite=nonfinite,
        first_nonfinite=None if first_bad is None else int(s[first_bad]),
        method=used,
    )
