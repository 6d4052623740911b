"""Small operations on batches: move to a device, find the input and target, swap the input.

The recipe contract says a batch is ``(input, target)`` unless the recipe overrides
``forward()``. Checks that need to change the input (zero it, ask for its gradient,
measure its scale) go through :func:`split` and :func:`with_inputs`; when a batch has
another shape they raise :class:`SkipCheck` with the reason instead of guessing.
"""

from __future__ import annotations

from typing import Any

import torch

from danlu.device import to_device
from danlu.checks.doctor.base import SkipCheck

__all__ = ["to_device", "split", "with_inputs", "batch_size_of", "leaves", "fingerprint"]


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


def batch_size_of(batch: Any) -> int:
    """The leading dimension of the first tensor in the batch (0 when there is none)."""
    for leaf in leaves(batch):
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    return 0


def leaves(value: Any) -> list[Any]:
    """Flatten nested tuples/lists/dicts into their leaves, in a stable order."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in leaves(item)]
    if isinstance(value, dict):
        return [leaf for key in sorted(value, key=str) for leaf in leaves(value[key])]
    return [value]


def fingerprint(value: Any) -> str:
    """A content hash of a nested value (tensors, arrays, numbers, strings) for equality tests."""
    import hashlib

    import numpy as np

    digest = hashlib.sha1()
    for leaf in leaves(value):
        if isinstance(leaf, torch.Tensor):
            t = leaf.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.dtype in (torch.bfloat16, torch.float16):
                t = t.float()
            digest.update(t.resolve_conj().resolve_neg().numpy().tobytes())
        elif isinstance(leaf, np.ndarray):
            arr = np.ascontiguousarray(leaf)
            digest.update(f"A{arr.dtype}{arr.shape}".encode())
            digest.update(arr.tobytes())
        else:
            digest.update(f"V{type(leaf).__name__}:{leaf!r}".encode())
    return digest.hexdigest()
