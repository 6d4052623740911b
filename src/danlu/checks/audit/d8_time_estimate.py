"""D8: time per sample, and the estimated time of an epoch and of the recipe's full training."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from danlu.checks.base import Check, CheckResult, SkipCheck, register
from danlu.checks.context import Context
from danlu.device import to_device
from danlu.errors import error_text
from danlu.report import Finding

__all__ = ["Timing", "fit_line", "format_seconds", "to_device"]

_STEPS = 4


def fit_line(n1: int, t1: float, n2: int, t2: float) -> tuple[float, float]:
    """(fixed seconds, seconds per sample) of a pass from two timed passes of n1 < n2 samples."""
    if n2 > n1 and t2 > t1:
        per = (t2 - t1) / (n2 - n1)
        return max(0.0, t1 - per * n1), per
    return 0.0, t2 / max(n2, 1)


def format_seconds(s: float) -> str:
    if not np.isfinite(s):
        return "?"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _batch_size(batch: Any) -> int:
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    if isinstance(x, dict):
        x = next(iter(x.values()))
    return len(x) if hasattr(x, "__len__") else 1


@register
class Timing(Check):
    """Time per sample, and the estimated time of an epoch and of the recipe's full training.

    Detects: How long an epoch and the whole training will take, split into data loading
    and compute per sample, before anything is trained.
    Why: Knowing that a run takes 9 hours before starting it decides the experiment plan
    (003): shrink the data or the model first (H3, H6).
    How: Loading: the recipe's own training loader (transforms, collate, shuffling,
    workers), timed when 1/100 and when 1/10 of the audited training items have arrived;
    a line through the two points gives the time per sample and the fixed cost per epoch
    (iterator and worker start-up). Compute: a few training steps (forward, loss,
    backward, optimizer step) of a fresh model on the first batches, after one warm-up
    step, and a forward pass on a validation batch. epoch = fixed + N x (load + train
    step) per sample (with num_workers > 0 loading overlaps compute, so the larger of
    the two counts), validation = N_val x (its own loader's load + forward), the
    validation probes (a batch every probe_every steps); full training = epochs x (epoch
    + validation) + probes. A test holds it within 2x of the real `danlu train` time on
    the demo and on a recipe with a slow loader.
    Thresholds: Loading slower than compute, in an epoch of more than a second, warns
    (use workers).
    Fix: num_workers > 0, caching decoded data, or lighter transforms.
    Cannot see: epochs that slow down as they go (growing caches, thermal throttling),
    early stopping that ends training sooner, and time on other hardware; it times a few
    batches on the machine it runs on.
    """

    id = "D8"
    families = ("audit",)
    name = "time estimate"

    def run(self, ctx: Context) -> CheckResult:
        scan = ctx.scans["train"]
        good = scan.indices[np.setdiff1d(np.flatnonzero(scan.ok), scan.bad_positions)]
        if len(good) < 2:
            raise SkipCheck("fewer than 2 readable training items")
        n1 = max(1, round(len(good) / 100))
        n2 = max(n1 + 1, round(len(good) / 10))
        advance = ctx.advance("timing 1/100 and 1/10 of an epoch", n2)
        try:
            (n1, t1), (n2, t2), batches = self._load(ctx.recipe.loaders(ctx.train, ctx.val)[0], n1, n2, advance)
        except Exception:
            try:  # an unreadable item on the way (D6): time the loader over the items that loaded
                loader = ctx.recipe.loaders(Subset(ctx.train, good.tolist()), ctx.val)[0]
                (n1, t1), (n2, t2), batches = self._load(loader, n1, n2, advance)
            except Exception as exc:
                return CheckResult([Finding(self.id, self.name, "warn",
                                            f"timing the training loader failed: {error_text(exc, frame=True)}",
                                            cause="The recipe's training loader fails within its first batches.",
                                            fix="Run `danlu check` on the recipe (S12, S13).")])
        fixed, load = fit_line(n1, t1, n2, t2)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        note = ""
        try:
            step, infer = self._compute(ctx, batches, device)
        except Exception as exc:
            step, infer = float("nan"), float("nan")
            note = f"; compute not timed ({error_text(exc, frame=True)}): loading only"
        n, n_val = scan.size, ctx.scans["val"].size
        val_fixed, val_load = self._val_load(ctx, n_val, fixed, load)
        workers = ctx.recipe.num_workers
        per_train = (max(load, step) if workers else load + step) if np.isfinite(step) else load
        per_val = (max(val_load, infer) if workers else val_load + infer) if np.isfinite(infer) else val_load
        epoch = fixed + n * per_train
        val_epoch = val_fixed + n_val * per_val
        steps = ctx.recipe.epochs * max(1, math.ceil(n / max(1, ctx.batch_size)))
        probes = steps // max(1, ctx.recipe.probe_every)          # a random validation batch every probe_every steps
        probe_seconds = probes * min(ctx.batch_size, n_val) * per_val
        total = ctx.recipe.epochs * (epoch + val_epoch) + probe_seconds
        evidence = {
            "subsets": {"1/100": {"samples": n1, "seconds": t1}, "1/10": {"samples": n2, "seconds": t2}},
            "load_seconds_per_sample": load,
            "fixed_seconds_per_pass": fixed,
            "train_step_seconds_per_sample": step,
            "forward_seconds_per_sample": infer,
            "device": str(device),
            "num_workers": workers,
            "train_size": n,
            "val_size": n_val,
            "epoch_seconds": epoch,
            "val_seconds": val_epoch,
            "val_load_seconds_per_sample": val_load,
            "probes": probes,
            "probe_seconds": probe_seconds,
            "epochs": ctx.recipe.epochs,
            "total_seconds": total,
        }
        compute = f", train step {format_seconds(step)}/sample" if np.isfinite(step) else ""
        summary = (f"loading {format_seconds(load)}/sample (1/100: {n1} in {format_seconds(t1)}, "
                   f"1/10: {n2} in {format_seconds(t2)}){compute} on {device}; epoch of {n:,} ≈ "
                   f"{format_seconds(epoch)} + validation {format_seconds(val_epoch)}; "
                   f"{ctx.recipe.epochs} epochs ≈ {format_seconds(total)}{note}")
        if np.isfinite(step) and load > step and n * load > 1.0 and not workers:
            return CheckResult([Finding(
                self.id, self.name, "warn", summary + f"; loading takes {load / (load + step):.0%} of each step",
                evidence=evidence,
                cause="Data loading, not compute, sets the training speed.",
                fix="Set num_workers (e.g. num_workers=4) so loading overlaps compute; cache decoded data; "
                    "move heavy transforms offline.",
            )])
        return CheckResult([Finding(self.id, self.name, "info", summary, evidence=evidence)])

    def _val_load(self, ctx: Context, n_val: int, fixed: float, load: float) -> tuple[float, float]:
        """(fixed seconds, seconds per sample) of the validation loader, timed like the training one
        (it may read another dataset: augmented training items, plain validation tensors)."""
        if n_val < 2:
            return fixed, load
        v1 = max(1, round(n_val / 100))
        v2 = min(n_val, max(v1 + 1, round(n_val / 10), 2 * ctx.batch_size))
        try:
            (v1, s1), (v2, s2), _ = self._load(ctx.loaders[1], v1, v2, lambda k: None)
        except Exception:
            return fixed, load
        return fit_line(v1, s1, v2, s2)

    def _load(self, loader, n1: int, n2: int, advance) -> tuple[tuple[int, float], tuple[int, float], list]:
        """Iterate a training loader until n1, then n2 samples have arrived: ((samples, seconds), (samples,
        seconds), the first batches). Iterator creation (worker start-up) counts, as it does in an epoch."""
        kept, points, seen = [], [], 0
        start = time.perf_counter()
        for batch in loader:
            size = _batch_size(batch)
            seen += size
            if len(kept) <= _STEPS:
                kept.append(batch)
            advance(size)
            while len(points) < 2 and seen >= (n1, n2)[len(points)]:
                points.append((seen, time.perf_counter() - start))
            if len(points) == 2:
                break
        if not kept:
            raise RuntimeError("the training loader yields no batches")
        while len(points) < 2:  # an epoch shorter than n2 samples
            points.append((seen, time.perf_counter() - start))
        return points[0], points[1], kept

    def _compute(self, ctx: Context, batches: list, device: torch.device) -> tuple[float, float]:
        """Seconds per sample of the recipe's training step, and of a forward pass on a validation batch."""
        recipe = ctx.recipe
        model = ctx.new_model().to(device)
        step = ctx.train_step(model)
        step.device = device

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        step(batches[0])  # warm-up: allocations, lazy init
        timed = batches[1:] or batches[:1]
        sync()
        start = time.perf_counter()
        for b in timed:
            step(b)
        sync()
        per_step = (time.perf_counter() - start) / sum(_batch_size(b) for b in timed)

        val_batch = next(iter(ctx.loaders[1]))
        model.eval()
        with torch.no_grad():
            recipe.forward(model, to_device(val_batch, device))  # warm-up
            sync()
            start = time.perf_counter()
            recipe.forward(model, to_device(val_batch, device))
            sync()
        per_fwd = (time.perf_counter() - start) / _batch_size(val_batch)
        return per_step, per_fwd
