"""S13 (with D6): one sample and a batch of 1 go through data, model and loss in one process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from danlu.batches import spread
from danlu.checks.base import Check, DependencyFailed, Problems, register
from danlu.errors import error_text, user_frame
from danlu.outputs import class_layout
from danlu.recipe import Recipe
from danlu.report import Finding

__all__ = ["DataInterface"]


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
    Cannot see: items it does not read (it samples S13.sample_items items and scans up
    to S13.scan_items within S13.scan_seconds); labels that are in range but wrong (C2's
    suspicious labels); a validation loader that collates differently from training.
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
        problems = Problems()
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
        for i in spread(sizes["train"], self.sample_items):
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
    def _check_targets(ctx, task, scans, output, target, problems: Problems, ev: dict) -> None:
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
            layout = class_layout(output, target, ctx.loss) if target is not None else None
            outputs = layout.classes if layout is not None else None
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
            # a loss of the recipe's own may read several values per sample (a mean and a variance): S7
            # tells whether it mixes samples; danlu's MSE needs one value per target value
            if isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor) and ctx.default_loss:
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
