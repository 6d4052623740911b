"""S12: time per batch, split into data loading and compute; profile __getitem__ when data dominates."""

from __future__ import annotations

import cProfile
import math
import os
import pstats
import time
from pathlib import Path
from typing import Any

import torch

from danlu.checks.base import Check, SkipCheck, register
from danlu.report import Finding

__all__ = ["Speed", "profile_getitem"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_getitem(dataset, indices: list[int], top: int = 5, budget: float = 2.0) -> tuple[list[str], float]:
    """cProfile ``dataset[i]`` for the given indices; the top functions by own time, and s/item."""
    profiler = cProfile.Profile()
    count = 0
    start = time.perf_counter()
    profiler.enable()
    try:
        for i in indices:
            dataset[i]
            count += 1
            if time.perf_counter() - start > budget:
                break
    finally:
        profiler.disable()
    elapsed = (time.perf_counter() - start) / max(count, 1)
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, func), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "_lsprof" in func or filename == "~" and "disable" in func:
            continue
        where = func if filename == "~" else f"{func} ({Path(filename).name}:{line})"
        rows.append((own, cumulative, calls, where))
    rows.sort(reverse=True)
    lines = [f"{where}: {own / max(count, 1) * 1e3:.3g} ms/item own, {cum / max(count, 1) * 1e3:.3g} ms/item total"
             for own, cum, calls, where in rows[:top]]
    return lines, elapsed


@register
class Speed(Check):
    """Speed: time per batch split into data loading and compute; profile data loading when it dominates.

    Detects: batches slower than a second, and training that waits on data loading
    rather than computing (slow __getitem__: image decoding, per-item file reads, Python
    loops, too few DataLoader workers).
    Why: practice S12. A batch under a second keeps the sanity experiments interactive;
    when data loading dominates, the GPU/CPU idles and a faster model will not help,
    while workers, caching or a vectorised transform will.
    How: iterates the recipe's own training DataLoader (with its num_workers) and trains a
    fresh model, timing the wait for each batch (data) and the recipe's training step
    (compute) separately; the first batch (worker start-up, warm-up) is
    timed apart. When data loading dominates, runs cProfile over the dataset's
    __getitem__ for `profile_items` items and lists the top functions by own time, and
    suggests a number of workers.
    Thresholds: warn when a batch takes over S12.slow_batch (1 s), or when data loading is
    over S12.data_share (50%) of the batch time and over S12.min_data_seconds (10 ms) per
    batch. Budgets: S12.max_batches (20) batches within S12.budget_seconds (5 s); the
    profile reads S12.profile_items (16) items.
    Fix: set num_workers (the suggested number) and pin_memory on GPU; cache decoded
    data; move per-item work into a vectorised transform on the batch; shrink the model
    or batch when compute is slow.
    Cannot see: speed on other hardware or under other load (it times the machine it
    runs on, for at most S12.max_batches batches); a file cache that is warm now and
    cold in a real run.
    """

    id = "S12"
    name = "speed"
    stage = "train"
    settings = ("max_batches", "budget_seconds", "slow_batch", "data_share", "min_data_seconds", "profile_items")
    max_batches = 20
    budget_seconds = 5.0
    slow_batch = 1.0
    data_share = 0.5
    min_data_seconds = 0.01
    profile_items = 16

    def run(self, ctx) -> Finding:
        loader = ctx.loaders[0]
        device = ctx.device
        model = ctx.new_model().train()
        train_step = ctx.train_step(model)

        def compute(batch) -> None:
            train_step(batch)
            _sync(device)

        iterator = iter(loader)
        t0 = time.perf_counter()
        try:
            first = next(iterator)
        except StopIteration:
            raise SkipCheck("the training loader yields no batch") from None
        t1 = time.perf_counter()
        compute(first)
        t2 = time.perf_counter()
        first_data, first_compute = t1 - t0, t2 - t1
        data_t = compute_t = 0.0
        count = 0
        start = time.perf_counter()
        while count < self.max_batches and time.perf_counter() - start < self.budget_seconds:
            a = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            b = time.perf_counter()
            compute(batch)
            c = time.perf_counter()
            data_t += b - a
            compute_t += c - b
            count += 1
        del iterator
        if count == 0:  # a single batch per epoch: use the first one
            data_t, compute_t, count = first_data, first_compute, 1
        data_per, comp_per = data_t / count, compute_t / count
        per_batch = data_per + comp_per
        share = data_per / per_batch if per_batch > 0 else 0.0
        workers = int(getattr(loader, "num_workers", 0) or 0)
        size = getattr(loader, "batch_size", None) or ctx.batch_size
        ev: dict[str, Any] = {
            "batches_timed": count, "batch_size": size, "num_workers": workers,
            "data_seconds_per_batch": data_per, "compute_seconds_per_batch": comp_per,
            "data_share": share, "first_batch_data_seconds": first_data, "first_batch_compute_seconds": first_compute,
            "device": str(device),
        }
        text = (f"{per_batch * 1e3:.3g} ms per batch of {size}: data {data_per * 1e3:.3g} ms ({share:.0%}), "
                f"compute {comp_per * 1e3:.3g} ms ({count} batches, {workers} workers)")
        problems: list[tuple[str, str, str]] = []
        details = ""
        if per_batch > self.slow_batch:
            problems.append((
                f"a batch takes {per_batch:.3g} s",
                "slower than a second per batch makes every experiment slow (S12)",
                "shrink the model or batch for the sanity runs (S1), or speed up data loading",
            ))
        if share > self.data_share and data_per > self.min_data_seconds:
            indices = ctx.indices("train", self.profile_items, seed=12)
            top, per_item = profile_getitem(ctx.train, indices)
            ev["profile_top"] = top
            ev["getitem_seconds"] = per_item
            details = "cProfile of __getitem__ (top functions by own time):\n" + "\n".join(top)
            cpus = os.cpu_count() or 1
            if workers == 0:
                suggestion = min(cpus, max(2, math.ceil(data_per / max(comp_per, 1e-6))))
                worker_fix = f"set num_workers={suggestion} (this machine has {cpus} CPUs)"
            else:
                suggestion = min(cpus, max(workers + 1, math.ceil(workers * data_per / max(comp_per, 1e-6))))
                worker_fix = f"raise num_workers from {workers} to {suggestion}" if suggestion > workers else \
                    "all CPUs are already used by workers; make __getitem__ cheaper"
            ev["suggested_workers"] = suggestion
            hot = top[0] if top else "unknown"
            problems.append((
                f"data loading takes {share:.0%} of each batch ({data_per * 1e3:.3g} ms); __getitem__ "
                f"{per_item * 1e3:.3g} ms/item, hottest: {hot}",
                "the model waits for data: __getitem__ is slow (see the profile) and runs in too few processes",
                f"{worker_fix}; cache decoded data or move per-item work into a batched transform",
            ))
        if not problems:
            return self.finding("pass", text, evidence=ev)
        return self.finding(
            "warn", "; ".join(p[0] for p in problems) + f" ({text})", evidence=ev,
            cause=" ".join(p[1] for p in problems), fix=" ".join(p[2] for p in problems), details=details,
        )
