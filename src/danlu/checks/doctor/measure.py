"""Small measurements several doctor checks share: a loss as a float, accuracy, per-sample losses."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from danlu.checks.base import SkipCheck

__all__ = ["scalar", "close", "tensor_output", "accuracy", "per_sample_losses", "split", "with_inputs"]


def scalar(loss: Any) -> float:
    """A loss (tensor or number) as a Python float (the mean when it is not reduced)."""
    if isinstance(loss, torch.Tensor):
        return float(loss.detach().double().mean())
    return float(loss)


def close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def tensor_output(output: Any) -> torch.Tensor:
    """The output itself when it is one tensor; else SkipCheck with the reason."""
    if not isinstance(output, torch.Tensor):
        raise SkipCheck(f"the model output is a {type(output).__name__}, not a tensor")
    return output


def accuracy(output: Any, target: Any) -> float | None:
    """Share of class-index targets whose argmax over dim 1 is right (None when that does not apply)."""
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        return None
    if output.dim() < 2 or target.is_floating_point() or output.shape[0] != target.shape[0]:
        return None
    pred = output.argmax(1)
    if pred.shape != target.shape:
        return None
    keep = target != -100
    if not bool(keep.any()):
        return None
    return float((pred[keep] == target[keep]).float().mean())


def per_sample_losses(ctx, output: Any, target: Any) -> list[float] | None:
    """The recipe's loss of each sample alone (None when the loss does not split by sample)."""
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        return None
    if output.dim() == 0 or target.dim() == 0 or output.shape[0] != target.shape[0]:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = [scalar(ctx.loss(output[i:i + 1], target[i:i + 1])) for i in range(output.shape[0])]
    except Exception:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def split(batch: Any) -> tuple[torch.Tensor, Any]:
    """(inputs, target) of an ``(input, target)`` batch whose input is a tensor; else SkipCheck."""
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise SkipCheck(
            f"batches are {type(batch).__name__}, not (input, target) pairs; this check needs to "
            "change the input tensor"
        )
    inputs = batch[0]
    if not isinstance(inputs, torch.Tensor):
        raise SkipCheck(f"the batch input is a {type(inputs).__name__}, not a tensor")
    return inputs, batch[1]


def with_inputs(batch: Any, inputs: torch.Tensor) -> Any:
    """The same batch with its input replaced (same container type)."""
    items = list(batch)
    items[0] = inputs
    return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
