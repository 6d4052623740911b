"""How a classification loss reads a model's output: where the classes are, and how many.

A model's output is not always ``[B, C]``. A language model gives ``[B, T, V]`` for
targets ``[B, T]`` (its loss flattens both), a segmentation head ``[B, C, H, W]`` for
``[B, H, W]``, a sequence classifier ``[B, C]`` for ``[B]``. Reading "the number of
classes" off a fixed axis calls a 60-word vocabulary "20 classes" (the sequence length).
:func:`class_layout` finds the class dimension from the shapes, the way cross-entropy
reads them, and when the shapes allow two readings (``[B, C, C]``), asks the recipe's own
loss which one it uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ClassLayout", "class_layout"]


@dataclass(frozen=True)
class ClassLayout:
    """Class scores along `dim` of the output: `classes` of them, `per_sample` predictions a sample."""

    dim: int
    classes: int
    per_sample: int

    def logits_last(self, output: torch.Tensor) -> torch.Tensor:
        """The output as [N, classes] rows, one per prediction."""
        return output.movedim(self.dim, -1).reshape(-1, self.classes)

    def predicted(self, output: torch.Tensor) -> torch.Tensor:
        """The predicted class of each prediction, shaped like the target."""
        return output.argmax(self.dim)

    def one_hot(self, target: torch.Tensor, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Confident correct scores for `target` (an output that should drive the loss to its floor)."""
        hot = torch.nn.functional.one_hot(target.long().clamp(0, self.classes - 1), self.classes).to(dtype)
        return (hot * scale).movedim(-1, self.dim)


def _candidates(out: torch.Size, tgt: torch.Size) -> list[int]:
    dims: list[int] = []
    if len(out) == len(tgt) + 1 and len(out) >= 2:
        if out[0] == tgt[0] and tuple(out[2:]) == tuple(tgt[1:]):
            dims.append(1)                       # PyTorch's own layout: [B, C, d1, ...]
        if tuple(out[:-1]) == tuple(tgt) and len(out) - 1 not in dims:
            dims.append(len(out) - 1)            # classes last: [B, ..., C] (the loss flattens or permutes)
    elif len(out) == 2 and tgt.numel() == out[0] and len(tgt) >= 1:
        dims.append(1)                           # the forward flattened [B, T, C] to [B*T, C]
    return dims


def class_layout(output: Any, target: Any, loss: Callable[[Any, Any], Any] | None = None) -> ClassLayout | None:
    """Where a cross-entropy-style loss finds the classes in `output` for class-index `target`.

    None when the pair does not look like class scores and class indices (float targets,
    non-tensor outputs, shapes that fit neither reading). With two possible readings, the
    recipe's `loss` decides: confident correct scores along the right dimension give it
    the lower value.
    """
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        return None
    if target.is_floating_point() or target.is_complex() or not output.is_floating_point():
        return None
    dims = _candidates(output.shape, target.shape)
    if not dims:
        return None
    per_sample = int(math.prod(target.shape[1:])) if target.dim() > 1 else 1
    if len(output.shape) == 2 and target.numel() == output.shape[0] and target.dim() > 1:
        per_sample = int(math.prod(target.shape[1:]))
    layouts = [ClassLayout(d, int(output.shape[d]), per_sample) for d in dims]
    if len(layouts) == 1 or loss is None:
        return layouts[0]
    scores = []
    for layout in layouts:
        try:
            with torch.no_grad():
                scaled = layout.one_hot(target.reshape(output.shape[:layout.dim] + output.shape[layout.dim + 1:]),
                                        20.0, output.dtype)
                value = loss(scaled, target)
            scores.append(float(value.detach().double().mean()) if isinstance(value, torch.Tensor) else float(value))
        except Exception:
            scores.append(math.inf)
    best = min(range(len(layouts)), key=lambda i: (scores[i], i))
    return layouts[best]
