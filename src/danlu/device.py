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
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DanluError(f"{device!r} is not a device: use auto, cpu, cuda, cuda:1 or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DanluError("device='cuda' was asked for, but torch sees no CUDA device here; use device='cpu' (or 'auto').")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DanluError(f"device {device!r} does not exist: torch sees {torch.cuda.device_count()} CUDA device(s), "
                         "numbered from 0.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DanluError("device='mps' was asked for, but torch sees no Apple GPU here; use device='cpu' (or 'auto').")
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
