"""The data version (E1): sizes plus a hash of a deterministic sample of each split."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["data_fingerprint"]

_FINGERPRINT_SAMPLES = 64


def data_fingerprint(train: Any, val: Any) -> dict[str, Any]:
    """Sizes plus sha256 of a deterministic sample of each split (E1 "data version").

    Up to 64 evenly spaced items per split are hashed: tensors and arrays by dtype,
    shape and bytes; numbers and strings by type and repr; tuples, lists, dicts and
    dataclasses recursively. Equal data gives equal hashes in any process; changing a
    sampled item, the size, or an item's dtype changes them. Items between the sampled
    indices are not read, so the cost does not grow with the dataset.
    """
    splits = {"train": _split_fingerprint(train), "val": _split_fingerprint(val)}
    combined = hashlib.sha256()
    for name, info in splits.items():
        combined.update(f"{name}:{info['size']}:{info['sha256']};".encode())
    return {**splits, "sha256": combined.hexdigest()}


def _split_fingerprint(dataset: Any) -> dict[str, Any]:
    if dataset is None:
        return {"size": None, "sampled": 0, "sha256": None, "type": None}
    kind = type(dataset).__name__
    try:
        size = len(dataset)
    except TypeError:
        return {"size": None, "sampled": 0, "sha256": None, "type": kind,
                "note": "dataset has no len(); not fingerprinted"}
    indices = _sample_indices(size, _FINGERPRINT_SAMPLES)
    digest = hashlib.sha256(f"size={size};".encode())
    for index in indices:
        digest.update(f"[{index}]".encode())
        _hash_value(digest, dataset[index])
    return {"size": size, "sampled": len(indices), "sha256": digest.hexdigest(), "type": kind}


def _sample_indices(size: int, count: int) -> list[int]:
    if size <= 0:
        return []
    if size <= count:
        return list(range(size))
    return sorted({round(i * (size - 1) / (count - 1)) for i in range(count)})


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _hash_value(digest: hashlib._Hash, value: Any) -> None:
    """Feed a canonical, type-tagged encoding of ``value`` into ``digest``."""
    update = digest.update
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        tensor = tensor.cpu().resolve_conj().resolve_neg().contiguous()
        update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.numel():
            update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            update(f"O{value.shape}".encode())
            for item in value.ravel().tolist():
                _hash_value(digest, item)
        else:
            update(f"A{value.dtype.str}{value.shape}".encode())
            update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, np.generic):
        update(f"G{value.dtype.str}".encode())
        update(value.tobytes())
    elif value is None or isinstance(value, (bool, int, float, complex, str)):
        update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        update(f"B{len(data)}:".encode())
        update(data)
    elif isinstance(value, Mapping):
        update(f"D{len(value)}(".encode())
        for key in sorted(value, key=repr):
            _hash_value(digest, key)
            _hash_value(digest, value[key])
        update(b")")
    elif isinstance(value, (tuple, list)):
        update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}(".encode())
        for item in value:
            _hash_value(digest, item)
        update(b")")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        update(f"C{type(value).__name__}(".encode())
        for f in dataclasses.fields(value):
            update(f.name.encode())
            _hash_value(digest, getattr(value, f.name))
        update(b")")
    elif hasattr(value, "tobytes") and hasattr(value, "mode") and hasattr(value, "size"):
        update(f"I{value.mode}{value.size}".encode())  # PIL images
        update(value.tobytes())
    else:
        update(f"R{type(value).__name__}:{_ADDRESS.sub('', repr(value))};".encode())
