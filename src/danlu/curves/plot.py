"""Pictures of curves: a unicode (braille) plot for the terminal, PNG files for the dashboard.

PNGs use matplotlib's Agg backend (no display needed) and are optional: without
matplotlib the savers return None and the terminal plot still works
(`pip install 'danlu[plots]'`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["terminal_plot", "save_lr_png", "save_curves_png"]

# Braille cell: 2 columns x 4 rows of dots; bit of dot (col, row).
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def terminal_plot(
    x: Sequence[float],
    y: Sequence[float],
    *,
    width: int = 60,
    height: int = 12,
    logx: bool = False,
    marks: dict[str, float] | None = None,
    xlabel: str = "",
    ymax: float | None = None,
) -> str:
    """A braille line plot (each character holds 2x4 dots); `marks` draw labelled vertical lines;
    values above `ymax` are drawn at the top edge (so a divergence tail does not flatten the rest)."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys) & ((xs > 0) if logx else True)
    xs, ys = xs[ok], ys[ok]
    if len(xs) < 2:
        return "(not enough points to plot)"
    if ymax is not None and math.isfinite(ymax):
        ys = np.minimum(ys, ymax)
    tx = np.log10(xs) if logx else xs
    x0, x1 = float(tx.min()), float(tx.max())
    y0, y1 = float(ys.min()), float(ys.max())
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    w, h = width * 2, height * 4
    grid = np.zeros((height, width), dtype=np.int64)

    def put(px: int, py: int) -> None:
        if 0 <= px < w and 0 <= py < h:
            grid[py // 4, px // 2] |= _DOT[px % 2][py % 4]

    px = np.round((tx - x0) / (x1 - x0) * (w - 1)).astype(int)
    py = np.round((y1 - ys) / (y1 - y0) * (h - 1)).astype(int)
    for i in range(len(px)):
        put(px[i], py[i])
        if i:  # join neighbours so the line stays continuous
            steps = max(abs(px[i] - px[i - 1]), abs(py[i] - py[i - 1]))
            for t in range(1, steps):
                put(round(px[i - 1] + (px[i] - px[i - 1]) * t / steps),
                    round(py[i - 1] + (py[i] - py[i - 1]) * t / steps))
    labels = []
    for label, value in (marks or {}).items():
        if value is None or not math.isfinite(value) or (logx and value <= 0):
            continue
        v = math.log10(value) if logx else value
        col = int(round((v - x0) / (x1 - x0) * (w - 1)))
        if 0 <= col < w:
            for row in range(0, h, 2):
                put(col, row)
            labels.append(f"┆ {label} = {value:.2g}")
    lines = []
    for r in range(height):
        axis = f"{y1:>9.3g} ┤" if r == 0 else (f"{y0:>9.3g} ┤" if r == height - 1 else " " * 10 + "│")
        lines.append(axis + "".join(chr(0x2800 + int(c)) for c in grid[r]))
    lo = f"{10 ** x0:.0e}" if logx else f"{x0:.4g}"
    hi = f"{10 ** x1:.0e}" if logx else f"{x1:.4g}"
    lines.append(" " * 10 + "└" + "─" * width)
    lines.append(" " * 11 + lo + " " * max(1, width - len(lo) - len(hi)) + hi)
    if xlabel:
        lines.append(" " * 11 + xlabel.center(width))
    lines.extend(" " * 11 + line for line in labels)
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_lr_png(points: dict, suggestion: float | None, fastest: tuple[float, float] | None, path: str | Path):
    """The LR range test: raw and smoothed loss against LR (log axis), the suggestion, the steep range."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        ax.plot(points["lr"], points["loss"], color="#bbbbbb", lw=1, label="loss")
        ax.plot(points["lr"], points["smoothed"], color="#1f77b4", lw=2, label="smoothed")
        if fastest:
            ax.axvspan(fastest[0], fastest[1], color="#2ca02c", alpha=0.15, label="falls fastest")
        if suggestion:
            ax.axvline(suggestion, color="#d62728", ls="--", label=f"suggested {suggestion:.2g}")
        ax.set_xscale("log")
        finite = [v for v in points["smoothed"] if math.isfinite(v)]
        if finite:  # clip the divergence tail so the descent stays readable
            lo, first = min(finite), finite[0]
            top = max(finite) if first <= 0 else min(max(finite), 2 * first)
            pad = 0.05 * (top - lo) or 0.05 * abs(lo) or 0.05
            ax.set_ylim(lo - pad, top + pad)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title("LR range test")
        ax.legend(loc="best", fontsize=8)
        return _save_figure(fig, path)
    finally:
        plt.close(fig)


def _save_figure(fig, path: str | Path) -> Path:
    """Lay out and write a figure as PNG, creating its folder; return the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def save_curves_png(curves, report, path: str | Path):
    """Training and validation curves with the diagnosis: the regime, and where it began."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        t = curves.train
        ax.plot(t.steps, t.values, color="#9ecae1", lw=0.8, label=t.name or "train")
        if len(t) > 20:
            from danlu.curves.series import median_smooth

            ax.plot(t.steps, median_smooth(t.values, max(3, len(t) // 20)), color="#1f77b4", lw=1.6,
                    label="train (smoothed)")
        if curves.val is not None and len(curves.val):
            ax.plot(curves.val.steps, curves.val.values, "o-", color="#ff7f0e", ms=3, lw=1.2,
                    label=curves.val.name or "val")
        since = report.meta.get("since_step")
        if since is not None and report.meta.get("regime") not in ("learning", "unknown"):
            ax.axvline(since, color="#d62728", ls="--", lw=1, label=f"{report.meta['regime']} since {since}")
        finite = t.values[np.isfinite(t.values)]
        if len(finite) and (finite > 0).all() and finite.max() / max(finite.min(), 1e-12) > 30:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"diagnosis: {report.meta.get('regime')}")
        ax.legend(loc="best", fontsize=8)
        return _save_figure(fig, path)
    finally:
        plt.close(fig)
