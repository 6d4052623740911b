"""S2 and S3: overfit one batch, then 10 samples, with the recipe's own training step."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from danlu.batches import batch_size_of
from danlu.checks.base import Check, register
from danlu.checks.doctor.measure import accuracy, scalar
from danlu.report import Finding

__all__ = ["OverfitBatch", "OverfitTen", "overfit", "regularisation_off", "loss_floor"]


def regularisation_off(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Dropout modules to eval mode and weight decay to 0, as S2/S3 prescribe."""
    for module in model.modules():
        if isinstance(module, (_DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout)):
            module.eval()
    for group in optimizer.param_groups:
        if "weight_decay" in group:
            group["weight_decay"] = 0.0


def loss_floor(ctx, output: Any, target: Any) -> float:
    """The lowest value the recipe's loss reaches on perfect predictions (0 for plain CE/MSE).

    Classification: the best of confident one-hot logits at margins 1..256 (label smoothing
    has its minimum at a finite margin). Regression: the loss of the targets themselves.
    Returns 0 when it cannot be computed.
    """
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        return 0.0
    try:
        with torch.no_grad():
            if ctx.classification and output.dim() >= 2 and not target.is_floating_point():
                num = output.shape[1]
                hot = F.one_hot(target.long().clamp(0, num - 1), num).movedim(-1, 1).to(output.dtype)
                values = [scalar(ctx.loss(hot * margin, target)) for margin in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
            elif output.numel() == target.numel():
                values = [scalar(ctx.loss(target.reshape(output.shape).to(output.dtype), target))]
            else:
                return 0.0
    except Exception:
        return 0.0
    finite = [v for v in values if math.isfinite(v)]
    return max(0.0, min(finite)) if finite else 0.0


@dataclass
class OverfitResult:
    samples: int
    steps: int = 0
    reached: bool = False
    floor: float = 0.0
    losses: list[float] = field(default_factory=list)
    accuracy: float | None = None
    nonfinite_step: int | None = None

    @property
    def first(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def last(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def overfit(ctx, samples: int, max_steps: int, near_zero: float, seed: int) -> OverfitResult:
    """Train a fresh model on one fixed batch until its loss is near zero (and accuracy 100%).

    Each update is the recipe's own training step (its optimizer, schedule and gradient
    clipping), with dropout off and weight decay 0 as S2/S3 prescribe.
    """
    model = ctx.new_model().train()
    step = ctx.train_step(model, steps=max_steps)
    regularisation_off(model, step.optimizer)
    batch = ctx.batch(samples, seed=seed)
    result = OverfitResult(samples=batch_size_of(batch))
    for i in range(max_steps + 1):
        out = step.forward_backward(batch)
        value = scalar(out.loss)
        if not math.isfinite(value):
            result.nonfinite_step = i
            break
        result.losses.append(value)
        output = out.output.detach() if isinstance(out.output, torch.Tensor) else out.output
        result.accuracy = accuracy(output, out.target) if ctx.classification else None
        if i == 0:
            result.floor = min(loss_floor(ctx, output, out.target), value)
        target_loss = result.floor + near_zero * (result.losses[0] - result.floor)
        if value <= target_loss and (result.accuracy is None or result.accuracy >= 1.0):
            result.reached = True
            result.steps = i
            break
        if i == max_steps:
            result.steps = i
            break
        step.update()
    return result


class _Overfit(Check):
    stage = "train"
    settings = ("samples", "max_steps", "near_zero", "partial")
    samples = 32
    max_steps = 400
    near_zero = 0.05
    partial = 0.3
    seed = 20

    def _samples(self, ctx) -> int:
        return self.samples

    def run(self, ctx) -> Finding:
        result = overfit(ctx, self._samples(ctx), self.max_steps, self.near_zero, self.seed)
        ev: dict[str, Any] = {
            "samples": result.samples, "steps": result.steps, "first_loss": result.first,
            "last_loss": result.last, "accuracy": result.accuracy,
            "curve": result.losses[:: max(1, len(result.losses) // 50)],
        }
        what = f"{result.samples} samples"
        if result.nonfinite_step is not None:
            return self.finding(
                "fail", f"the loss became NaN/Inf at step {result.nonfinite_step} while overfitting {what}",
                evidence=ev, cause="training diverged or an operation produced NaN/Inf",
                fix="see S9 for where it comes from; lower the learning rate if the loss grew first",
            )
        acc = f", accuracy {result.accuracy:.0%}" if result.accuracy is not None else ""
        span = result.first - result.floor
        ratio = (result.last - result.floor) / span if span > 0 else float("nan")
        ev["floor"] = result.floor
        floor_text = f" above the loss floor {result.floor:.3g}" if result.floor > 1e-6 else ""
        if result.reached:
            return self.finding(
                "pass", f"loss {result.first:.4g} -> {result.last:.4g} ({ratio:.1%} of start{floor_text}){acc} "
                        f"on {what} in {result.steps} steps", evidence=ev)
        head = (f"loss {result.first:.4g} -> {result.last:.4g} ({ratio:.1%} of start{floor_text}){acc} on {what} "
                f"after {result.steps} steps")
        memorised = result.accuracy is not None and result.accuracy >= 1.0
        if memorised or (result.accuracy is None and ratio <= self.partial):
            return self.finding(
                "warn", f"{head}: {'every sample right but ' if memorised else ''}the loss stays above "
                        f"{self.near_zero:.0%} of its start",
                evidence=ev,
                cause=("the loss cannot come down all the way: probabilities fed to a logit loss (S7), a "
                       "regulariser inside the loss, or too few steps at this learning rate"),
                fix=f"check S7; if the floor is intended, raise {self.id}.near_zero",
            )
        return self.finding(
            "fail", f"{head}: the model cannot fit {what}", evidence=ev,
            cause=("a model that cannot overfit a handful of samples has a bug: the output does not depend on "
                   "the input (S5), gradients do not flow (S8), the loss or labels are wrong (S7, S13), or the "
                   "learning rate is far off (too low to move, too high to settle)"),
            fix=("fix the failing checks above first; then try lr x10 and /10; make sure regularisation is "
                 f"not in the loss; raise {self.id}.max_steps if the loss was still falling"),
        )


@register
class OverfitBatch(_Overfit):
    """Overfit one batch: with regularisation off, the loss of a single small batch falls to about zero.

    Detects: a model, loss or optimiser that cannot fit even one batch: the output ignores
    the input, gradients do not flow, labels do not match the loss, the learning rate is
    far off, or the model lacks capacity.
    Why: practice S2, the first of the "防呆" (fool-proofing) experiments. If a network
    cannot memorise one batch, no amount of data or tuning will help; if it can, the
    pipeline from input to loss works end to end.
    How: trains a fresh model with the recipe's optimizer on one fixed batch of up to
    `samples` training samples, with dropout modules in eval mode and weight decay 0,
    until the loss has come down to within `near_zero` of the way from its start to the
    loss's own floor (and, for classification, every sample is right), for at most
    `max_steps` steps, and reports how many it took. The floor is 0 for plain
    cross-entropy and MSE; losses with a built-in floor (label smoothing) are evaluated
    on confident correct predictions to find theirs.
    Thresholds: pass when reached; warn when every sample is right (or, for regression,
    the loss covered all but S2.partial = 30% of the way) but the loss stays above
    S2.near_zero (5%) of the way; fail otherwise or on NaN. Budget: S2.samples (32),
    S2.max_steps (400).
    Fix: fix the other failing checks first; then try the learning rate x10 and /10,
    remove regularisation from the loss, and give the model enough capacity.
    """

    id = "S2"
    name = "overfit one batch"

    def _samples(self, ctx) -> int:
        return max(2, min(self.samples, ctx.batch_size))


@register
class OverfitTen(_Overfit):
    """Overfit 10 samples: the net maps 10 different inputs to their 10 targets.

    Detects: the same failures as S2 on a set small enough to fit in seconds; a model
    that returns one output whatever the input fits a single sample but not ten.
    Why: practice S3: "overfit 5-10 samples within minutes: the net must map different
    inputs to different outputs". It separates "cannot learn at all" from "cannot
    tell inputs apart".
    How: as S2, on 10 fixed training samples, with dropout off and weight decay 0.
    Thresholds: as S2, with its own S3.near_zero (5%), S3.partial (30%),
    S3.samples (10) and S3.max_steps (400).
    Fix: if S2 passes and S3 fails, the model struggles to tell inputs apart: check the
    input reaches the output (S5), pooling that discards everything, or a tiny bottleneck.
    """

    id = "S3"
    name = "overfit 10 samples"
    samples = 10
    seed = 30
