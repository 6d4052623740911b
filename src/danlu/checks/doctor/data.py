"""Data checks: the data interface (S13, D6), validation/shuffling (D7), input scale (D4)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from danlu.checks.doctor.base import Check, DependencyFailed, SkipCheck, error_text, register, user_frame
from danlu.batches import fingerprint, split
from danlu.recipe import Recipe
from danlu.report import Finding

__all__ = ["DataInterface", "ValidationAndShuffling", "InputScale"]

_WORST = {"pass": 0, "info": 1, "warn": 2, "fail": 3}


@dataclass
class _Problems:
    """Findings-in-progress: each problem has a status, a phrase, a cause and a fix."""

    items: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, status: str, summary: str, cause: str = "", fix: str = "") -> None:
        self.items.append((status, summary, cause, fix))

    def status(self) -> str:
        return max((s for s, *_ in self.items), key=_WORST.__getitem__, default="pass")

    def finding(self, check: Check, ok_summary: str, evidence: dict, details: str = "") -> Finding:
        bad = [p for p in self.items if p[0] in ("warn", "fail")]
        if not bad:
            notes = "; ".join(s for st, s, *_ in self.items if st == "info")
            return check.finding("pass", ok_summary + (f" ({notes})" if notes else ""), evidence=evidence)
        return check.finding(
            self.status(),
            "; ".join(s for _, s, _, _ in bad),
            evidence=evidence,
            cause=" ".join(c for *_, c, _ in bad if c),
            fix=" ".join(f for *_, f in bad if f),
            details=details,
        )


def _spread(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n), always including 0 and n-1."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _signature(value: Any) -> Any:
    """Type, dtype and shape of every leaf of an item (nested tuples/lists/dicts)."""
    if isinstance(value, torch.Tensor):
        return ("Tensor", str(value.dtype).replace("torch.", ""), tuple(value.shape))
    if isinstance(value, np.ndarray):
        return ("ndarray", str(value.dtype), tuple(value.shape))
    if isinstance(value, (list, tuple)):
        return tuple(_signature(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _signature(value[k])) for k in sorted(value, key=str))
    return (type(value).__name__,)


def _describe(sig: Any) -> str:
    if isinstance(sig, tuple) and sig and isinstance(sig[0], str) and sig[0] in ("Tensor", "ndarray"):
        return f"{sig[0]}[{','.join(map(str, sig[2]))}] {sig[1]}"
    if isinstance(sig, tuple) and len(sig) == 1 and isinstance(sig[0], str):
        return sig[0]
    if isinstance(sig, tuple):
        return "(" + ", ".join(_describe(s) for s in sig) + ")"
    return str(sig)


def _without_shapes(sig: Any) -> Any:
    if isinstance(sig, tuple) and sig and sig[0] in ("Tensor", "ndarray"):
        return sig[:2]
    if isinstance(sig, tuple):
        return tuple(_without_shapes(s) for s in sig)
    return sig


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (bool, int, float, np.generic)):
        return torch.as_tensor(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(value))
    return None


def _base_tensors(ds: Any) -> tuple[torch.Tensor, torch.Tensor, list[int] | None] | None:
    """(inputs, targets, indices) straight from a TensorDataset (or a Subset of one)."""
    indices = None
    while isinstance(ds, Subset):
        sub = list(ds.indices)
        indices = sub if indices is None else [sub[i] for i in indices]
        ds = ds.dataset
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        return ds.tensors[0], ds.tensors[1], indices
    return None


@dataclass
class _Scan:
    scanned: int = 0
    total: int = 0
    nonfinite_inputs: list[int] = field(default_factory=list)
    nonfinite_targets: list[int] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)
    target_index: list[int] = field(default_factory=list)


def _scan(ds: Any, length: int, max_items: int, seconds: float, seed: int) -> _Scan:
    """Read up to max_items items (within a time budget) and note non-finite values and targets."""
    out = _Scan(total=length)
    base = _base_tensors(ds)
    if base is not None:  # fast path: every item at once
        x, y, idx = base
        if idx is not None:
            x, y = x[idx], y[idx]
        x, y = x[:max_items], y[:max_items]
        out.scanned = len(y)
        if x.is_floating_point() or x.is_complex():
            bad = ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
            out.nonfinite_inputs = bad.nonzero().flatten().tolist()
        if y.is_floating_point():
            bad = ~torch.isfinite(y.reshape(len(y), -1)).all(dim=1)
            out.nonfinite_targets = bad.nonzero().flatten().tolist()
        out.targets = [y.reshape(len(y), -1)]
        out.target_index = list(range(len(y)))
        return out
    order = torch.randperm(length, generator=torch.Generator().manual_seed(seed)).tolist()
    deadline = time.perf_counter() + seconds
    for i in order[:max_items]:
        item = ds[i]
        out.scanned += 1
        if isinstance(item, (tuple, list)) and len(item) >= 2:
            x, y = _as_tensor(item[0]), _as_tensor(item[1])
            if x is not None and (x.is_floating_point() or x.is_complex()) and not torch.isfinite(x).all():
                out.nonfinite_inputs.append(i)
            if y is not None:
                if y.is_floating_point() and not torch.isfinite(y).all():
                    out.nonfinite_targets.append(i)
                out.targets.append(y.reshape(1, -1))
                out.target_index.append(i)
        if time.perf_counter() > deadline:
            break
    return out


def _forward_is_default(recipe: Recipe) -> bool:
    return type(recipe).forward is Recipe.forward


@register
class DataInterface(Check):
    """Data interface: one sample and a batch of 1 go through data, model and loss in one process.

    Detects: data() that does not return (train, val); items that are not (input, target)
    pairs; items whose types, dtypes or shapes change from one sample to the next; NaN or
    Inf in inputs or targets (D6); class labels outside the model's outputs (a label 10
    with 10 outputs, negative labels) or regression targets whose size does not match the
    output's; a model or loss that crashes on a batch of one sample.
    Why: practice S13, test each part alone. These bugs otherwise surface as an obscure
    error deep in a DataLoader worker, a CUDA device-side assert, or as a NaN hours into
    training (D6). Reading in the main process gives a readable traceback.
    How: reads item 0 and `sample_items` items spread over the training set and compares
    their signatures; scans up to `scan_items` items of each split (all of them at once for
    a TensorDataset), within `scan_seconds`, for non-finite values and the range of the
    targets; collates item 0 into a batch of 1 with the training loader's collate_fn and
    runs recipe.forward and recipe.loss on it in eval mode.
    Thresholds: any non-finite value or out-of-range label fails; labels equal to -100
    (cross-entropy's ignore_index) are allowed. Shapes that vary between items fail with
    the default collate_fn (it cannot stack them) and are noted otherwise. Budgets:
    S13.sample_items (32), S13.scan_items (20000), S13.scan_seconds (3).
    Fix: return (input, target) pairs with one dtype and shape; drop or repair the
    non-finite samples the check lists; map labels to 0..C-1 or give the model C outputs;
    make the regression output's shape equal the target's.
    """

    id = "S13"
    name = "data interface"
    stage = "data"
    gates = True
    settings = ("sample_items", "scan_items", "scan_seconds")
    sample_items = 32
    scan_items = 20000
    scan_seconds = 3.0

    def run(self, ctx) -> Finding:
        train, val = ctx.datasets
        problems = _Problems()
        ev: dict[str, Any] = {}
        sizes = {split_: ctx.length(split_) for split_ in ("train", "val")}
        ev.update({f"{k}_items": v for k, v in sizes.items()})
        if sizes["train"] == 0:
            problems.add("fail", "the training set is empty", "data() returned an empty training set",
                         "check the data path and any filtering in data()")
            return problems.finding(self, "", ev)
        if sizes["val"] == 0:
            problems.add("warn", "the validation set is empty", "data() returned an empty validation set",
                         "hold out part of the data for validation (T1, T3 need it)")

        item0 = train[0]
        pair = isinstance(item0, (tuple, list)) and len(item0) >= 2
        sig0 = _signature(item0)
        ev["item"] = _describe(sig0)
        if not pair and _forward_is_default(ctx.recipe):
            problems.add("fail", f"items are {type(item0).__name__}, not (input, target) pairs",
                         "the default recipe.forward unpacks each batch as x, y",
                         "return (input, target) from __getitem__, or override forward(model, batch)")

        # --- consistency of types, dtypes and shapes across items -----------------------
        collate = ctx.collate("train")
        default_collate = collate is torch.utils.data.default_collate
        differing_types, differing_shapes = [], []
        for i in _spread(sizes["train"], self.sample_items):
            sig = _signature(train[i])
            if sig == sig0:
                continue
            if _without_shapes(sig) != _without_shapes(sig0):
                differing_types.append((i, _describe(sig)))
            else:
                differing_shapes.append((i, _describe(sig)))
        if differing_types:
            i, desc = differing_types[0]
            problems.add("warn", f"item {i} is {desc} but item 0 is {ev['item']}",
                         "items mix types or dtypes (e.g. float64 and float32, int and tensor labels)",
                         "convert every item to the same dtype in __getitem__ (e.g. torch.float32 inputs, "
                         "torch.int64 labels)")
            ev["differing_types"] = differing_types[:5]
        if differing_shapes:
            i, desc = differing_shapes[0]
            ev["differing_shapes"] = differing_shapes[:5]
            if default_collate:
                problems.add("fail", f"item {i} is {desc} but item 0 is {ev['item']}",
                             "the default collate_fn cannot stack items of different shapes",
                             "resize/crop/pad items to one shape, or give the DataLoader a collate_fn that pads")
            else:
                problems.add("info", "item shapes vary (your collate_fn handles them)")

        # --- non-finite values (D6) and targets, scanned over both splits ----------------
        scans = {}
        for split_ in ("train", "val"):
            if sizes[split_] == 0:
                continue
            ds = ctx.dataset(split_)
            scans[split_] = _scan(ds, sizes[split_], self.scan_items, self.scan_seconds, ctx.seed)
            s = scans[split_]
            ev[f"{split_}_scanned"] = s.scanned
            for kind, bad in (("inputs", s.nonfinite_inputs), ("targets", s.nonfinite_targets)):
                if bad:
                    ev[f"{split_}_nonfinite_{kind}"] = bad[:20]
                    problems.add(
                        "fail",
                        f"{len(bad)} of {s.scanned} {split_} items have NaN/Inf {kind} (e.g. items {bad[:5]})",
                        "non-finite values in the data (D6: unreadable samples, division by zero in "
                        "preprocessing, missing values)",
                        f"drop or repair those {split_} items in data(); a single NaN input makes the loss NaN",
                    )

        # --- a batch of 1 through forward and loss -----------------------------------
        output = target = None
        try:
            model = ctx.new_model().eval()
        except DependencyFailed:
            model = None
            problems.add("info", "batch of 1 not run: model() failed (see S1)")
        if model is not None:
            batch1 = ctx.collated("train", [0])
            try:
                with torch.no_grad():
                    output, target = ctx.forward(model, batch1)
            except Exception as exc:
                where = user_frame(exc)
                problems.add("fail", f"forward on a batch of 1 raised {error_text(exc, 160)}",
                             f"the model cannot run on one collated training item (at {where.splitlines()[0]})",
                             "fix the shapes between the data and the model's first layer",)
                ev["forward_error"] = where
            if output is not None:
                if isinstance(output, torch.Tensor):
                    dtype = str(output.dtype).replace("torch.", "")
                    ev["output"] = f"Tensor[{','.join(map(str, output.shape))}] {dtype}"
                try:
                    with torch.no_grad():
                        loss = ctx.loss(output, target)
                    value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)
                    ev["loss_batch_of_1"] = value
                    if not np.isfinite(value) and not scans.get("train", _Scan()).nonfinite_inputs:
                        problems.add("fail", f"the loss of a batch of 1 is {value}",
                                     "the loss is non-finite on a finite sample", "see S9 for where it comes from")
                except Exception as exc:
                    where = user_frame(exc)
                    problems.add("fail", f"the loss on a batch of 1 raised {error_text(exc, 160)}",
                                 "recipe.loss cannot take the model output and the target "
                                 f"(at {where.splitlines()[0]})",
                                 "make the output and target shapes/dtypes fit the loss (class-index targets "
                                 "are int64 [B]; regression targets match the output's shape)")
                    ev["loss_error"] = where

        # --- targets valid for the model's output (D6) --------------------------------
        try:
            task = ctx.task
        except DependencyFailed:
            task = None
        ev["task"] = task
        if task is not None:
            self._check_targets(ctx, task, scans, output, target, problems, ev)

        ok = f"train {sizes['train']} / val {sizes['val']} items of {ev['item']}"
        scanned = sum(s.scanned for s in scans.values())
        ok += f"; {scanned} scanned: finite"
        if "labels" in ev:
            ok += f", labels {ev['labels']}"
        if "loss_batch_of_1" in ev:
            ok += f"; batch of 1 -> loss {ev['loss_batch_of_1']:.4g}"
        return problems.finding(self, ok, ev)

    @staticmethod
    def _check_targets(ctx, task, scans, output, target, problems: _Problems, ev: dict) -> None:
        values = [t for s in scans.values() for t in s.targets]
        if not values:
            return
        if task == "classification":
            flat = torch.cat([v.reshape(-1) for v in values])
            if flat.is_floating_point():
                if not torch.isfinite(flat).all() or not torch.equal(flat, flat.round()):
                    return  # soft labels: nothing to range-check
            flat = flat.long()
            ignored = int((flat == -100).sum())
            real = flat[flat != -100]
            if real.numel() == 0:
                return
            lo, hi = int(real.min()), int(real.max())
            outputs = int(output.shape[1]) if isinstance(output, torch.Tensor) and output.dim() >= 2 else None
            ev["labels"] = f"{lo}..{hi}" + (f" < {outputs} outputs" if outputs else "")
            if ignored:
                ev["ignored_labels"] = ignored
            if lo < 0:
                problems.add("fail", f"labels go down to {lo}",
                             "class labels must be 0..C-1 (only -100, the ignore_index, may be negative)",
                             "map the labels to 0..C-1 in data()")
            if outputs is not None and hi >= outputs:
                count = int((real >= outputs).sum())
                problems.add(
                    "fail",
                    f"labels go up to {hi} but the model has {outputs} outputs ({count} scanned targets >= {outputs})",
                    "labels are out of range: 1-based labels, or a class count that does not match the "
                    "last layer (cross-entropy raises 'Target out of bounds', or a device-side assert on GPU)",
                    f"map labels to 0..{outputs - 1}, or give the last layer {hi + 1} outputs",
                )
            elif outputs is not None and outputs == 1:
                problems.add("fail", "classification with a single output",
                             "cross-entropy over one class is always 0: nothing is learned",
                             "give the model C >= 2 outputs, or use float targets with BCE-with-logits")
            if outputs is not None and hi < outputs - 1:
                problems.add("info", f"labels seen use {hi + 1} of {outputs} outputs")
        else:
            if isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor):
                per_out = output[0].numel() if output.dim() else 1
                per_tgt = target[0].numel() if target.dim() else 1
                if per_out != per_tgt:
                    problems.add(
                        "fail",
                        f"the model gives {per_out} values per sample but the target has {per_tgt}",
                        "the output and target sizes differ; MSE broadcasts or crashes",
                        "make the last layer's output size equal the target's",
                    )
            flat = torch.cat([v.float().reshape(-1) for v in values])
            flat = flat[torch.isfinite(flat)]
            if flat.numel():
                ev["targets"] = f"mean {flat.mean():.4g}, std {flat.std(unbiased=False):.4g}"


def _loader_shuffles(loader) -> tuple[bool | None, str]:
    """Whether a DataLoader draws a new random order each epoch, and how we know."""
    if isinstance(getattr(loader, "dataset", None), IterableDataset):
        return None, "an IterableDataset sets its own order"
    batch_sampler = getattr(loader, "batch_sampler", None)
    sampler = getattr(loader, "sampler", None)
    if batch_sampler is not None and not isinstance(batch_sampler, BatchSampler):
        first = [list(b) for b in itertools.islice(iter(batch_sampler), 4)]
        second = [list(b) for b in itertools.islice(iter(batch_sampler), 4)]
        if first == second:
            return False, f"{type(batch_sampler).__name__} gives the same batches each epoch"
        return True, f"{type(batch_sampler).__name__} varies between epochs"
    if isinstance(batch_sampler, BatchSampler):
        sampler = batch_sampler.sampler
    if isinstance(sampler, SequentialSampler):
        return False, "SequentialSampler (shuffle=False)"
    if isinstance(sampler, (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)):
        return True, type(sampler).__name__
    if sampler is None:
        return None, "no sampler"
    first = list(itertools.islice(iter(sampler), 256))
    second = list(itertools.islice(iter(sampler), 256))
    if first == second:
        how = "in index order" if first == sorted(first) else "in the same order"
        return False, f"{type(sampler).__name__} yields items {how} every epoch"
    return True, f"{type(sampler).__name__} varies between epochs"


@register
class ValidationAndShuffling(Check):
    """Validation set deterministic (no augmentation), training loader shuffled.

    Detects: random augmentation applied to the validation set (the same index read twice
    gives different tensors), and a training loader that reads the data in the same order
    every epoch (shuffle=False), which is worst when the data are sorted by class.
    Why: practice D7. Validation numbers from augmented inputs are noisy and biased, so
    early stopping and model selection follow noise; an unshuffled, class-sorted training
    stream makes every batch one class and the model forgets the rest each epoch.
    How: reads `val_items` validation items twice and compares their content hashes;
    inspects the training DataLoader's sampler (SequentialSampler, RandomSampler, ...), or
    for other samplers draws the first indices of two epochs and compares them. When the
    loader does not shuffle, reads the labels of the first `order_items` items in order and
    measures how often neighbours share a label (about 1/C when the order is random).
    Thresholds: any difference between two reads of a validation item fails; a training
    loader that does not shuffle warns, and fails when at least D7.grouped (80%) of
    neighbouring items share a label (data grouped by class). Budgets: D7.val_items (8),
    D7.order_items (256).
    Fix: build the validation dataset with the deterministic transform only (resize,
    normalise, no random crop/flip); pass shuffle=True (or a random sampler) to the
    training DataLoader, as Recipe.loaders does by default.
    """

    id = "D7"
    name = "validation fixed, training shuffled"
    stage = "data"
    settings = ("val_items", "order_items", "grouped")
    val_items = 8
    order_items = 256
    grouped = 0.8

    def run(self, ctx) -> Finding:
        problems = _Problems()
        ev: dict[str, Any] = {}
        val = ctx.val
        n_val = ctx.length("val")
        differing = []
        for i in _spread(n_val, self.val_items):
            if fingerprint(val[i]) != fingerprint(val[i]):
                differing.append(i)
        ev["val_items_read_twice"] = min(n_val, self.val_items)
        if differing:
            ev["val_items_differing"] = differing
            problems.add(
                "fail",
                f"validation items {differing[:5]} differ between two reads",
                "the validation set applies random transforms (augmentation) or other randomness in "
                "__getitem__, so its loss and metrics are noisy and biased",
                "give the validation dataset the deterministic transform only (no random crop/flip/noise)",
            )

        train_loader = ctx.loaders[0]
        shuffles, how = _loader_shuffles(train_loader)
        ev["train_order"] = how
        if shuffles is False:
            status, extra = "warn", ""
            if ctx.classification:
                size = ctx.length("train")
                count = min(size, self.order_items)

                def label(i: int) -> int:
                    return int(torch.as_tensor(ctx.train[i][1]).reshape(-1)[0])

                labels = [label(i) for i in range(count)]
                classes = set(labels) | {label(i) for i in _spread(size, 16)}
                same = sum(a == b for a, b in zip(labels, labels[1:])) / max(1, count - 1)
                ev["adjacent_same_label"] = round(same, 3)
                if count > 2 and len(classes) > 1 and same >= self.grouped:
                    status = "fail"
                    extra = f"; {same:.0%} of neighbouring items share a label (the data are grouped by class)"
            problems.add(
                status,
                f"the training loader does not shuffle ({how}){extra}",
                "every epoch sees the data in one fixed order; batches are correlated (D7)",
                "pass shuffle=True (or a random sampler) to the training DataLoader; Recipe.loaders "
                "does this by default",
            )
        elif shuffles is None:
            problems.add("info", f"training order not checked: {how}")
        ok = f"{ev['val_items_read_twice']} validation items identical on two reads; training loader shuffles ({how})"
        return problems.finding(self, ok, ev)


@register
class InputScale(Check):
    """Input scale: per-channel mean and standard deviation near 0 and 1.

    Detects: inputs far from zero mean and unit variance, such as raw 0-255 pixels,
    unstandardised tabular features (ages, prices, counts) or inputs scaled to tiny values.
    Why: practice D4. Badly scaled inputs saturate activations, blow up the initial loss
    (S4) and force the learning rate down; standardising with statistics from the training
    set is the cheapest fix in deep learning.
    How: collates up to `samples` training samples (fewer for large inputs), and computes
    the mean and std of each channel (dim 1 of image-like inputs [B, C, ...]) or each
    feature ([B, F]). Integer inputs other than uint8 are token or category ids and are
    skipped; constant features are ignored for the std test.
    Thresholds: warn when any channel's |mean| > D4.max_abs_mean (3) or std > D4.max_std
    (5), or when the median channel std < D4.min_std (0.05). Budget: D4.samples (512).
    Fix: normalise the inputs with the training set's per-channel mean and std (e.g.
    transforms.Normalize(mean, std), or (x - mean) / std in data()); for images, divide
    0-255 pixels by 255 and normalise.
    """

    id = "D4"
    name = "input scale"
    stage = "data"
    settings = ("max_abs_mean", "max_std", "min_std", "samples")
    max_abs_mean = 3.0
    max_std = 5.0
    min_std = 0.05
    samples = 512

    def run(self, ctx) -> Finding:
        first = ctx.batch(2)
        x, _ = split(first)
        per_sample = max(1, x[0].numel())
        n = int(max(8, min(self.samples, 20_000_000 // per_sample)))
        x, _ = split(ctx.batch(n))
        if not (x.is_floating_point() or x.dtype == torch.uint8):
            raise SkipCheck(f"inputs are {str(x.dtype).replace('torch.', '')} (token or category ids), "
                            "which have no scale to check")
        x = x.detach().double()
        if x.dim() == 1:
            groups = x.reshape(-1, 1)
        elif x.dim() == 2:
            groups = x
        else:
            groups = x.transpose(0, 1).reshape(x.shape[1], -1).T
        mean = groups.mean(0)
        std = groups.std(0, unbiased=False)
        finite = torch.isfinite(mean) & torch.isfinite(std)
        if not bool(finite.any()):
            raise SkipCheck("the inputs are not finite (see S13)")
        mean, std = mean[finite], std[finite]
        kind = "feature" if x.dim() <= 2 else "channel"
        varying = std > 0
        ev: dict[str, Any] = {
            "samples": int(x.shape[0]),
            "groups": f"{len(mean)} {kind}s",
            "mean": [round(float(v), 4) for v in mean[:16]],
            "std": [round(float(v), 4) for v in std[:16]],
            "min": float(x.min()),
            "max": float(x.max()),
            "constant": int((~varying).sum()),
        }
        worst_mean = float(mean.abs().max())
        worst_std = float(std.max())
        median_std = float(std[varying].median()) if bool(varying.any()) else 0.0
        text = (f"{len(mean)} {kind}{'s' if len(mean) > 1 else ''}: |mean| <= {worst_mean:.3g}, "
                f"std {float(std[varying].min()) if bool(varying.any()) else 0.0:.3g}..{worst_std:.3g}, "
                f"range {ev['min']:.3g}..{ev['max']:.3g}")
        bad = []
        if worst_mean > self.max_abs_mean:
            i = int(mean.abs().argmax())
            bad.append(f"{kind} {i} has mean {float(mean[i]):.4g}")
        if worst_std > self.max_std:
            i = int(std.argmax())
            bad.append(f"{kind} {i} has std {float(std[i]):.4g}")
        if bool(varying.any()) and median_std < self.min_std:
            bad.append(f"the median {kind} std is {median_std:.3g}")
        if not bad:
            return self.finding("pass", text, evidence=ev)
        raw_pixels = ev["max"] > 20 and ev["min"] >= 0 and x.dim() >= 3
        cause = ("inputs look like raw 0-255 pixel values" if raw_pixels
                 else "inputs are not standardised: their scale is far from mean 0 / std 1")
        return self.finding(
            "warn",
            f"{'; '.join(bad)} ({text})",
            evidence=ev,
            cause=cause + "; activations saturate and the initial loss is off (S4)",
            fix=("normalise with the training set's per-channel statistics: x = (x - mean) / std "
                 "(transforms.Normalize for images; divide pixels by 255 first)"),
        )
