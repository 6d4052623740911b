"""S2 and S3: overfit one batch, then 10 samples, with the recipe's own training step."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from danlu.batches import batch_size_of
from danlu.checks.base import Check, register
from danlu.checks.doctor.measure import accuracy, scalar
from danlu.outputs import class_layout
from danlu.report import Finding

__all__ = ["OverfitBatch", "OverfitTen", "overfit", "regularisation_off", "loss_floor", "blind_loss"]


def regularisation_off(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Dropout modules to eval mode and weight decay to 0, as S2/S3 prescribe."""
    for module in model.modules():
        if isinstance(module, (_DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout)):
            module.eval()
    for group in optimizer.param_groups:
        if "weight_decay" in group:
            group["weight_decay"] = 0.0


def loss_floor(ctx, output: Any, target: Any) -> float | None:
    """The lowest value the recipe's loss reaches on perfect predictions (0 for plain CE/MSE), or
    None when danlu cannot build a perfect prediction (an output that is not one tensor).

    Classification: the best of confident one-hot scores at margins 1..256, along the class
    dimension the loss reads (label smoothing has its minimum at a finite margin).
    Regression: the loss of the targets themselves.
    """
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        return None
    try:
        with torch.no_grad():
            layout = class_layout(output, target, ctx.loss) if ctx.classification else None
            if layout is not None:
                shaped = target.reshape(output.shape[:layout.dim] + output.shape[layout.dim + 1:])
                hot = layout.one_hot(shaped, 1.0, output.dtype)
                values = [scalar(ctx.loss(hot * margin, target)) for margin in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
            elif output.numel() == target.numel():
                values = [scalar(ctx.loss(target.reshape(output.shape).to(output.dtype), target))]
            else:
                return None
    except Exception:
        return None
    finite = [v for v in values if math.isfinite(v)]
    return max(0.0, min(finite)) if finite else None


def blind_loss(ctx, output: Any, target: Any, samples: int) -> float | None:
    """The loss of the best prediction that ignores the input but may know the position, on this
    batch: each class's frequency among the targets at each position, fed to the recipe's loss as
    log-probabilities.

    A model that fits a batch from its inputs goes far below it; one that cannot use its inputs
    (S5's bugs) stops at it. For cross-entropy and NLL it is the targets' entropy at each position.
    Targets flattened to one dimension ([T*B] from a sequence-first forward) are grouped both ways
    and the lower value kept. None for anything but class indices along one class dimension.
    """
    if not ctx.classification:
        return _blind_regression_loss(ctx, output, target)
    layout = class_layout(output, target, ctx.loss)
    if layout is None:
        return None
    try:
        with torch.no_grad():
            shaped = target.reshape(output.shape[:layout.dim] + output.shape[layout.dim + 1:])
            hot = layout.one_hot(shaped, 1.0, torch.float64).movedim(layout.dim, -1)    # shaped + [C]
            rows = hot.reshape(-1, layout.classes)
            n = rows.shape[0]
            # (rows as [a, b], the axis that runs over the samples)
            if shaped.dim() > 1 and shaped.shape[0] == samples:
                groups = [((samples, n // samples), 0)]                       # [B, positions...]
            elif n > samples and n % samples == 0:
                groups = [((samples, n // samples), 0), ((n // samples, samples), 1)]   # batch- or position-major
            else:
                groups = [((n, 1), 0)]                                        # one prediction a sample
            values = []
            for shape, by in groups:
                freq = rows.reshape(*shape, -1).mean(by, keepdim=True).expand(*shape, -1).reshape(n, -1)
                blind = (freq + 1e-9).log().reshape(hot.shape).movedim(-1, layout.dim).to(output.dtype)
                values.append(scalar(ctx.loss(blind, target)))
    except Exception:
        return None
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else None


def _blind_regression_loss(ctx, output: Any, target: Any) -> float | None:
    """Regression: the loss of the best constant prediction (one value per output position, the same
    for every sample) on this batch, found by minimising the recipe's loss over it from the targets'
    mean: for MSE the targets' variance, for L1 their spread about the median, for BCE on logits the
    targets' entropy. None when the output is not one tensor of the target's size."""
    if not (isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor)
            and output.numel() == target.numel() and target.is_floating_point() and target.dim() >= 1
            and output.dim() >= 1 and output.shape[0] == target.shape[0]):
        return None
    try:
        shaped = target.detach().reshape(output.shape).to(output.dtype)
        const = shaped.mean(0, keepdim=True).clone().requires_grad_(True)
        values = []
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")      # the recipe's loss may warn; the user saw it in training
            opt = torch.optim.LBFGS([const], lr=0.5, max_iter=60, line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                loss = ctx.loss(const.expand_as(shaped), target)
                loss.backward()     # fits one constant prediction (the reference), not the model
                return loss

            values.append(scalar(closure()))
            opt.step(closure)
            with torch.no_grad():
                values.append(scalar(ctx.loss(const.expand_as(shaped), target)))
    except Exception:
        return None
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else None


@dataclass
class OverfitResult:
    samples: int
    lr: float = math.nan              # the learning rate of this attempt (first parameter group)
    lr_scale: float = 1.0             # ... as a multiple of the recipe's
    steps: int = 0
    reached: bool = False
    floor: float | None = 0.0         # None: unknown (the loss has no perfect prediction danlu can build)
    blind: float | None = None        # the loss of the best input-blind prediction (classes only)
    losses: list[float] = field(default_factory=list)
    accuracy: float | None = None
    dense: bool = False               # several predictions per sample (tokens, pixels)
    output_kind: str = "Tensor"
    stuck: bool = False               # the loss cannot go below its start, whatever the model outputs
    nonfinite_step: int | None = None

    @property
    def first(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def last(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    def fraction_left(self) -> float:
        """How much of the way from the start to the floor (or to 0) is still left (NaN when undefined)."""
        floor = self.floor or 0.0
        span = self.first - floor
        return (self.last - floor) / span if span > 0 and math.isfinite(span) else float("nan")

    def learned_from_inputs(self, share: float) -> bool:
        """The loss went far below what any prediction blind to the input reaches (`share` of it):
        the model reads its inputs, whether or not it has fitted the batch yet."""
        return self.blind is not None and self.blind > 0 and self.last <= share * self.blind

    def fits_from_inputs(self, share: float) -> bool:
        """Several predictions a sample (tokens) and a loss far below the input-blind loss: the model
        fits this batch from its inputs, only not all the way within the budget. Sequence models sit
        on the label-frequency plateau for hundreds of steps first; one label a sample has no such
        plateau, so a model with one label a sample gets a longer attempt instead (`_Overfit.extend`)."""
        return self.dense and self.learned_from_inputs(share)

    def descended(self) -> bool:
        """The loss went down for real: at least one step taken and a lower value than at the start."""
        return len(self.losses) > 1 and self.last < self.first


def overfit(ctx, samples: int, max_steps: int, near_zero: float, seed: int, lr_scale: float = 1.0,
            unknown_floor_drop: float = 0.5) -> OverfitResult:
    """Train a fresh model on one fixed batch until its loss is near its floor (and every prediction right).

    Each update is the recipe's own training step (its optimizer, schedule and gradient
    clipping, the learning rate times `lr_scale`), with dropout off and weight decay 0 as
    S2/S3 prescribe. A loss whose floor is unknown counts as fitted once it fell by
    `unknown_floor_drop` of its start.
    """
    model = ctx.new_model().train()
    step = ctx.train_step(model, steps=max_steps)
    step.scale_lr(lr_scale)
    regularisation_off(model, step.optimizer)
    batch = ctx.batch(samples, seed=seed)
    result = OverfitResult(samples=batch_size_of(batch), lr=step.lr, lr_scale=lr_scale)
    need_acc = 1.0
    advance = ctx.advance(f"fitting {batch_size_of(batch)} samples (lr x{lr_scale:g})", max_steps)
    for i in range(max_steps + 1):
        if i:
            advance(1)      # step 0 only measures the start: max_steps updates fill the bar
        out = step.forward_backward(batch)
        value = scalar(out.loss)
        if not math.isfinite(value):
            result.nonfinite_step = i
            break
        result.losses.append(value)
        output = out.output.detach() if isinstance(out.output, torch.Tensor) else out.output
        if ctx.classification:
            result.accuracy = accuracy(output, out.target, ctx.loss)
        if i == 0:
            result.output_kind = type(output).__name__
            floor = loss_floor(ctx, output, out.target)
            result.floor = None if floor is None else min(floor, value)
            if floor is not None and floor >= value * (1 - 1e-3):
                result.stuck = True        # even perfect predictions give the start's loss: nothing to fit
                break
            layout = class_layout(output, out.target, ctx.loss) if ctx.classification else None
            result.dense = layout is not None and (layout.per_sample > 1 or out.target.numel() > result.samples)
            result.blind = blind_loss(ctx, output, out.target, result.samples)
            need_acc = 0.99 if result.dense else 1.0      # a few border pixels / rare tokens may stay wrong
        elif result.floor is None:
            if value <= (1 - unknown_floor_drop) * result.first:
                result.reached, result.steps = True, i
                break
        else:
            target_loss = result.floor + near_zero * (result.first - result.floor)
            if value <= target_loss and value < result.first and (result.accuracy is None
                                                                   or result.accuracy >= need_acc):
                result.reached, result.steps = True, i
                break
        if i == max_steps:
            result.steps = i
            break
        step.update()
    return result


def _escalations(first: OverfitResult, factors: tuple[float, ...]) -> list[float]:
    """Learning-rate multiples to try after a failed first attempt: up when the loss fell too slowly,
    down when it blew up or rose."""
    blew_up = first.nonfinite_step is not None or (len(first.losses) > 1 and first.last > first.first)
    return [first.lr_scale / f for f in factors] if blew_up else [first.lr_scale * f for f in factors]


class _Overfit(Check):
    stage = "train"
    settings = ("samples", "max_steps", "near_zero", "partial", "escalate", "blind_share", "extend")
    samples = 32
    max_steps = 400
    near_zero = 0.05
    partial = 0.3
    escalate = 10.0
    #: A model with one prediction a sample that went below `blind_share` of the input-blind loss at
    #: some rate but fitted at none gets one attempt `extend` times as long at its best rate: a GRU
    #: classifier (tests' model_gru) was 97% right after 400 steps, and fitted in 374 of 1200.
    extend = 3
    #: A model blind to its input cannot go below 1.0x the blind loss (it is that predictor's optimum);
    #: healthy slow language models were seen at 0.06x-0.53x of it, planted blind ones at 1.2x-1.3x.
    blind_share = 0.75
    seed = 20

    def _samples(self, ctx) -> int:
        return self.samples

    def run(self, ctx) -> Finding:
        start_scale = getattr(ctx, "lr_scale", 1.0)
        attempts = [overfit(ctx, self._samples(ctx), self.max_steps, self.near_zero, self.seed, start_scale)]
        if not attempts[0].reached and not attempts[0].stuck and self.escalate > 1:
            for scale in _escalations(attempts[0], (math.sqrt(self.escalate), self.escalate)):
                attempts.append(overfit(ctx, self._samples(ctx), self.max_steps, self.near_zero, self.seed, scale))
                if attempts[-1].reached:
                    break
        result = next((a for a in attempts if a.reached), None) or _closest(attempts)
        if (not result.reached and not result.dense and self.extend > 1
                and result.learned_from_inputs(self.blind_share)):    # a slow learner: give it time
            attempts.append(overfit(ctx, self._samples(ctx), int(self.max_steps * self.extend), self.near_zero,
                                    self.seed, result.lr_scale))
            result = attempts[-1] if attempts[-1].reached else _closest(attempts)
        if (result.reached or result.fits_from_inputs(self.blind_share)) and result.lr_scale != 1.0:
            ctx.lr_scale = result.lr_scale   # later checks that train (S3, S5) start from the rate that worked
        ev: dict[str, Any] = {
            "samples": result.samples, "steps": result.steps, "first_loss": result.first,
            "last_loss": result.last, "accuracy": result.accuracy, "floor": result.floor,
            "lr": result.lr, "lr_scale": result.lr_scale, "blind": result.blind,
            "attempts": [{"lr": a.lr, "reached": a.reached, "steps": a.steps, "last_loss": a.last} for a in attempts],
            "curve": result.losses[:: max(1, len(result.losses) // 50)],
        }
        what = f"{result.samples} samples"
        tried = ", ".join(f"{a.lr:.2g}" for a in attempts)
        if result.reached:
            return self._reached(result, attempts, what, ev)
        first = attempts[0]
        if first.nonfinite_step is not None and all(a.nonfinite_step is not None for a in attempts):
            return self.finding(
                "fail", f"the loss became NaN/Inf at step {first.nonfinite_step} while overfitting {what} "
                        f"(learning rates tried: {tried})",
                evidence=ev, cause="training diverged or an operation produced NaN/Inf",
                fix="see S9 for where it comes from; lower the learning rate if the loss grew first",
            )
        best = result
        acc = _acc_text(best.accuracy)
        left = best.fraction_left()
        head = (f"loss {best.first:.4g} -> {best.last:.4g} ({_left_text(best)}){acc} on {what} after "
                f"{best.steps} steps at lr {best.lr:.2g}"
                + (f" (the best of lr {', '.join(f'{a.lr:.2g}' for a in attempts)})" if len(attempts) > 1 else ""))
        if not first.stuck and not any(a.descended() for a in attempts):
            return self.finding(
                "fail", f"{head}: the loss did not go down at all", evidence=ev,
                cause=("the loss does not respond to the model: it is computed from something the parameters do "
                       "not reach (shapes broadcast in the loss, S7; a detached output, S8), or every update is "
                       "zero (lr 0, no gradients)"),
                fix="check S7 and S8; make the output's shape equal the target's; make sure the loss is built "
                    "from the model's output",
            )
        if first.stuck:
            return self.finding(
                "fail", f"the loss of {what} starts at {first.first:.4g}, and even perfect predictions give "
                        f"{first.floor:.4g}: the loss cannot go down",
                evidence=ev,
                cause="the loss cannot move: it does not compare each output with its own target "
                      "(a shape broadcast in the loss, S7)",
                fix="make the output's shape equal the target's (output.squeeze(-1) or target.unsqueeze(-1))",
            )
        memorised = best.accuracy is not None and best.accuracy >= (0.99 if best.dense else 1.0)
        if best.floor is None:
            return self.finding(
                "info", f"{head}: the loss fell {1 - best.last / best.first:.0%}; its floor is unknown (the "
                        f"output is a {best.output_kind}), so whether it fits the samples cannot be judged",
                evidence=ev, fix=f"raise {self.id}.max_steps to watch it longer",
            )
        if not memorised and best.fits_from_inputs(self.blind_share):
            near = math.isfinite(left) and left <= self.near_zero
            where = ("near its floor, though not every prediction is right (in text, the same context can be "
                     "followed by different tokens)" if near else "not near its floor yet")
            return self.finding(
                "info", f"{head}: {where}, but far below the {best.blind:.4g} that a prediction ignoring the "
                        "input reaches: the model fits from its inputs",
                evidence=ev,
                cause=("a slow learner at these rates (a recurrent model on text sits on the word-frequency "
                       "plateau for hundreds of steps); a bug that hides the input would stop at "
                       f"{best.blind:.4g}"),
                fix=f"raise {self.id}.max_steps to watch it fit; find a faster rate with `danlu lr` (T4)",
            )
        if memorised or (best.accuracy is None and math.isfinite(left) and left <= self.partial):
            return self.finding(
                "warn", f"{head}: {'every prediction right but ' if memorised else ''}the loss stays above "
                        f"{self.near_zero:.0%} of its start",
                evidence=ev,
                cause=("the loss cannot come down all the way: probabilities fed to a logit loss (S7), a "
                       "regulariser inside the loss, or too few steps at this learning rate"),
                fix=f"check S7; if the floor is intended, raise {self.id}.near_zero",
            )
        if best.learned_from_inputs(self.blind_share):
            return self.finding(
                "warn", f"{head}: far below the {best.blind:.4g} that a prediction ignoring the input reaches, "
                        f"but not fitted",
                evidence=ev,
                cause=("the model reads its inputs but fits slowly: a slow learner at every rate tried, too little "
                       "capacity, or part of the model left out of training (S8)"),
                fix=f"check S8; raise {self.id}.max_steps to watch it fit; find a faster rate with `danlu lr` (T4)",
            )
        return self.finding(
            "fail", f"{head}: the model cannot fit {what}", evidence=ev,
            cause=("a model that cannot overfit a handful of samples has a bug: the output does not depend on "
                   "the input (S5), gradients do not flow (S8), the loss or labels are wrong (S7, S13), or the "
                   "learning rate is far off (several were tried)"),
            fix=("fix the failing checks above first; make sure regularisation is not in the loss; raise "
                 f"{self.id}.max_steps if the loss was still falling"),
        )

    def _reached(self, result: OverfitResult, attempts: list[OverfitResult], what: str, ev: dict) -> Finding:
        floor_text = f" above the loss floor {result.floor:.3g}" if result.floor and result.floor > 1e-6 else ""
        if result.floor is None:
            progress = f"fell {1 - result.last / result.first:.0%}; floor unknown"
        else:
            progress = f"{result.fraction_left():.1%} of start{floor_text}"
        text = (f"loss {result.first:.4g} -> {result.last:.4g} ({progress}){_acc_text(result.accuracy)} "
                f"on {what} in {result.steps} steps")
        if result.lr_scale == 1.0:
            return self.finding("pass", text, evidence=ev)
        recipe_lr = attempts[0].lr / attempts[0].lr_scale
        slower = [a for a in attempts if not a.reached]
        why = ("; " + ", ".join(f"at lr {a.lr:.2g} it had not fit after {a.steps} steps" for a in slower) if slower
               else ", the rate S2 found")
        return self.finding(
            "info", f"{text} at lr {result.lr:.2g} ({result.lr_scale:.3g}x the recipe's {recipe_lr:.2g}){why}",
            evidence=ev,
            fix=f"the model and loss work; the recipe's learning rate is {'low' if result.lr_scale > 1 else 'high'} "
                "for fitting fast: check it with `danlu lr` (T4)",
        )


def _closest(attempts: list[OverfitResult]) -> OverfitResult:
    """The attempt that came closest to fitting (the lowest finite last loss; all share one batch),
    so a report on a failed fit states the best that was seen, not the slowest rate's numbers."""
    finite = [a for a in attempts if a.losses and math.isfinite(a.last) and a.nonfinite_step is None]
    return min(finite, key=lambda a: a.last) if finite else attempts[0]


def _acc_text(acc: float | None) -> str:
    if acc is None:
        return ""
    return f", accuracy {acc:.0%}" if acc >= 1.0 or acc < 0.99 else f", accuracy {acc:.1%}"


def _left_text(r: OverfitResult) -> str:
    left = r.fraction_left()
    return f"{left:.1%} of start" if math.isfinite(left) else "floor unknown"


@register
class OverfitBatch(_Overfit):
    """Overfit one batch: with regularisation off, the loss of a single small batch falls to about zero.

    Detects: a model, loss or optimiser that cannot fit even one batch: the output ignores
    the input, gradients do not flow, labels do not match the loss, the learning rate is
    far off, or the model lacks capacity.
    Why: practice S2, the first of the "防呆" (fool-proofing) experiments. If a network
    cannot memorise one batch, no amount of data or tuning will help; if it can, the
    pipeline from input to loss works end to end.
    How: trains a fresh model with the recipe's own training step (its optimizer, schedule
    and gradient clipping) on one fixed batch of up to `samples` training samples, with
    dropout modules in eval mode and weight decay 0, until the loss has come down to
    within `near_zero` of the way from its start to the loss's own floor (and, for
    classification, every prediction is right: 99% of them for token or pixel outputs),
    for at most `max_steps` steps, and reports how many it took. The floor is 0 for plain
    cross-entropy and MSE; losses with a built-in floor (label smoothing) are evaluated
    on confident correct predictions, along the class dimension the loss reads, to find
    theirs. A model that learns slowly is answered fairly: when the recipe's learning
    rate does not get there, it tries sqrt(`escalate`) and `escalate` times it (or that
    much lower when the loss blew up), and says which rate it needed; S3 and S5 then start
    from that rate. For outputs that are not one tensor (a VAE's tuple), the floor is
    unknown: the loss must fall by half. For class outputs it also computes the loss of the
    best prediction that ignores the input (each class's frequency in the batch, at each
    position for [B, T] targets; for regression, the recipe's loss of the best constant
    prediction): a model whose input is hidden stops there, while a slow but healthy
    sequence model (an LSTM language model on the word-frequency plateau) goes far below
    it before it reaches zero. A model with one prediction a sample that went below
    S2.blind_share of that loss at some rate but fitted at none gets one more attempt,
    S2.extend (3) times as long, at its best rate: a GRU classifier at 10x the default
    rate was 97% right after 400 steps, and fitted in 374 steps of a 1200-step attempt.
    A failed fit is reported with the best rate's numbers.
    Thresholds: pass when reached at the recipe's learning rate, info when reached only at
    another, or, for several predictions a sample (tokens, pixels), when not reached but
    the loss went below S2.blind_share (75%) of that input-blind loss (a model blind to
    its input cannot go below 100% of it) (it fits from its
    inputs, slowly; S3 and S5 then start from that rate); warn when every prediction is
    right (or, for regression, the loss covered all but S2.partial = 30% of the way) but
    the loss stays above S2.near_zero (5%) of the way, or when it went below
    S2.blind_share of the input-blind loss but did not fit even in the longer attempt
    (slow, or part of the model untrained: S8); fail when the loss does not go down at
    all, cannot move (perfect predictions give the start's loss), is NaN, or does not
    fit at any rate tried. Budget: S2.samples (32), S2.max_steps (400) per
    attempt, S2.escalate (10), S2.extend (3).
    Fix: fix the other failing checks first; then try the learning rate x10 and /10,
    remove regularisation from the loss, and give the model enough capacity.
    Cannot see: whether the model generalises (fitting one batch says nothing about
    validation); bugs that bite only on other batches, after many steps (the curve
    reader, the watcher) or with augmentation (the batch is read once); regularisation
    written into the loss or forward by hand stays on, and may keep a correct model from
    fitting.
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
    S3.blind_share (75%), S3.samples (10), S3.max_steps (400), S3.escalate (10) and
    S3.extend (3).
    Fix: if S2 passes and S3 fails, the model struggles to tell inputs apart: check the
    input reaches the output (S5), pooling that discards everything, or a tiny bottleneck.
    Cannot see: as S2: generalisation, later steps, other samples; and ten samples that
    share one target can be fitted without looking at the input (S5 tests that).
    """

    id = "S3"
    name = "overfit 10 samples"
    samples = 10
    seed = 30
