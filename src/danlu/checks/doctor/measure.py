"""Small measurements several doctor checks share: a loss as a float, accuracy, per-sample losses."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from danlu.batches import INPUT_KEYS, input_key
from danlu.checks.base import SkipCheck
from danlu.outputs import class_layout

__all__ = ["scalar", "close", "tensor_output", "accuracy", "per_sample_losses", "couples_samples", "split",
           "with_inputs", "unregistered_modules"]


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


def accuracy(output: Any, target: Any, loss=None) -> float | None:
    """Share of class-index targets predicted right, reading the classes where the loss does
    (danlu.outputs.class_layout; None when the output is not class scores for the target)."""
    layout = class_layout(output, target, loss)
    if layout is None:
        return None
    pred = layout.predicted(output).reshape(-1)
    target = target.reshape(-1)
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


def couples_samples(loss_fn, output: torch.Tensor, target: torch.Tensor) -> bool | None:
    """Whether the loss's gradient for sample 0's output moves when only the other samples'
    targets change: a loss that compares every output with every target (shapes that broadcast
    [B,1] against [B]) does, a per-sample loss of any output layout (a mean and a variance
    against one target) does not. None when it cannot be told (a batch under 2, a loss that fails)."""
    if output.dim() == 0 or output.shape[0] < 2 or target.dim() == 0 or target.shape[0] != output.shape[0] \
            or not target.is_floating_point():
        return None
    others = target.clone()
    others[1:] = others[1:] + 1.0 + others[1:].abs()

    def grad(t: torch.Tensor) -> torch.Tensor:
        out = output.detach().float().clone().requires_grad_(True)
        with torch.enable_grad():
            value = loss_fn(out, t)
            value = value.mean() if isinstance(value, torch.Tensor) else value
            (g,) = torch.autograd.grad(value, out)
        return g[0]

    try:
        first, second = grad(target), grad(others)
    except Exception:
        return None
    return not torch.allclose(first, second, rtol=1e-5, atol=1e-8)


def split(batch: Any) -> tuple[torch.Tensor, Any]:
    """(inputs, target) of an ``(input, target)`` batch, or of a dict batch with an input key
    (``input_ids``, ``pixel_values``, ``x``: INPUT_KEYS; the target is then the rest of the
    dict), whose input is a tensor; else SkipCheck."""
    if isinstance(batch, Mapping):
        key = input_key(batch)
        if key is None:
            raise SkipCheck(f"dict batches with keys {', '.join(map(str, batch))}: none of them is a known input "
                            f"name ({', '.join(INPUT_KEYS[:4])}, ...); this check needs to change the input tensor")
        inputs, target = batch[key], {k: v for k, v in batch.items() if k != key}
    elif isinstance(batch, (list, tuple)) and len(batch) >= 2:
        inputs, target = batch[0], batch[1]
    else:
        raise SkipCheck(
            f"batches are {type(batch).__name__}, not (input, target) pairs; this check needs to "
            "change the input tensor"
        )
    if not isinstance(inputs, torch.Tensor):
        raise SkipCheck(f"the batch input is a {type(inputs).__name__}, not a tensor")
    return inputs, target


def with_inputs(batch: Any, inputs: torch.Tensor) -> Any:
    """The same batch with its input replaced (same container type)."""
    if isinstance(batch, Mapping):
        changed = dict(batch)
        changed[input_key(batch)] = inputs
        try:
            return type(batch)(changed)
        except Exception:
            return changed
    items = list(batch)
    items[0] = inputs
    return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)


def unregistered_modules(model: nn.Module) -> list[tuple[str, str]]:
    """Modules reachable from attributes (lists, tuples, dicts, up to two levels) that are not
    registered submodules: (attribute path, module type), e.g. ('blocks[0]', 'Linear')."""
    registered = {id(m) for m in model.modules()}
    found: list[tuple[str, str]] = []
    seen: set[int] = set()

    def visit(value, path: str, depth: int) -> None:
        if isinstance(value, nn.Module):
            if id(value) not in registered and id(value) not in seen:
                seen.add(id(value))
                found.append((path, type(value).__name__))
            return
        if depth >= 3:
            return
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{path}[{i}]", depth + 1)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{path}[{key!r}]", depth + 1)

    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr.startswith("_") or isinstance(value, nn.Module):
                continue
            visit(value, f"{name + '.' if name else ''}{attr}", 1)
    return found
