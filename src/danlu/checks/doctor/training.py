"""Short-training checks: overfit one batch (S2), overfit 10 samples (S3), input dependence (S5)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from danlu.checks.doctor.base import Check, register
from danlu.batches import batch_size_of, split, with_inputs
from danlu.report import Finding

__all__ = ["OverfitBatch", "OverfitTen", "InputDependence", "overfit"]


def _value(loss: Any) -> float:
    return float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)


def _accuracy(output: Any, target: Any) -> float | None:
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        return None
    if output.dim() < 2 or target.is_floating_point() or output.shape[0] != target.shape[0]:
        return None
    pred = output.argmax(1)
    if pred.shape != target.shape:
        return None
    keep = target != -100
    if not bool(keep.any()):
        return None
    return float((pred[keep] == target[keep]).float().mean())


def _per_sample(ctx, output: Any, target: Any) -> list[float] | None:
    """The recipe's loss of each sample alone (None when the loss does not split by sample)."""
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        return None
    if output.dim() == 0 or target.dim() == 0 or output.shape[0] != target.shape[0]:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = [_value(ctx.loss(output[i:i + 1], target[i:i + 1])) for i in range(output.shape[0])]
    except Exception:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _t_statistic(diffs: list[float]) -> float:
    """Paired t-statistic of the mean difference (inf when every difference is equal and positive)."""
    n = len(diffs)
    if n == 0:
        return 0.0
    mean = sum(diffs) / n
    if n == 1:
        return math.inf if mean > 0 else (0.0 if mean == 0 else -math.inf)
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    if var == 0:
        return math.inf if mean > 0 else (0.0 if mean == 0 else -math.inf)
    return mean / math.sqrt(var / n)


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
                values = [_value(ctx.loss(hot * margin, target)) for margin in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
            elif output.numel() == target.numel():
                values = [_value(ctx.loss(target.reshape(output.shape).to(output.dtype), target))]
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
    """Train a fresh model on one fixed batch until its loss is near zero (and accuracy 100%)."""
    model = ctx.new_model().train()
    optimizer = ctx.optimizer(model)
    regularisation_off(model, optimizer)
    batch = ctx.batch(samples, seed=seed)
    result = OverfitResult(samples=batch_size_of(batch))
    for step in range(max_steps + 1):
        output, target = ctx.forward(model, batch)
        loss = ctx.loss(output, target)
        value = _value(loss)
        if not math.isfinite(value):
            result.nonfinite_step = step
            break
        result.losses.append(value)
        result.accuracy = _accuracy(output.detach(), target) if ctx.classification else None
        if step == 0:
            result.floor = min(loss_floor(ctx, output.detach(), target), value)
        target_loss = result.floor + near_zero * (result.losses[0] - result.floor)
        if value <= target_loss and (result.accuracy is None or result.accuracy >= 1.0):
            result.reached = True
            result.steps = step
            break
        if step == max_steps:
            result.steps = step
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
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


@dataclass
class _Comparison:
    """Real-input vs zero-input models on held-out samples."""

    loss_real: float
    loss_zero: float
    t: float
    better: bool
    pairs: int
    samples: int
    sensitivity: float           # largest output change of the real model when its input is zeroed
    acc_real: float | None = None
    acc_zero: float | None = None

    @property
    def gain(self) -> float:
        return (self.loss_zero - self.loss_real) / abs(self.loss_zero) if self.loss_zero else 0.0


@register
class InputDependence(Check):
    """Input dependence: trained on real inputs, the model beats the same model trained on zeros.

    Detects: a model that ignores its input (a forward that never uses x, an input
    overwritten or detached), and labels that do not belong to their inputs (features and
    labels shuffled separately, a misaligned join), which no model can learn.
    Why: practice S5 (Karpathy's input-independent baseline; "feed labels into the net").
    A pipeline that learns only the label prior still shows a falling training loss, so the
    bug hides behind a plausible curve.
    How: trains two copies of the fresh model on the same shuffled training batches, one
    on the real inputs and one with the inputs zeroed, then compares their losses on up to
    `eval_samples` validation samples (each on its own kind of input), sample by sample,
    with a paired t-statistic. It evaluates after `steps` steps and, while the real-input
    model is not clearly better, again after twice as many, up to `max_steps` (slow
    learners get more time; a clear pass stops early). Reports accuracies for
    classification.
    Thresholds: pass when the real-input model is better with t >= S5.min_t (3: clearly,
    not by chance); warn when it is better but not clearly; fail when it is not better.
    Budget: S5.steps (100), S5.max_steps (400), S5.eval_samples (512).
    Fix: make forward use its input; check that inputs and labels are read with the same
    index (shuffle them together, join on an id); if the data are just hard, raise
    S5.max_steps.
    """

    id = "S5"
    name = "input dependence"
    stage = "train"
    settings = ("steps", "max_steps", "min_t", "eval_samples")
    steps = 100
    max_steps = 400
    min_t = 3.0
    eval_samples = 512

    def run(self, ctx) -> Finding:
        split(ctx.batch(2))  # needs (input, target) batches with a tensor input
        real, zero = ctx.new_model().train(), ctx.new_model().train()
        opt_real, opt_zero = ctx.optimizer(real), ctx.optimizer(zero)
        stream = ctx.stream(seed=5)
        train = {"real": math.nan, "zero": math.nan}
        done, target_steps = 0, max(1, min(self.steps, self.max_steps))
        while True:
            for _ in range(target_steps - done):
                batch = next(stream)
                x, _ = split(batch)
                for key, model, opt, b in (("real", real, opt_real, batch),
                                           ("zero", zero, opt_zero, with_inputs(batch, torch.zeros_like(x)))):
                    model.train()
                    output, target = ctx.forward(model, b)
                    loss = ctx.loss(output, target)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    train[key] = _value(loss)
            done = target_steps
            if not (math.isfinite(train["real"]) and math.isfinite(train["zero"])):
                return self.finding("fail", f"the loss became NaN/Inf within {done} steps", evidence={},
                                    cause="training diverged or an operation produced NaN/Inf", fix="see S9")
            cmp = self._compare(ctx, real, zero)
            if (cmp.better and cmp.t >= self.min_t) or done >= self.max_steps:
                break
            target_steps = min(2 * done, self.max_steps)
        return self._finding(cmp, done, train)

    def _compare(self, ctx, real: nn.Module, zero: nn.Module) -> _Comparison:
        split_name = "val" if ctx.length("val") > 0 else "train"
        n_eval = min(self.eval_samples, ctx.length(split_name))
        size = max(1, min(ctx.batch_size, n_eval))
        indices = ctx.indices(split_name, n_eval, seed=55)
        real.eval()
        zero.eval()
        totals = {"real": 0.0, "zero": 0.0}
        correct = {"real": 0.0, "zero": 0.0}
        diffs: list[float] = []   # per held-out sample: zero-input loss - real-input loss
        counted, sensitivity, with_acc = 0, 0.0, ctx.classification
        with torch.no_grad():
            for start in range(0, n_eval, size):
                batch = ctx.collated(split_name, indices[start:start + size])
                x, _ = split(batch)
                zb = with_inputs(batch, torch.zeros_like(x))
                out_r, tgt = ctx.forward(real, batch)
                out_z, tgt_z = ctx.forward(zero, zb)
                out_rz, _ = ctx.forward(real, zb)
                n = batch_size_of(batch)
                loss_r, loss_z = _value(ctx.loss(out_r, tgt)), _value(ctx.loss(out_z, tgt_z))
                totals["real"] += loss_r * n
                totals["zero"] += loss_z * n
                per_r, per_z = _per_sample(ctx, out_r, tgt), _per_sample(ctx, out_z, tgt_z)
                if per_r is not None and per_z is not None:
                    diffs.extend(z - r for r, z in zip(per_r, per_z))
                else:  # a loss that does not split by sample: one pair per batch
                    diffs.append(loss_z - loss_r)
                if isinstance(out_r, torch.Tensor) and isinstance(out_rz, torch.Tensor):
                    sensitivity = max(sensitivity, float((out_r.float() - out_rz.float()).abs().max()))
                if with_acc:
                    acc_r, acc_z = _accuracy(out_r, tgt), _accuracy(out_z, tgt_z)
                    if acc_r is None or acc_z is None:
                        with_acc = False
                    else:
                        correct["real"] += acc_r * n
                        correct["zero"] += acc_z * n
                counted += n
        return _Comparison(
            loss_real=totals["real"] / counted, loss_zero=totals["zero"] / counted, t=_t_statistic(diffs),
            better=sum(diffs) > 0, pairs=len(diffs), samples=counted, sensitivity=sensitivity,
            acc_real=correct["real"] / counted if with_acc else None,
            acc_zero=correct["zero"] / counted if with_acc else None,
        )

    def _finding(self, cmp: _Comparison, steps: int, train: dict[str, float]) -> Finding:
        ev: dict[str, Any] = {
            "steps": steps, "eval_samples": cmp.samples, "loss_real": cmp.loss_real, "loss_zero": cmp.loss_zero,
            "gain": cmp.gain, "t": cmp.t, "pairs": cmp.pairs, "train_loss_real": train["real"],
            "train_loss_zero": train["zero"], "output_change_when_zeroed": cmp.sensitivity,
            "acc_real": cmp.acc_real, "acc_zero": cmp.acc_zero,
        }
        text = f"held-out loss {cmp.loss_real:.4g} with real inputs vs {cmp.loss_zero:.4g} with zeroed inputs " \
               f"({cmp.gain:+.0%}" + (f", t = {cmp.t:.3g})" if math.isfinite(cmp.t) else ")")
        if cmp.acc_real is not None:
            text += f", accuracy {cmp.acc_real:.0%} vs {cmp.acc_zero:.0%}"
        text += f" after {steps} steps"
        if cmp.better and cmp.t >= self.min_t:
            return self.finding("pass", text, evidence=ev)
        if cmp.sensitivity == 0.0:
            cause = ("the trained model's output does not change at all when its input is zeroed: forward "
                     "ignores the input (unused, overwritten or detached x)")
            fix = "make forward compute from its input; check the variable names in forward"
        elif train["real"] < train["zero"] * 0.9:
            cause = ("the real-input model fits its training batches better than the zero-input one but does "
                     "no better on held-out data: the labels do not belong to the inputs (shuffled "
                     "separately, misaligned), or it only memorises")
            fix = ("read inputs and labels with the same index (shuffle them together); check any join or "
                   "sort in data()")
        else:
            cause = ("the inputs carry no information the model uses: labels not aligned with inputs, "
                     "inputs destroyed by preprocessing, or a learning rate too low to learn in "
                     f"{steps} steps")
            fix = ("check that inputs and labels match (look at samples, D3); check preprocessing; if the task "
                   "is just hard, raise S5.max_steps")
        if cmp.better:
            return self.finding("warn", text, evidence=ev, fix=fix,
                                cause=f"better, but not clearly (t < {self.min_t:g}): " + cause)
        return self.finding("fail", text, evidence=ev, cause=cause, fix=fix)
