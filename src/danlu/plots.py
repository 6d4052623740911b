"""Every PNG danlu draws (sample grids, confusion matrices, histograms, curves, LR sweeps,
study plots), drawn off-screen through one helper: :func:`figure` then :func:`save`.

matplotlib is an optional dependency (`danlu[plots]`); `plotting_available()` lets a
producer skip its image with PLOTS_MISSING instead of failing. Figures are built with
matplotlib's object API and the Agg canvas, never pyplot, so nothing global changes,
nothing leaks between figures, and no display is needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plotting_available", "PLOTS_MISSING", "figure", "save", "save_image_grid", "save_series_grid", "save_matrix",
           "save_histogram", "display_images", "save_lr_png", "save_curves_png"]

PLOTS_MISSING = "matplotlib is not installed: pip install 'danlu[plots]' to save images"


def plotting_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    return True


def figure(width: float, height: float, dpi: int = 100) -> Any:
    """A matplotlib Figure on an Agg canvas (width x height inches), or None without matplotlib."""
    if not plotting_available():
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: str | Path) -> Path:
    """Lay out and write a figure as PNG, creating its folder; return the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def display_images(batch: np.ndarray) -> np.ndarray:
    """(B, C, H, W) model inputs -> (B, H, W, 3) or (B, H, W) floats in [0, 1], each image min-max scaled.

    Inputs are usually normalised (negative values, any range), so each image is
    stretched to its own range for display; constant images show as mid-grey.
    """
    x = batch.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.shape[1] >= 3:
        x = x[:, :3]
    else:
        x = x[:, :1]
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    hi = x.max(axis=(1, 2, 3), keepdims=True)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    x = np.where(hi - lo > 0, (x - lo) / span, 0.5)
    x = np.nan_to_num(x, nan=0.0)
    return np.moveaxis(x, 1, -1) if x.shape[1] == 3 else x[:, 0]


def _save_panels(items: Sequence[Any], draw: Callable[[Any, Any], None], titles: Sequence[str], path: Path,
                 title: str, cols: int, cell: tuple[float, float], colors: Sequence[str] | None) -> None:
    """One panel per item in a grid of `cols` columns, drawn by draw(ax, item), each titled."""
    n = len(items)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig = figure(cell[0] * cols, cell[1] * rows + (0.4 if title else 0))
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        if k >= n:
            ax.axis("off")
            continue
        draw(ax, items[k])
        if k < len(titles):
            ax.set_title(titles[k], fontsize=7, color=(colors[k] if colors else "black"))
    if title:
        fig.suptitle(title, fontsize=9)
    save(fig, path)


def save_image_grid(images: np.ndarray, titles: Sequence[str], path: Path, title: str = "", cols: int = 8,
                    colors: Sequence[str] | None = None) -> None:
    """A grid of (B, C, H, W) images with a small title under each (e.g. 'y=3' or 't=3 p=5 0.97')."""

    def draw(ax: Any, img: np.ndarray) -> None:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")

    _save_panels(display_images(images), draw, titles, path, title, cols, (1.3, 1.45), colors)


def save_series_grid(series: np.ndarray, titles: Sequence[str], path: Path, title: str = "", cols: int = 4,
                     colors: Sequence[str] | None = None, max_lines: int = 8) -> None:
    """Small multiples of (B, F, T) sequences: one panel per sample, one line per feature (the first
    `max_lines`), steps along x; for time series and other (steps x features) inputs."""

    def draw(ax: Any, sample: np.ndarray) -> None:
        for line in sample[:max_lines]:
            ax.plot(np.arange(len(line)), line, linewidth=0.8)
        ax.tick_params(labelsize=6)

    _save_panels(series, draw, titles, path, title, cols, (2.4, 1.6), colors)


def save_matrix(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str = "",
                xlabel: str = "predicted", ylabel: str = "true") -> None:
    """A confusion-matrix heat map, counts written in the cells when there are at most 20 classes."""
    c = len(labels)
    size = min(max(4.0, 0.45 * c + 2), 14.0)
    fig = figure(size, size)
    ax = fig.add_subplot(1, 1, 1)
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if c <= 40:
        ax.set_xticks(range(c), labels=list(labels), fontsize=7, rotation=90 if c > 10 else 0)
        ax.set_yticks(range(c), labels=list(labels), fontsize=7)
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    save(fig, path)


def save_histogram(values: np.ndarray, path: Path, title: str = "", xlabel: str = "", bins: int = 50) -> None:
    """A histogram (e.g. of regression residuals) with the zero line marked."""
    fig = figure(6, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(values[np.isfinite(values)], bins=bins, color="#4477aa")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if title:
        ax.set_title(title, fontsize=9)
    save(fig, path)


def save_lr_png(points: dict, suggestion: float | None, fastest: tuple[float, float] | None, path: str | Path):
    """The LR range test: raw and smoothed loss against LR (log axis), the suggestion, the steep range."""
    fig = figure(7, 4)
    if fig is None:
        return None
    ax = fig.add_subplot(1, 1, 1)
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
    return save(fig, path)


def save_curves_png(curves, report, path: str | Path):
    """Training and validation curves with the diagnosis: the regime, and where it began."""
    fig = figure(7, 4)
    if fig is None:
        return None
    ax = fig.add_subplot(1, 1, 1)
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
    return save(fig, path)
