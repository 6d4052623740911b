"""D7: never augment the validation set; shuffle the training data (shown by check and audit)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from danlu.batches import fingerprint, spread
from danlu.checks.base import Check, CheckResult, Problems, register
from danlu.checks.context import Context

__all__ = ["AugmentationAndShuffling", "loader_shuffles"]


def loader_shuffles(loader) -> tuple[bool | None, str]:
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


def _chosen_order(loader) -> bool:
    """Whether a fixed order comes from a sampler the user wrote (a language model's contiguous
    chunks for truncated backpropagation), rather than PyTorch's default shuffle=False."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    sampler = batch_sampler if batch_sampler is not None and not isinstance(batch_sampler, BatchSampler) \
        else getattr(batch_sampler, "sampler", None) or getattr(loader, "sampler", None)
    return sampler is not None and not type(sampler).__module__.startswith("torch.")


@register
class AugmentationAndShuffling(Check):
    """Validation set fixed (no augmentation), training loader shuffled.

    Detects: random augmentation applied to the validation set (the same index read twice
    gives different items), and a training loader that reads the data in the same order
    every epoch (shuffle=False), which is worst when the data are sorted by class. Says
    whether training items are augmented (the duplicate search, D5, needs to know).
    Why: practice D7. Validation numbers from augmented inputs are noisy and biased, so
    early stopping and model selection follow noise; an unshuffled, class-sorted training
    stream makes every batch one class and the model forgets the rest each epoch.
    How: reads `val_items` validation items (and as many training items) twice and
    compares their content hashes; inspects the training DataLoader's sampler
    (SequentialSampler, RandomSampler, ...), or for other samplers draws the first indices
    of two epochs and compares them. When the loader does not shuffle, reads the labels of
    the first `order_items` items in order and measures how often neighbours share a
    label (about 1/C when the order is random).
    Thresholds: any difference between two reads of a validation item fails; a training
    loader that does not shuffle warns, and fails when at least D7.grouped (80%) of
    neighbouring items share a label (data grouped by class). Budgets: D7.val_items (8),
    D7.order_items (256).
    Fix: build the validation dataset with the deterministic transform only (resize,
    normalise, no random crop/flip); pass shuffle=True (or a random sampler) to the
    training DataLoader, as Recipe.loaders does by default.
    Cannot see: augmentation that is random only for some items (it reads D7.val_items
    items twice); a deterministic but wrong validation transform; a sampler that
    shuffles only within class-sorted blocks.
    """

    id = "D7"
    name = "augmentation and shuffling"
    families = ("audit", "doctor")
    stage = "data"
    settings = ("val_items", "order_items", "grouped")
    val_items = 8
    order_items = 256
    grouped = 0.8

    def run(self, ctx: Context) -> CheckResult:
        return CheckResult([self._validation(ctx), self._shuffling(ctx)])

    def _validation(self, ctx: Context):
        problems = Problems()
        n_val, n_train = ctx.length("val"), ctx.length("train")
        if n_val == 0:   # a LightningModule without val_dataloader: nothing to read twice
            return self.finding("skip", "skipped: the validation set is empty", name="validation augmentation")
        differing = [i for i in spread(n_val, self.val_items) if fingerprint(ctx.val[i]) != fingerprint(ctx.val[i])]
        random_train = any(fingerprint(ctx.train[i]) != fingerprint(ctx.train[i])
                           for i in spread(n_train, self.val_items))
        ev: dict[str, Any] = {"val_items_read_twice": min(n_val, self.val_items), "random_train_items": random_train}
        if differing:
            ev["val_items_differing"] = differing
            problems.add(
                "fail",
                f"validation items {differing[:5]} differ between two reads: validation is augmented",
                "the validation set applies random transforms (augmentation) or other randomness in "
                "__getitem__, so its loss and metrics are noisy and biased",
                "give the validation dataset the deterministic transform only (no random crop/flip/noise)",
            )
        train_note = "training items are randomly augmented" if random_train else "training items are not augmented"
        ok = f"{ev['val_items_read_twice']} validation items identical on two reads; {train_note}"
        return problems.finding(self, ok, ev, name="validation augmentation")

    def _shuffling(self, ctx: Context):
        problems = Problems()
        shuffles, how = loader_shuffles(ctx.loaders[0])
        ev: dict[str, Any] = {"train_order": how}
        if shuffles is False:
            custom = _chosen_order(ctx.loaders[0])
            status, extra = ("info" if custom else "warn"), ""
            if ctx.task_or_none == "classification":
                size = ctx.length("train")
                count = min(size, self.order_items)

                def label(i: int) -> int:
                    return int(torch.as_tensor(ctx.train[i][1]).reshape(-1)[0])

                labels = [label(i) for i in range(count)]
                classes = set(labels) | {label(i) for i in spread(size, 16)}
                same = sum(a == b for a, b in zip(labels, labels[1:])) / max(1, count - 1)
                ev["adjacent_same_label"] = round(same, 3)
                if count > 2 and len(classes) > 1 and same >= self.grouped:
                    status = "fail"
                    extra = f"; {same:.0%} of neighbouring items share a label (the data are grouped by class)"
            if status == "info":
                return self.finding("pass", f"one fixed order from a sampler of your own ({how}): right when the "
                                    "order is the point (a model that carries state from batch to batch); shuffle "
                                    "otherwise", evidence=ev, name="shuffling")
            problems.add(
                status,
                f"the training loader does not shuffle ({how}){extra}",
                "every epoch sees the data in one fixed order; batches are correlated (D7)",
                "pass shuffle=True (or a random sampler) to the training DataLoader; Recipe.loaders "
                "does this by default",
            )
        elif shuffles is None:
            problems.add("info", f"training order not checked: {how}")
        return problems.finding(self, f"the training loader shuffles ({how})", ev, name="shuffling")
