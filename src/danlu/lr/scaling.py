"""Batch size and learning rate move together (T6): the linear and square-root rules."""

from __future__ import annotations

import math

from danlu.errors import DanluError
from danlu.report import Finding

__all__ = ["scale_lr", "batch_scaling_finding"]


def scale_lr(lr: float, batch_ref: int, batch_new: int) -> dict[str, float]:
    """LR for a new batch size (T6): linear rule (lr·k, keeps the update per sample) and
    square-root rule (lr·√k, keeps the update's variance), with k = batch_new / batch_ref."""
    if lr <= 0 or batch_ref <= 0 or batch_new <= 0:
        raise DanluError(f"scale_lr needs a positive lr and batch sizes (got {lr}, {batch_ref}, {batch_new}).")
    k = batch_new / batch_ref
    return {"factor": k, "linear": lr * k, "sqrt": lr * math.sqrt(k)}


def batch_scaling_finding(lr: float, batch_ref: int, batch_new: int, ref_name: str = "the reference run") -> Finding:
    """A T6 finding: the reference LR rescaled to a new batch size, both rules."""
    s = scale_lr(lr, batch_ref, batch_new)
    same = batch_ref == batch_new
    return Finding(
        id="T6", name="batch scaling", status="pass" if same else "info",  # type: ignore[arg-type]
        summary=(f"batch size {batch_new} equals {ref_name}'s; keep lr {lr:.2g}" if same else
                 f"batch {batch_ref} → {batch_new} (×{s['factor']:.3g}) from {ref_name}'s lr {lr:.2g}: "
                 f"linear rule {s['linear']:.2g}, square-root rule {s['sqrt']:.2g}"),
        evidence={"ref_lr": lr, "ref_batch": batch_ref, "batch": batch_new, **s},
        fix="" if same else ("Linear scaling is the more common choice; prefer the square-root rule "
                             "for adaptive optimizers (Adam) or large factors, and add warmup (T4, T6)."),
    )
