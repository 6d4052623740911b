"""How fast the audit hashes samples for duplicates and leakage (D5). Target: >= 100,000 small samples/s.

    python benchmarks/hash_speed.py            # 200,000 samples of 1x8x8 float32 + an int64 label
    python benchmarks/hash_speed.py --n 50000 --shape 3,32,32

Three measurements, best of --repeat runs each:
  hash_rows       the hash function alone on a stacked array (dtype + shape + bytes, blake2b-64)
  scan (tensors)  the audit's full pass over a TensorDataset (read in bulk): hashes of inputs and
                  targets, NaN/Inf, per-channel moments, near-duplicate embeddings (10,000 kept)
  scan (items)    the same pass over a map-style Dataset read item by item via __getitem__
The naive baseline is what a user would write: hashlib.sha256 of each item's tensor bytes in a loop.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import time

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from danlu.checks.audit.inputs import hash_rows
from danlu.checks.audit.scan import scan_split
from danlu.checks.context import NEAR_MAX


class ItemDataset(Dataset):
    """A plain map-style dataset: one (tensor, int) item per __getitem__ call."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y.tolist()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--shape", default="1,8,8")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    n = args.n
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, *shape), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(0).choice(n, min(NEAR_MAX, n), replace=False)] = True

    arr = x.numpy()
    results = {
        "hash_rows (hash only)": best_of(args.repeat, lambda: hash_rows(arr)),
        "scan, TensorDataset": best_of(args.repeat, lambda: scan_split("train", TensorDataset(x, y), embed_mask=mask)),
        "scan, item-by-item Dataset": best_of(args.repeat,
                                              lambda: scan_split("train", ItemDataset(x, y), embed_mask=mask)),
        "naive sha256 loop (baseline)": best_of(
            args.repeat, lambda: [hashlib.sha256(x[i].numpy().tobytes()).digest() for i in range(n)]),
    }
    print(f"{n:,} samples of shape {shape} float32 + int64 label; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, numpy {np.__version__}")
    print(f"{'what':<32} {'seconds':>9} {'samples/s':>12}")
    for name, sec in results.items():
        print(f"{name:<32} {sec:>9.3f} {n / sec:>12,.0f}")


if __name__ == "__main__":
    main()
