"""Near-duplicate search (D5): nearest neighbours of small embeddings, and a test calibrated
against the closeness chance alone produces in that data.

Embeddings come from the scan: images pooled to at most 16x16, feature vectors as they
are (long ones randomly projected). Images are centred and scaled to unit norm (so a
brightness or contrast change does not hide a copy); feature vectors are standardised
per feature, with each feature's scale floored at a tenth of the median one, so faint
noise on a near-constant feature is not blown up into several standard deviations.

A pair is a near duplicate when one of two things holds:

- *close*: its distance is below r times the split's typical (median) nearest-neighbour
  distance, where r is what chance makes rare. For points spread with intrinsic
  dimension d (estimated from the neighbour distances, Levina & Bickel 2004), a point's
  nearest neighbour lies within r x the median with probability 1 - 2^(-r^d); r is set
  so that n points give at most CHANCE_PAIRS such pairs by chance, and never above
  NEAR_RATIO_MAX. Measured (tests/checks/audit/test_audit_checks.py): 600 points in 2-D give
  d 2.0 and r 0.005, so ordinary neighbours are not copies; the 1,797 8x8 digits give d 7.6
  and r 0.21, where a copy with 0.02 noise lands (0.19) and the closest genuine pair (0.33)
  does not; above d 20 r is the cap.
- *sparse edit* (inputs of at least SPARSE_MIN_DIM elements): at most SPARSE_FRACTION
  (2%, at least one) of the elements differ by more than a quarter of an element's
  typical size, while the rest are equal. A copy with a pixel or two changed lands
  here; genuine neighbours in digits differ in at least 3% (2 of 64) of their pixels.

Only the k nearest candidates of each sample are tested, so the cost is one blocked
matrix product per split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["NearPair", "prepare", "knn", "near_pairs", "typical_distance", "intrinsic_dimension", "close_ratio",
           "NEAR_RATIO_MAX", "CHANCE_PAIRS", "SPARSE_FRACTION", "SPARSE_MIN_DIM"]

#: Expected number of pairs that chance alone brings within the "close" distance, for the whole set.
CHANCE_PAIRS = 0.01
#: The "close" distance is never more than this fraction of the typical nearest-neighbour distance.
NEAR_RATIO_MAX = 0.4
SPARSE_FRACTION = 0.02
#: The "sparse edit" rule needs inputs of at least this many elements (2% of 2 features is no edit).
SPARSE_MIN_DIM = 32
#: A feature's scale is floored at this fraction of the median feature scale.
SCALE_FLOOR = 0.1
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
    varying = std > 1e-12
    floor = SCALE_FLOOR * float(np.median(std[varying])) if varying.any() else 1.0
    std = np.where(varying, np.maximum(std, floor), 1.0)
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


def intrinsic_dimension(neighbours: tuple[np.ndarray, np.ndarray]) -> float:
    """The data's intrinsic dimension from k-nearest-neighbour distances (Levina & Bickel's maximum
    likelihood estimate, averaged over points); exact copies (distance 0) are left out."""
    dist = neighbours[0]
    if dist.shape[1] < 3:
        return 1.0
    d = dist[(dist > 1e-9).all(axis=1)]
    if len(d) < 3:
        return 1.0
    logs = np.log(d[:, -1:] / d[:, :-1])              # log(T_k / T_j), j < k
    inv = logs.mean(axis=1)
    inv = inv[inv > 1e-9]
    return float(1.0 / inv.mean()) if inv.size else 1.0


def close_ratio(n: int, dimension: float) -> float:
    """The fraction of the typical neighbour distance below which n points of that intrinsic
    dimension give at most CHANCE_PAIRS close pairs by chance (capped at NEAR_RATIO_MAX)."""
    if n < 2:
        return NEAR_RATIO_MAX
    return float(min(NEAR_RATIO_MAX, (CHANCE_PAIRS / (n * np.log(2))) ** (1.0 / max(dimension, 1.0))))


def near_pairs(
    query: np.ndarray,
    ref: np.ndarray,
    *,
    typical: float,
    same: bool,
    hashes: tuple[np.ndarray, np.ndarray] | None = None,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    ratio: float | None = None,
) -> list[NearPair]:
    """Near-duplicate pairs between prepared `query` and `ref` rows, closest first.

    typical: the typical nearest-neighbour distance that scales the "close" rule.
    ratio: the "close" fraction of it (default: :func:`close_ratio` for `query`'s size and the
    intrinsic dimension of `ref`).
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
    limit = max(1, int(SPARSE_FRACTION * d)) if d >= SPARSE_MIN_DIM else -1   # -1: the rule is off
    if ratio is None:
        within = neighbours if same and neighbours is not None else knn(ref, ref, same=True)
        ratio = close_ratio(len(query), intrinsic_dimension(within))
    close_at = max(ratio * typical, 1e-6)
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
