"""Where tensors go: choosing the device and moving nested batches to it (one place for all)."""

from __future__ import annotations

from typing import Any

import torch

from danlu.errors import DanluError

__all__ = ["resolve_device", "to_device"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """'auto'/None -> CUDA when available, else CPU; anything else as given (checked)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DanluError("device='cuda' was asked for, but torch sees no CUDA device here; use device='cpu' (or 'auto').")
    return dev


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor in a nested batch (tuples, named tuples, lists, dicts) to a device."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        moved = [to_device(b, device) for b in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
