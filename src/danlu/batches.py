"""Small operations on nested batches and items: their leaves, size, content hash, and
indices spread over a dataset. (Moving to a device is danlu.device.to_device.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["INPUT_KEYS", "TARGET_KEYS", "batch_size_of", "input_key", "leaves", "fingerprint", "spread"]

#: Where dict items and batches keep the model's input, most specific first (Hugging Face's names,
#: then the usual ones), and the target.
INPUT_KEYS = ("input_ids", "pixel_values", "input_values", "input_features", "input", "inputs", "x", "image",
              "images", "features", "text")
TARGET_KEYS = ("target", "targets", "label", "labels", "y")


def input_key(item: Mapping) -> str | None:
    """The key of a dict item's or batch's input (one of INPUT_KEYS), or None."""
    return next((k for k in INPUT_KEYS if k in item), None)


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


def spread(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n), always including 0 and n-1."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
