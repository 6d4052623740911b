"""Seeding and RNG state (S11): same seed, same result; checkpoints that resume exactly.

- :func:`seed_everything` seeds Python, NumPy and torch (CPU and CUDA) and, by default,
  switches torch to deterministic algorithms.
- :func:`rng_state` / :func:`set_rng_state` capture and restore every global RNG, for
  checkpoints; the state holds only tensors and plain Python values, so it survives
  ``torch.save`` / ``torch.load`` even with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["seed_everything", "rng_state", "set_rng_state"]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device).

    With ``deterministic=True`` (the default) also ask torch for deterministic kernels
    (``use_deterministic_algorithms(True, warn_only=True)``: an op with no deterministic
    implementation warns instead of failing), turn cuDNN's deterministic mode on and its
    benchmark autotuner off, and set ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when unset (cuBLAS
    needs it for reproducible matmuls; it only takes effect if set before CUDA starts, so
    call this early). ``deterministic=False`` switches the deterministic flags back off.
    DataLoader workers are seeded by the recipe's loaders (``torch.initial_seed()`` based).
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too (lazily)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    # torch's CPU kernels are deterministic already; the global flag only matters for CUDA,
    # and setting it imports torch._inductor (about 7 s on a small CPU), so leave it alone there.
    accelerated = torch.cuda.is_available()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if accelerated:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        if accelerated or torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every global RNG's state (Python, NumPy, torch CPU, torch CUDA), for a checkpoint.

    Pass ``generators`` (e.g. ``{"train_loader": gen}``) to include explicit
    ``torch.Generator`` objects such as a DataLoader's shuffling generator; the global
    states do not cover them. The result holds only tensors, ints, floats, strings,
    tuples and lists, so ``torch.load(..., weights_only=True)`` can read it back.
    NumPy ``Generator`` objects made with ``np.random.default_rng`` are not global and
    are not captured.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if generators:
        state["generators"] = {key: gen.get_state() for key, gen in generators.items()}
    return state


def set_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Restore what :func:`rng_state` captured; drawing afterwards repeats exactly.

    CUDA states are restored for as many devices as both the saved state and this machine
    have (a CPU checkpoint resumed on a GPU leaves the GPU generators as seeded). Named
    ``generators`` are restored from the state's entries of the same name.
    """
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    npst = state["numpy"]
    keys = npst["keys"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state(
        (npst["bit_generator"], keys.astype(np.uint32), int(npst["pos"]),
         int(npst["has_gauss"]), float(npst["cached_gaussian"]))
    )
    torch.set_rng_state(_byte_tensor(state["torch"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        count = min(len(cuda), torch.cuda.device_count())
        for index in range(count):
            torch.cuda.set_rng_state(_byte_tensor(cuda[index]), index)
    if generators:
        saved = state.get("generators") or {}
        missing = sorted(set(generators) - set(saved))
        if missing:
            raise KeyError(
                f"The RNG state has no generator named {', '.join(missing)}; it has "
                f"{', '.join(sorted(saved)) or 'none'}. Capture it with rng_state(generators=...)."
            )
        for key, gen in generators.items():
            gen.set_state(_byte_tensor(saved[key]))


def _byte_tensor(value: Any) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return tensor.detach().to("cpu", torch.uint8)
