"""What a dataset item is made of: arrays, their kind (image, sequence, tokens, features), and content hashes.

The audit looks at items exactly as a recipe's datasets return them. This module turns
those values (torch tensors, numpy arrays, Python numbers, PIL images, strings, dicts)
into numpy arrays where it can, names the kind of input, and hashes content.

Hashing (D5): an array's hash is blake2b-64 of its raw bytes (for arrays of at most
8 bytes, such as labels, the bytes themselves through a bijective mix), combined with
a constant derived from its dtype and shape, so equal bytes under a different dtype or shape do
not collide. Rows of a stacked batch hash to exactly what the same arrays hash to one
by one (`hash_rows` is the only array hasher), which is what lets the audit read
TensorDatasets in bulk and still compare them with item-by-item datasets.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any

import numpy as np
import torch

from danlu.batches import TARGET_KEYS, input_key

__all__ = [
    "as_array",
    "dtype_name",
    "split_item",
    "input_kind",
    "feature_axis",
    "to_chw",
    "hash_rows",
    "hash_value",
]



_TORCH_NAMES: dict[torch.dtype, str] = {}
_NUMPY_OK: dict[torch.dtype, bool] = {}


def dtype_name(value: Any) -> str:
    """'float32', 'int64', ... for a tensor or array (torch and numpy spell them alike)."""
    if isinstance(value, torch.Tensor):
        name = _TORCH_NAMES.get(value.dtype)
        if name is None:
            name = _TORCH_NAMES[value.dtype] = str(value.dtype).removeprefix("torch.")
        return name
    if isinstance(value, np.ndarray):
        return value.dtype.name
    return np.asarray(value).dtype.name


def as_array(value: Any) -> np.ndarray | None:
    """A numpy view of a tensor/array/number/PIL image, or None for anything else (str, dict, ...)."""
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        ok = _NUMPY_OK.get(value.dtype)
        if ok is None:
            ok = _NUMPY_OK[value.dtype] = _numpy_ok(value.dtype)
        return value.numpy() if ok else value.float().numpy()
    if isinstance(value, np.ndarray):
        return value if value.dtype != object else None
    if isinstance(value, (bool, int, float, np.generic)):
        return np.asarray(value)
    if type(value).__module__.startswith("PIL."):
        return np.asarray(value)
    return None


def _numpy_ok(dtype: torch.dtype) -> bool:
    try:  # bfloat16 (and other exotic dtypes) have no numpy twin: they are read as float32
        torch.empty(0, dtype=dtype).numpy()
        return True
    except (TypeError, RuntimeError):
        return False


def split_item(item: Any) -> tuple[Any, Any, Any]:
    """(input, target, metadata) of a dataset item; target/metadata are None when absent.

    Items are (input, target) pairs by the recipe contract; a third element is read as
    metadata (C2 slices). Dict items are split by their usual key names.
    """
    if isinstance(item, (tuple, list)):
        if len(item) >= 3:
            return item[0], item[1], item[2]
        if len(item) == 2:
            return item[0], item[1], None
        if len(item) == 1:
            return item[0], None, None
    if isinstance(item, dict):
        xk = input_key(item)
        yk = next((k for k in TARGET_KEYS if k in item), None)
        if xk is not None:
            meta = {k: v for k, v in item.items() if k not in (xk, yk)} or None
            return item[xk], (item[yk] if yk else None), meta
    return item, None, None


#: An image's sides are at least this long, and the longer at most IMAGE_ASPECT times the shorter.
IMAGE_MIN_SIDE = 8
IMAGE_ASPECT = 4
_CHANNELS = (1, 3, 4)


def _image_sides(h: int, w: int) -> bool:
    return min(h, w) >= IMAGE_MIN_SIDE and max(h, w) <= IMAGE_ASPECT * min(h, w)


def input_kind(shape: tuple[int, ...], dtype: np.dtype) -> str:
    """The kind of one item's input, from its shape and dtype.

    'tokens': 1-D integers; 'features': 1-D or scalar numbers; 'image': 2-D (H, W) or 3-D
    (C, H, W) / (H, W, C) whose sides are image-like (each at least 8, neither more than 4x
    the other); 'sequence': other 2-D arrays, steps x features such as (20, 1) or (100, 8)
    for a recurrent net or (12, 1000) for a Conv1d; 'other': anything else.
    """
    nd = len(shape)
    if nd == 1 and dtype.kind in "iu":
        return "tokens"
    if nd <= 1:
        return "features"
    if nd == 2:
        return "image" if _image_sides(*shape) else "sequence"
    if nd == 3:
        if (shape[0] in _CHANNELS or shape[0] < min(shape[1:])) and _image_sides(shape[1], shape[2]):
            return "image"
        if shape[2] in _CHANNELS and _image_sides(shape[0], shape[1]):
            return "image"
    return "other"


def feature_axis(shape: tuple[int, ...]) -> int:
    """For a 'sequence' item (2-D), the axis that holds features or channels: the shorter one
    ((T, F) for a recurrent net, (C, T) for a Conv1d); the last one when both are equal."""
    return 0 if shape[0] < shape[1] else 1


def to_chw(batch: np.ndarray) -> np.ndarray:
    """A stacked batch of images as (B, C, H, W): adds the channel of (B, H, W), moves HWC channels first."""
    if batch.ndim == 3:
        return batch[:, None]
    c_first, c_last = batch.shape[1], batch.shape[-1]
    if c_first not in (1, 3, 4) and c_last in (1, 3, 4):
        return np.moveaxis(batch, -1, 1)
    return batch


def _shape_constant(dtype: str, shape: tuple[int, ...]) -> int:
    digest = hashlib.blake2b(f"{dtype}{tuple(shape)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def hash_rows(batch: np.ndarray, dtype: str | None = None) -> np.ndarray:
    """uint64 content hash of each row of a stacked batch (row = one item's array).

    `dtype` is the name of the dtype the dataset produced (it may differ from the numpy
    dtype, e.g. bfloat16 arrives here as float32); it defaults to the batch's dtype.
    """
    batch = np.ascontiguousarray(batch)
    n = batch.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    const = np.uint64(_shape_constant(dtype or batch.dtype.name, batch.shape[1:]))
    flat = batch.reshape(n, -1)
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    flat = flat.view(np.uint8)
    if flat.shape[1] <= 8:  # scalars (labels): the bytes themselves, bijectively mixed; no collisions
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, : flat.shape[1]] = flat
        return _mix64(padded.view(np.uint64).reshape(n)) ^ const
    blake = hashlib.blake2b
    digests = b"".join([blake(row, digest_size=8).digest() for row in flat])
    return np.frombuffer(digests, dtype=np.uint64) ^ const


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that spreads every input bit."""
    z = z.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def hash_value(value: Any) -> int:
    """Content hash of any item value; equals `hash_rows` of the array for array-like values."""
    arr = as_array(value)
    if arr is not None:
        return int(hash_rows(arr[None], dtype_name(value))[0])
    h = hashlib.blake2b(digest_size=8)
    _feed(h, value)
    return int.from_bytes(h.digest(), "little")


def _feed(h, value: Any) -> None:
    arr = as_array(value)
    if arr is not None:
        h.update(b"a")
        h.update(int(hash_rows(arr[None], dtype_name(value))[0]).to_bytes(8, "little"))
    elif value is None:
        h.update(b"n")
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(data))
        h.update(data)
    elif isinstance(value, (bytes, bytearray)):
        h.update(b"b%d:" % len(value))
        h.update(value)
    elif isinstance(value, dict):
        h.update(b"d%d:" % len(value))
        for key in sorted(value, key=str):
            _feed(h, str(key))
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(b"l%d:" % len(value))
        for v in value:
            _feed(h, v)
    else:
        try:
            h.update(b"p" + pickle.dumps(value, protocol=4))
        except Exception:
            h.update(b"r" + repr(value).encode())
