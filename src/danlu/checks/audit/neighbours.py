"""Near-duplicate search (D5): nearest neighbours of small embeddings, and a calibrated test.

Embeddings come from the scan: images pooled to at most 16x16, feature vectors as they
are (long ones randomly projected). Images are centred and scaled to unit norm (so a
brightness or contrast change does not hide a copy); feature vectors are standardised
per feature.

A pair is a near duplicate when one of two things holds, both calibrated on clean data
(scikit-learn's 8x8 digits, where no pair is flagged):

- *close*: its distance is below NEAR_RATIO (0.3) times the split's typical
  nearest-neighbour distance (the median). A copy with small noise lands here; on
  digits the closest genuine pair is at 0.33x the median.
- *sparse edit*: at most SPARSE_FRACTION (2%, at least one) of the elements differ by
  more than a quarter of an element's typical size, while the rest are equal. A copy
  with a pixel or two changed lands here, even when that change is large; genuine
  neighbours in digits differ in at least 3% (2 of 64) of their pixels, typically 30%.

Only the k nearest candidates of each sample are tested, so the cost is one blocked
matrix product per split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["NearPair", "prepare", "knn", "near_pairs", "typical_distance", "NEAR_RATIO", "SPARSE_FRACTION"]

NEAR_RATIO = 0.3
SPARSE_FRACTION = 0.02
_K = 8
_BLOCK = 2048


@dataclass
class NearPair:
    a: int            # position in the first set
    b: int            # position in the second set (the same set for within-split search)
    distance: float
    rule: str         # "close" or "sparse edit"


def prepare(vectors: np.ndarray, kind: str, ref: np.ndarray | None = None) -> np.ndarray:
    """Normalise embeddings for comparison; `ref` (the training embeddings) fixes feature scales."""
    v = vectors.astype(np.float32, copy=True)
    if kind == "image":
        v -= v.mean(axis=1, keepdims=True)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return v
    base = v if ref is None else ref.astype(np.float32)
    mean, std = base.mean(axis=0), base.std(axis=0)
    std[std < 1e-12] = 1.0
    return (v - mean) / std


def knn(query: np.ndarray, ref: np.ndarray, k: int = _K, same: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices) of the k nearest rows of `ref` for each row of `query` (Euclidean).

    same=True excludes each row itself (query and ref are the same set).
    """
    k = min(k, len(ref) - (1 if same else 0))
    if k <= 0 or len(query) == 0:
        return np.zeros((len(query), 0)), np.zeros((len(query), 0), dtype=np.int64)
    r = torch.from_numpy(ref)
    r2 = (r * r).sum(1)
    dists, idxs = [], []
    for lo in range(0, len(query), _BLOCK):
        q = torch.from_numpy(query[lo: lo + _BLOCK])
        d2 = (q * q).sum(1, keepdim=True) + r2[None] - 2.0 * q @ r.T
        if same:
            rows = torch.arange(len(q))
            d2[rows, rows + lo] = float("inf")
        val, idx = torch.topk(d2, k, dim=1, largest=False)
        dists.append(val.clamp_min(0).sqrt().numpy())
        idxs.append(idx.numpy())
    return np.concatenate(dists), np.concatenate(idxs)


def near_pairs(
    query: np.ndarray,
    ref: np.ndarray,
    *,
    typical: float,
    same: bool,
    hashes: tuple[np.ndarray, np.ndarray] | None = None,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[NearPair]:
    """Near-duplicate pairs between prepared `query` and `ref` rows, closest first.

    typical: the typical nearest-neighbour distance that scales the "close" rule.
    same: query and ref are one set (pairs are unordered, a row is not its own pair).
    hashes: (query hashes, ref hashes); pairs with equal content hashes are exact
    duplicates, reported separately, and left out here.
    neighbours: a `knn(query, ref, same=same)` result already computed (it is the costly part).
    """
    dist, idx = neighbours if neighbours is not None else knn(query, ref, same=same)
    if dist.size == 0:
        return []
    d = query.shape[1]
    tol = 0.25 / np.sqrt(d) if d else 0.0
    limit = max(1, int(SPARSE_FRACTION * d))
    close_at = max(NEAR_RATIO * typical, 1e-6)
    out: dict[tuple[int, int], NearPair] = {}
    for lo in range(0, len(query), 1024):
        q, ii, dd = query[lo: lo + 1024], idx[lo: lo + 1024], dist[lo: lo + 1024]
        differ = (np.abs(q[:, None, :] - ref[ii]) > tol).sum(axis=2)
        close = dd <= close_at
        hit = close | (differ <= limit)
        if hashes is not None:
            hit &= hashes[0][lo: lo + len(q), None] != hashes[1][ii]
        for row, col in zip(*np.nonzero(hit)):
            a, b = lo + int(row), int(ii[row, col])
            key = (min(a, b), max(a, b)) if same else (a, b)
            if key not in out:
                out[key] = NearPair(key[0], key[1], float(dd[row, col]),
                                    "close" if close[row, col] else "sparse edit")
    return sorted(out.values(), key=lambda p: p.distance)


def typical_distance(neighbours: tuple[np.ndarray, np.ndarray]) -> float:
    """Median nearest-neighbour distance within a set (its typical spacing), from `knn(v, v, same=True)`.

    Zero distances (exact copies) are left out, so duplicates cannot drag it to zero;
    0.0 when nothing is left.
    """
    dist = neighbours[0]
    if dist.shape[1] == 0:
        return 0.0
    d = dist[:, 0]
    d = d[d > 1e-9]
    return float(np.median(d)) if d.size else 0.0
