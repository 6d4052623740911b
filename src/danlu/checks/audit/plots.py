"""PNG figures for reports (sample grids, confusion matrices, histograms), drawn off-screen.

matplotlib is an optional dependency (`danlu[plots]`); `plotting_available()` lets a
check skip its image with that message instead of failing. Figures are built with
matplotlib's object API and the Agg canvas, never pyplot, so nothing global changes
and no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["plotting_available", "PLOTS_MISSING", "save_image_grid", "save_matrix", "save_histogram", "display_images"]

PLOTS_MISSING = "matplotlib is not installed: pip install 'danlu[plots]' to save images"


def plotting_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    return True


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


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


def save_image_grid(images: np.ndarray, titles: Sequence[str], path: Path, title: str = "", cols: int = 8,
                    colors: Sequence[str] | None = None) -> None:
    """A grid of (B, C, H, W) images with a small title under each (e.g. 'y=3' or 't=3 p=5 0.97')."""
    shown = display_images(images)
    n = len(shown)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig = _figure(1.3 * cols, 1.45 * rows + (0.4 if title else 0))
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        img = shown[k]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        if k < len(titles):
            ax.set_title(titles[k], fontsize=7, color=(colors[k] if colors else "black"))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def save_matrix(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str = "",
                xlabel: str = "predicted", ylabel: str = "true") -> None:
    """A confusion-matrix heat map, counts written in the cells when there are at most 20 classes."""
    c = len(labels)
    size = min(max(4.0, 0.45 * c + 2), 14.0)
    fig = _figure(size, size)
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
    fig.tight_layout()
    fig.savefig(path)


def save_histogram(values: np.ndarray, path: Path, title: str = "", xlabel: str = "", bins: int = 50) -> None:
    """A histogram (e.g. of regression residuals) with the zero line marked."""
    fig = _figure(6, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(values[np.isfinite(values)], bins=bins, color="#4477aa")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
