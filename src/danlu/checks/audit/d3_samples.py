"""D3: look at samples exactly as the model receives them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from danlu.checks.audit.inputs import as_array, input_kind, split_item, to_chw
from danlu.checks.base import Check, CheckResult, register
from danlu.checks.context import Context
from danlu.errors import error_text
from danlu.plots import PLOTS_MISSING, plotting_available, save_image_grid
from danlu.report import Finding, Table

__all__ = ["SampleGrid", "first_batch"]

_GRID = 32
_ROWS = 12


def first_batch(ctx: Context) -> Any:
    """One batch from the recipe's training loader; retried on the loaded items if it fails."""
    try:
        loader = ctx.recipe.loaders(ctx.train, ctx.val)[0]
        return next(iter(loader))
    except StopIteration:
        raise
    except Exception:
        scan = ctx.scans["train"]
        good = scan.indices[np.setdiff1d(np.flatnonzero(scan.ok), scan.bad_positions)][:512]
        if not len(good):
            raise
        loader = ctx.recipe.loaders(Subset(ctx.train, good.tolist()), ctx.val)[0]
        return next(iter(loader))


@register
class SampleGrid(Check):
    """Look at samples exactly as the model receives them.

    Detects: The first batch of the recipe's own training loader (its transforms,
    augmentation, collate and shuffling included): a PNG grid of images titled with
    their targets, or a table of token ids / feature values / text for other inputs.
    Why: Bugs live between the files and the model: a transform that flips labels'
    meaning, an augmentation too strong to recognise the object, tokens that are all
    padding (000, 004).
    How: `recipe.loaders(train, val)[0]`, one batch; if that batch fails (e.g. an
    unreadable item, see D6) the loader is rebuilt on the items that loaded.
    Thresholds: None: this is for the eyes. It is "info", or "warn" when no batch can be
    drawn.
    Fix: None to apply: look at the grid or table; if what the model receives is not
    what you expect, fix the transforms or the collate_fn.
    Cannot see: anything beyond the first batch, and it judges nothing: the eyes do.
    """

    id = "D3"
    families = ("audit",)
    name = "samples as the model sees them"

    def run(self, ctx: Context) -> CheckResult:
        try:
            batch = first_batch(ctx)
        except Exception as exc:
            return CheckResult([Finding(
                self.id, self.name, "warn", f"could not draw a batch from the training loader: {error_text(exc, frame=True)}",
                cause="The recipe's training loader fails on its first batch.",
                fix="Run `danlu check` on the recipe (data interface, S13) to find the failing step.",
            )])
        x, y, _ = split_item(batch)
        xs = as_array(x)
        ys = as_array(y) if y is not None else None
        if xs is None or xs.ndim < 1:
            return self._other(x, y)
        n = min(len(xs), _GRID)
        xs = xs[:n]
        kind = input_kind(xs.shape[1:], xs.dtype)
        labels = _labels(ys, n)
        shape = f"batch {tuple(as_array(x).shape)} {as_array(x).dtype}"
        if kind == "image":
            return self._grid(ctx, to_chw(xs), labels, shape)
        return self._table(xs, labels, kind, shape)

    def _grid(self, ctx: Context, images: np.ndarray, labels: list[str], shape: str) -> CheckResult:
        lo, hi = float(np.nanmin(images)), float(np.nanmax(images))
        summary = f"{len(images)} training inputs as the model receives them ({shape}, values {lo:.3g}..{hi:.3g})"
        if not plotting_available():
            return CheckResult([Finding(self.id, self.name, "skip", f"{summary}; {PLOTS_MISSING}")])
        where = ctx.image_path("samples_train.png")
        if where is None:
            return CheckResult([Finding(self.id, self.name, "info", summary + "; no artefact folder to save the grid in")])
        path, rel = where
        save_image_grid(images, [f"y={t}" for t in labels], path,
                        title="training loader, first batch (each image min-max scaled for display)")
        return CheckResult([Finding(self.id, self.name, "info", f"{summary}: grid saved to {rel}",
                                    evidence={"image": rel, "shape": shape})], images=[rel])

    def _table(self, xs: np.ndarray, labels: list[str], kind: str, shape: str) -> CheckResult:
        rows = []
        for k in range(min(len(xs), _ROWS)):
            flat = xs[k].reshape(-1)
            head = ", ".join(_fmt(v) for v in flat[:16]) + (" ..." if flat.size > 16 else "")
            rows.append([k, labels[k] if k < len(labels) else "", head])
        title = {"tokens": "token ids", "features": "feature values"}.get(kind, "values")
        return CheckResult(
            [Finding(self.id, self.name, "info",
                     f"{len(xs)} training inputs as the model receives them ({shape}); first rows in the table")],
            tables=[Table(f"D3 training loader, first batch ({title})", ["#", "target", title], rows)],
        )

    def _other(self, x: Any, y: Any) -> CheckResult:
        items = list(x) if isinstance(x, (list, tuple)) else [x]
        targets = list(y) if isinstance(y, (list, tuple)) else [None] * len(items)
        rows = [[k, "" if k >= len(targets) else _short(targets[k]), _short(v)] for k, v in enumerate(items[:_ROWS])]
        return CheckResult(
            [Finding(self.id, self.name, "info", f"training batch of {type(x).__name__}; first items in the table")],
            tables=[Table("D3 training loader, first batch", ["#", "target", "input"], rows)],
        )


def _labels(ys: np.ndarray | None, n: int) -> list[str]:
    if ys is None:
        return [""] * n
    out = []
    for k in range(min(n, len(ys))):
        v = ys[k]
        out.append(_fmt(v.item()) if np.size(v) == 1 else f"{tuple(np.shape(v))}")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.3g}"
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return _fmt(v.item())
    return str(v)


def _short(v: Any, width: int = 80) -> str:
    text = repr(v) if not isinstance(v, str) else v
    return text if len(text) <= width else text[: width - 3] + "..."
