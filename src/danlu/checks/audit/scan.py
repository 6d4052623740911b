"""One pass over a split: everything the audit checks need, read once (D1, D2, D4, D5, D6).

`scan_split` reads the items a dataset produces (all of them, or a `--limit` sample)
and records, per item: whether it loaded (and the error when not), content hashes of
input and target, the scalar target, non-finite values, the image size or sequence
length, per-channel/per-feature moments, boxes, and a small embedding for near-duplicate
search. The checks then work on this `SplitScan` alone, so adding a check costs no
extra pass over the data.

Speed: items with the same shape and dtype are stacked and processed a batch at a
time (hashing, finiteness, moments, embeddings are all vectorised over the batch).
A plain `TensorDataset` (or a `Subset` of one) is read by slicing its tensors, and a
dataset with `__getitems__` is read a chunk at a time; any other dataset is read item
by item. Failed items are recorded, never fatal.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

from danlu.checks.audit.inputs import (
    as_array,
    dtype_name,
    feature_axis,
    hash_rows,
    hash_value,
    input_kind,
    split_item,
    to_chw,
)
from danlu.errors import error_text

__all__ = ["Problem", "Moments", "SplitScan", "scan_split", "varies_between_reads", "EMBED_SIDE"]

#: Images are average-pooled to at most EMBED_SIDE x EMBED_SIDE for near-duplicate search.
EMBED_SIDE = 16
#: Feature vectors longer than this are randomly projected to EMBED_PROJECT dimensions.
EMBED_MAX_DIM = 1024
EMBED_PROJECT = 256
_BATCH = 2048                   # items per vectorised batch, at most ...
_BATCH_BYTES = 32 * 2**20       # ... and at most this many bytes of input (large images)


def _batch_rows(item_bytes: int) -> int:
    return max(1, min(_BATCH, _BATCH_BYTES // max(item_bytes, 1)))


@dataclass
class Problem:
    """One bad sample: its dataset index and what is wrong with it."""

    index: int
    error: str


@dataclass
class Moments:
    """Running per-channel (images) or per-feature (vectors) count, sum and sum of squares."""

    layout: str                       # "channel" (images), "sequence_channel" ((C, T) items) or "feature"
    count: np.ndarray                 # values seen per channel/feature
    s1: np.ndarray
    s2: np.ndarray
    lo: float = float("inf")
    hi: float = float("-inf")
    skipped: int = 0                  # samples whose channel/feature count did not match
    mins: np.ndarray | None = None    # per channel/feature
    maxs: np.ndarray | None = None

    @classmethod
    def empty(cls, layout: str, width: int) -> Moments:
        z = np.zeros(width, dtype=np.float64)
        return cls(layout, z.copy(), z.copy(), z.copy(), mins=np.full(width, np.inf), maxs=np.full(width, -np.inf))

    def add(self, rows: np.ndarray) -> None:
        """rows: (B, width, rest) float values of finite samples."""
        if rows.shape[0] == 0:
            return
        if rows.shape[1] != self.s1.shape[0]:
            self.skipped += rows.shape[0]
            return
        r = rows if rows.dtype.kind == "f" else rows.astype(np.float32)
        self.count += r.shape[0] * r.shape[2]
        self.s1 += r.sum(axis=(0, 2), dtype=np.float64)
        self.s2 += np.square(r, dtype=np.float64).sum(axis=(0, 2))  # batches are capped at 32 MB
        self.lo = min(self.lo, float(r.min()))
        self.hi = max(self.hi, float(r.max()))
        if self.mins is not None and self.maxs is not None:
            self.mins = np.minimum(self.mins, r.min(axis=(0, 2)))
            self.maxs = np.maximum(self.maxs, r.max(axis=(0, 2)))

    @property
    def mean(self) -> np.ndarray:
        return self.s1 / np.maximum(self.count, 1)

    @property
    def std(self) -> np.ndarray:
        var = self.s2 / np.maximum(self.count, 1) - np.square(self.mean)
        return np.sqrt(np.maximum(var, 0.0))


@dataclass
class SplitScan:
    """What one pass over a split found; arrays are aligned with `indices`."""

    name: str
    size: int                          # len(dataset)
    indices: np.ndarray                # dataset indices read (all, or the --limit sample), ascending
    ok: np.ndarray                     # item loaded
    input_hash: np.ndarray             # uint64
    target_hash: np.ndarray            # uint64
    target: np.ndarray                 # float64 value of a scalar target, NaN otherwise
    target_int: np.ndarray             # the scalar target had an integer (or bool) dtype
    image_hw: np.ndarray               # (n, 2) height and width of image inputs, -1 otherwise
    length: np.ndarray                 # sequence length of token/text inputs, -1 otherwise
    trimmed: np.ndarray                # length without trailing 0 tokens (right padding)
    kinds: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    shapes: Counter = field(default_factory=Counter)
    errors: list[Problem] = field(default_factory=list)
    nonfinite: list[Problem] = field(default_factory=list)
    moments: Moments | None = None
    boxes: list[tuple[int, np.ndarray, np.ndarray | None]] = field(default_factory=list)
    embed_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    embed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    embed_kind: str = ""
    seconds: float = 0.0

    @classmethod
    def empty(cls, name: str, size: int, indices: np.ndarray) -> SplitScan:
        n = len(indices)
        return cls(
            name=name,
            size=size,
            indices=np.asarray(indices, dtype=np.int64),
            ok=np.zeros(n, dtype=bool),
            input_hash=np.zeros(n, dtype=np.uint64),
            target_hash=np.zeros(n, dtype=np.uint64),
            target=np.full(n, np.nan),
            target_int=np.zeros(n, dtype=bool),
            image_hw=np.full((n, 2), -1, dtype=np.int64),
            length=np.full(n, -1, dtype=np.int64),
            trimmed=np.full(n, -1, dtype=np.int64),
        )

    # ----------------------------------------------------------- derived views
    @property
    def n(self) -> int:
        return len(self.indices)

    @property
    def sampled(self) -> bool:
        return self.n < self.size

    @property
    def kind(self) -> str:
        """The most common input kind ('image', 'tokens', 'text', 'features', 'other', '' if none)."""
        return self.kinds.most_common(1)[0][0] if self.kinds else ""

    @property
    def bad_positions(self) -> np.ndarray:
        """Positions of items that failed to load or hold NaN/Inf."""
        bad = ~self.ok
        if self.nonfinite:
            bad[self.positions([p.index for p in self.nonfinite])] = True
        return np.flatnonzero(bad)

    def positions(self, indices) -> np.ndarray:
        """Positions (in this scan's arrays) of dataset indices that were read (`indices` is ascending)."""
        return np.searchsorted(self.indices, np.asarray(indices, dtype=np.int64))

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, int labels) of the loaded items whose target is a finite integer scalar."""
        keep = self.ok & self.target_int & np.isfinite(self.target)
        pos = np.flatnonzero(keep)
        return pos, self.target[pos].astype(np.int64)

    def sample_note(self) -> str:
        return f" (sampled {self.n:,} of {self.size:,})" if self.sampled else ""


# ------------------------------------------------------------------ the pass
def scan_split(
    name: str,
    dataset: Dataset,
    indices: np.ndarray | None = None,
    *,
    embed_mask: np.ndarray | None = None,
    advance: Callable[[int], None] | None = None,
) -> SplitScan:
    """Read `indices` of `dataset` (default: all; read in ascending order) and return what they hold.

    embed_mask: bool per position, True where a near-duplicate embedding should be kept
    (default: all). advance(n) is called as items are read (progress bars).
    """
    start = time.perf_counter()
    size = len(dataset)
    indices = np.arange(size, dtype=np.int64) if indices is None else np.unique(np.asarray(indices, dtype=np.int64))
    scan = SplitScan.empty(name, size, indices)
    emb = _Embedder(np.ones(len(indices), dtype=bool) if embed_mask is None else embed_mask)
    advance = advance or (lambda n: None)
    tensors = _tensor_source(dataset, indices)
    if tensors is not None:
        _scan_tensors(scan, emb, *tensors, advance)
    else:
        _scan_items(scan, emb, dataset, advance)
    scan.embed_pos, scan.embed, scan.embed_kind = emb.result()
    scan.seconds = time.perf_counter() - start
    return scan


def _tensor_source(dataset: Dataset, indices: np.ndarray):
    """(tensors, mapped indices) when items are plain rows of tensors (TensorDataset, Subset of one)."""
    if type(dataset) is Subset:
        inner = np.asarray(dataset.indices, dtype=np.int64)
        return _tensor_source(dataset.dataset, inner[indices]) if len(inner) else None
    if type(dataset) is TensorDataset:
        return dataset.tensors, indices
    return None


def _scan_tensors(scan: SplitScan, emb: _Embedder, tensors, rows: np.ndarray, advance) -> None:
    x_all = tensors[0]
    y_all = tensors[1] if len(tensors) > 1 else None
    step = _batch_rows(x_all[0].numel() * x_all.element_size() if len(x_all) else 1)
    for lo in range(0, len(rows), step):
        chunk = rows[lo: lo + step]
        if len(chunk) == 1 or bool(np.all(np.diff(chunk) == 1)):  # consecutive indices: slice, no copy
            sel = slice(int(chunk[0]), int(chunk[-1]) + 1)
        else:
            sel = torch.as_tensor(chunk)
        pos = np.arange(lo, lo + len(chunk))
        xs = x_all[sel]
        ys = y_all[sel] if y_all is not None else None
        _process_batch(
            scan, emb, pos, as_array(xs), dtype_name(xs),
            None if ys is None else as_array(ys), None if ys is None else dtype_name(ys),
        )
        advance(len(chunk))


def _scan_items(scan: SplitScan, emb: _Embedder, dataset: Dataset, advance) -> None:
    batcher = _Batcher(scan, emb)
    getitems = getattr(dataset, "__getitems__", None)
    for lo in range(0, scan.n, 256):
        idx = scan.indices[lo: lo + 256]
        items: list[Any] | None = None
        if getitems is not None:
            try:
                items = list(getitems([int(i) for i in idx]))
                if len(items) != len(idx):
                    items = None
            except Exception:
                items = None  # one bad item spoils the chunk: read it item by item below
        for k, i in enumerate(idx):
            pos = lo + k
            if items is not None:
                item = items[k]
            else:
                try:
                    item = dataset[int(i)]
                except Exception as exc:  # D6: record, keep going
                    scan.errors.append(Problem(int(i), error_text(exc, frame=True)))
                    continue
            batcher.add(pos, item)
        advance(len(idx))
    batcher.flush()


_PY_SCALARS = {int: "int64", float: "float64", bool: "bool"}


class _Batcher:
    """Stacks consecutive items of one shape/dtype, so the per-item work runs vectorised.

    Python int/float/bool targets are collected as they are and turned into one array
    per batch (they hash like 0-d int64/float64/bool arrays, as `hash_value` does).
    """

    def __init__(self, scan: SplitScan, emb: _Embedder) -> None:
        self.scan, self.emb = scan, emb
        self.key: Any = None
        self.pos: list[int] = []
        self.xs: list[np.ndarray] = []
        self.ys: list[Any] = []
        self.names: tuple[str, str | None, bool] = ("", None, False)
        self.cap = _BATCH

    def add(self, pos: int, item: Any) -> None:
        if type(item) is tuple and len(item) == 2:
            x, y = item
        else:
            x, y, _meta = split_item(item)
        scan = self.scan
        try:
            yname = _PY_SCALARS.get(type(y))
            if yname is not None:
                ay, ykey = y, yname
            elif y is None:
                ay = ykey = None
            else:
                ay = as_array(y)
                if ay is None:
                    _process_object_target(scan, pos, y)
                    ykey = "object"
                else:
                    yname = dtype_name(y)
                    ykey = (ay.shape, ay.dtype, yname)
            if type(x) is torch.Tensor:  # stacked as tensors, converted once per batch (fast)
                ax, key = x, (x.shape, x.dtype, x.is_cuda, ykey)
            else:
                ax = as_array(x)
                if ax is None:
                    self.flush()
                    _process_object_input(scan, pos, x)
                    if ay is not None:
                        _process_targets(scan, np.array([pos]), np.asarray([ay]), yname)
                    scan.ok[pos] = True
                    return
                key = (ax.shape, ax.dtype, ykey)
            xname = dtype_name(x)
        except Exception as exc:  # an item we cannot even convert counts as unreadable
            scan.errors.append(Problem(int(scan.indices[pos]), error_text(exc, frame=True)))
            return
        if key != self.key or len(self.pos) >= self.cap:
            self.flush()
            self.key = key
            self.cap = _batch_rows(ax.nbytes if isinstance(ax, np.ndarray) else ax.numel() * ax.element_size())
            self.names = (xname, yname if ay is not None else None, isinstance(ykey, str) and ykey != "object")
        self.pos.append(pos)
        self.xs.append(ax)
        if ay is not None:
            self.ys.append(ay)

    def flush(self) -> None:
        if not self.pos:
            return
        xname, yname, python_scalars = self.names
        pos = np.asarray(self.pos, dtype=np.int64)
        ys = None
        if self.ys:
            ys = np.asarray(self.ys, dtype=yname) if python_scalars else np.stack(self.ys)
        xs = as_array(torch.stack(self.xs)) if isinstance(self.xs[0], torch.Tensor) else np.stack(self.xs)
        _process_batch(self.scan, self.emb, pos, xs, xname, ys, yname)
        self.pos, self.xs, self.ys, self.key = [], [], [], None


# --------------------------------------------------------- per-batch analysis
def _process_batch(
    scan: SplitScan,
    emb: _Embedder,
    pos: np.ndarray,
    xs: np.ndarray,
    xname: str,
    ys: np.ndarray | None,
    yname: str | None,
) -> None:
    b = len(pos)
    scan.ok[pos] = True
    scan.input_hash[pos] = hash_rows(xs, xname)
    if ys is not None:
        _process_targets(scan, pos, ys, yname)
    shape = xs.shape[1:]
    kind = input_kind(shape, xs.dtype)
    scan.kinds[kind] += b
    scan.shapes[shape] += b

    good = np.ones(b, dtype=bool)
    if xs.dtype.kind in "fc":
        flat = xs.reshape(b, -1)
        finite = np.isfinite(flat)
        good = finite.all(axis=1) if flat.shape[1] else good
        for row in np.flatnonzero(~good):
            vals = flat[row]
            n_nan, n_inf = int(np.isnan(vals).sum()), int(np.isinf(vals).sum())
            scan.nonfinite.append(Problem(
                int(scan.indices[pos[row]]),
                f"input has {n_nan} NaN and {n_inf} Inf among {vals.size} values",
            ))

    if kind == "image":
        chw = to_chw(xs)
        c, h, w = chw.shape[1:]
        scan.image_hw[pos] = (h, w)
        scan.channels[c] += b
        _moments(scan, "channel", c).add(chw[good].reshape(int(good.sum()), c, -1))
        emb.add(pos, good, chw, "image")
    elif kind == "tokens":
        length = shape[0]
        scan.length[pos] = length
        if length == 0:
            scan.trimmed[pos] = 0
            return
        nonzero = xs != 0
        last = length - np.argmax(nonzero[:, ::-1], axis=1)
        scan.trimmed[pos] = np.where(nonzero.any(axis=1), last, 0)
    elif kind == "features":
        vec = xs.reshape(b, -1)
        _moments(scan, "feature", vec.shape[1]).add(vec[good][:, :, None])
        emb.add(pos, good, vec, "features")
    elif kind == "sequence":  # steps x features (a recurrent net) or channels x steps (a Conv1d)
        axis = feature_axis(shape)
        per_feature = xs if axis == 0 else np.swapaxes(xs, 1, 2)         # (B, F, T)
        layout = "sequence_channel" if axis == 0 else "feature"
        _moments(scan, layout, per_feature.shape[1]).add(per_feature[good])
        emb.add(pos, good, xs.reshape(b, -1), "features")


def _moments(scan: SplitScan, layout: str, width: int) -> Moments:
    if scan.moments is None:
        scan.moments = Moments.empty(layout, width)
    elif scan.moments.layout != layout:
        return Moments.empty(layout, width)  # mixed input kinds: the majority's moments stay
    return scan.moments


def _process_targets(scan: SplitScan, pos: np.ndarray, ys: np.ndarray, yname: str | None) -> None:
    b = len(pos)
    scan.target_hash[pos] = hash_rows(ys, yname)
    if ys[0].size != 1:
        return
    vals = ys.reshape(b)
    is_int = vals.dtype.kind in "iub"
    scan.target[pos] = vals.astype(np.float64)
    scan.target_int[pos] = is_int
    if not is_int and vals.dtype.kind in "fc":
        for row in np.flatnonzero(~np.isfinite(vals)):
            scan.nonfinite.append(Problem(int(scan.indices[pos[row]]), f"target is {vals[row]}"))


def _process_object_input(scan: SplitScan, pos: int, x: Any) -> None:
    """Inputs that are not one array: text, tuples/dicts of tensors."""
    idx = int(scan.indices[pos])
    scan.input_hash[pos] = hash_value(x)
    if isinstance(x, str):
        scan.kinds["text"] += 1
        scan.length[pos] = scan.trimmed[pos] = len(x.split())
        return
    scan.kinds["other"] += 1
    bad = [a for a in _arrays_in(x) if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        n_nan = sum(int(np.isnan(a).sum()) for a in bad)
        n_inf = sum(int(np.isinf(a).sum()) for a in bad)
        scan.nonfinite.append(Problem(idx, f"input has {n_nan} NaN and {n_inf} Inf"))
    ids = x.get("input_ids") if isinstance(x, dict) else None
    ids = as_array(ids) if ids is not None else None
    if ids is not None and ids.ndim == 1:
        scan.length[pos] = scan.trimmed[pos] = ids.shape[0]


def _process_object_target(scan: SplitScan, pos: int, y: Any) -> None:
    """Targets that are not one array: detection-style dicts with boxes (D2) and labels (D6)."""
    scan.target_hash[pos] = hash_value(y)
    if isinstance(y, dict) and y.get("boxes") is not None:
        boxes = as_array(y["boxes"])
        labels = as_array(y.get("labels")) if y.get("labels") is not None else None
        if boxes is not None:
            scan.boxes.append((int(scan.indices[pos]), boxes.reshape(-1, 4) if boxes.size else boxes.reshape(0, 4),
                               None if labels is None else labels.reshape(-1)))
    bad = [a for a in _arrays_in(y) if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        scan.nonfinite.append(Problem(int(scan.indices[pos]), "target holds NaN or Inf values"))


def _arrays_in(value: Any, depth: int = 0) -> list[np.ndarray]:
    if depth > 4:
        return []
    arr = as_array(value)
    if arr is not None:
        return [arr]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays_in(v, depth + 1)]
    return []


# ---------------------------------------------------------------- embeddings
class _Embedder:
    """Small vectors for near-duplicate search (D5): pooled images, (projected) feature vectors."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.parts: list[tuple[np.ndarray, np.ndarray, str]] = []
        self._proj: dict[int, np.ndarray] = {}

    def add(self, pos: np.ndarray, good: np.ndarray, batch: np.ndarray, kind: str) -> None:
        keep = good & self.mask[pos]
        if not keep.any():
            return
        rows = batch[keep]
        if kind == "image":
            t = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
            h, w = t.shape[-2:]
            if h > EMBED_SIDE or w > EMBED_SIDE:
                t = F.adaptive_avg_pool2d(t, (min(h, EMBED_SIDE), min(w, EMBED_SIDE)))
            vec = t.reshape(len(rows), -1).numpy()
        else:
            vec = rows.reshape(len(rows), -1).astype(np.float32)
            d = vec.shape[1]
            if d > EMBED_MAX_DIM:
                if d not in self._proj:
                    rng = np.random.default_rng(0)
                    self._proj[d] = (rng.standard_normal((d, EMBED_PROJECT)) / np.sqrt(EMBED_PROJECT)).astype(np.float32)
                vec = vec @ self._proj[d]
        self.parts.append((pos[keep], vec, kind))

    def result(self) -> tuple[np.ndarray, np.ndarray, str]:
        """Positions and vectors of the most common (kind, dimension); others cannot be compared."""
        if not self.parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32), ""
        groups = Counter()
        for p, v, k in self.parts:
            groups[(k, v.shape[1])] += len(p)
        (kind, dim), _ = groups.most_common(1)[0]
        chosen = [(p, v) for p, v, k in self.parts if (k, v.shape[1]) == (kind, dim)]
        return (np.concatenate([p for p, _ in chosen]),
                np.concatenate([v for _, v in chosen]).astype(np.float32, copy=False), kind)


def varies_between_reads(dataset: Dataset, indices: np.ndarray, tries: int = 3) -> bool:
    """True when reading one index twice gives different inputs (random augmentation in __getitem__)."""
    for i in list(indices[:tries]):
        try:
            first = hash_value(split_item(dataset[int(i)])[0])
            second = hash_value(split_item(dataset[int(i)])[0])
        except Exception:
            continue
        if first != second:
            return True
    return False
