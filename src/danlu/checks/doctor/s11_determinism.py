"""S11: two short runs from the same seed give identical losses; if not, which part differs."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from danlu.batches import fingerprint
from danlu.checks.base import Check, register
from danlu.report import Finding
from danlu.repro import seed_everything
from danlu.step import prepare

__all__ = ["Determinism"]


@dataclass
class _Run:
    data_items: str = ""                  # hash of a few items read under a fixed seed
    data_items_again: str = ""            # the same items read again under the same seed
    init: str = ""                        # hash of the initial parameters and buffers
    batches: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def _state_hash(model: torch.nn.Module) -> str:
    return fingerprint([t for _, t in sorted(model.state_dict().items())])


def _items_hash(dataset, seed: int, count: int = 4) -> str:
    try:
        size = len(dataset)
    except TypeError:
        return ""
    seed_everything(seed)
    picks = sorted({0, size // 3, (2 * size) // 3, size - 1})[:count] if size else []
    return fingerprint([dataset[i] for i in picks])


@register
class Determinism(Check):
    """Determinism: two short runs from the same seed give identical losses.

    Detects: runs that are not reproducible, and says which part differs: the data
    content (random values not drawn from the seeded generators: np.random.default_rng()
    without a seed, os.urandom, time-based randomness), the data order (a loader whose
    shuffling is not seeded), the model initialisation (weights drawn from an unseeded
    generator), or the computation itself (non-deterministic kernels).
    Why: practice S11. Without same-seed-same-result, no comparison between two runs
    means anything: a 0.5% gain may be noise, and a bug cannot be replayed (E3).
    How: twice, builds the run exactly as `danlu train` does (danlu.step.prepare: seed,
    data(), loaders(), model(), optimizer, schedule) and takes its first `steps` training
    steps on its own training loader, recording the hash of the initial weights, of each
    batch and the losses (the same losses `danlu train` logs for those steps). Data content is compared by reading
    a few training items under a fixed seed in each run and twice within a run.
    Thresholds: the losses must be bit-identical; any difference fails and names the
    parts that differ. Budget: S11.steps (3).
    Fix: draw every random number from torch/numpy/random global generators (seeded by
    danlu) or from generators seeded from the recipe's seed; pass a seeded
    torch.Generator to DataLoaders; call torch.use_deterministic_algorithms(True) for
    GPU kernels.
    Cannot see: non-determinism that appears after S11.steps steps (at an epoch
    boundary, in a worker that starts later), only on GPU kernels when run on CPU, or
    across machines and library versions.
    """

    id = "S11"
    name = "determinism"
    stage = "train"
    settings = ("steps",)
    steps = 3

    def _one(self, ctx) -> _Run:
        out = _Run()
        run = prepare(ctx.recipe, ctx.device)  # exactly what `danlu train` starts from
        out.init = _state_hash(run.model)
        for batch in itertools.islice(iter(run.train_loader), self.steps):
            out.batches.append(fingerprint(batch))
            out.losses.append(float(run.step(batch).loss.float().mean()))
        out.data_items = _items_hash(run.train, ctx.seed + 1)
        out.data_items_again = _items_hash(run.train, ctx.seed + 1)
        return out

    def run(self, ctx) -> Finding:
        ctx.datasets  # noqa: B018 - data() must build before we call it twice more
        ctx.prototype  # noqa: B018
        a, b = self._one(ctx), self._one(ctx)
        ev: dict[str, Any] = {"steps": len(a.losses), "losses_a": a.losses, "losses_b": b.losses}
        same_losses = len(a.losses) == len(b.losses) and all(
            x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.losses, b.losses))
        parts = []
        if a.data_items != b.data_items or a.data_items_again != a.data_items:
            parts.append("data content")
        if a.batches != b.batches and "data content" not in parts:
            parts.append("data order")
        if a.init != b.init:
            parts.append("model init")
        if not same_losses and not parts:
            parts.append("compute")
        ev["differs"] = parts
        if same_losses and not parts:
            return self.finding(
                "pass", f"two runs from seed {ctx.seed}: identical init, batches and losses over {len(a.losses)} steps",
                evidence=ev)
        causes, fixes = [], []
        if "data content" in parts:
            causes.append("data() or __getitem__ draws random values outside the seeded generators "
                          "(np.random.default_rng() without a seed, os.urandom, time)")
            fixes.append("derive every data RNG from the recipe's seed (np.random.default_rng(self.seed)) or use "
                         "torch/np.random global functions, which danlu seeds")
        if "data order" in parts:
            causes.append("the training loader's shuffling is not seeded")
            fixes.append("pass generator=torch.Generator().manual_seed(self.seed) to the training DataLoader "
                         "(Recipe.loaders does)")
        if "model init" in parts:
            causes.append("model() draws initial weights from an unseeded generator")
            fixes.append("initialise with torch's default generators (seeded by danlu) or a torch.Generator "
                         "seeded from the recipe's seed")
        if "compute" in parts:
            causes.append("the same weights and batches give different losses: non-deterministic kernels "
                          "(atomics on GPU, cuDNN autotuning) or thread-dependent reductions")
            fixes.append("call torch.use_deterministic_algorithms(True) and set CUBLAS_WORKSPACE_CONFIG=:4096:8")
        status = "fail" if not same_losses or "model init" in parts or "data content" in parts else "warn"
        loss_text = ("identical losses" if same_losses else
                     f"losses {a.losses[-1]:.6g} vs {b.losses[-1]:.6g} after {len(a.losses)} steps")
        return self.finding(
            status, f"two runs from seed {ctx.seed} differ in {', '.join(parts)} ({loss_text})",
            evidence=ev, cause="; ".join(causes), fix="; ".join(fixes),
        )
