"""S5: trained on real inputs, the model beats the same model trained on zeroed inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from danlu.batches import batch_size_of, leaves
from danlu.checks.base import Check, register
from danlu.checks.doctor.measure import accuracy, per_sample_losses, scalar, split, with_inputs
from danlu.report import Finding

__all__ = ["InputDependence"]


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
    majority: float | None = None  # share of the held-out samples in their most common class

    @property
    def gain(self) -> float:
        return (self.loss_zero - self.loss_real) / abs(self.loss_zero) if self.loss_zero else 0.0


@dataclass
class _Attempt:
    """One side-by-side training of the two models at one learning rate."""

    cmp: _Comparison
    steps: int
    train: dict[str, float]     # last training losses ("real", "zero") and the first ("real_first", "zero_first")
    lr: float
    lr_scale: float


def _stable(attempt: _Attempt) -> bool:
    """Both models learned at this rate: their training losses fell, and the zero-input model ends on
    held-out data no worse than it began (the label prior it learned is worth something)."""
    t = attempt.train
    return (t["real"] < t["real_first"] and t["zero"] < t["zero_first"]
            and attempt.cmp.loss_zero <= t["zero_first"])


#: A zero-input model whose held-out loss ends below this share of its first training loss, while the
#: real inputs did not clearly help, learned the answers without inputs: the target reaches it another
#: way (not a label prior: 99:1 classes still leave 8% of a cross-entropy's start). So does one with
#: 99% held-out accuracy where the largest class is under 90%.
LEAK_SHARE = 0.05


@register
class InputDependence(Check):
    """Input dependence: trained on real inputs, the model beats the same model trained on zeros.

    Detects: a model that ignores its input (a forward that never uses x, an input
    overwritten or detached), and labels that do not belong to their inputs (features and
    labels shuffled separately, a misaligned join), which no model can learn.
    Why: practice S5 (Karpathy's input-independent baseline; "feed labels into the net").
    A pipeline that learns only the label prior still shows a falling training loss, so the
    bug hides behind a plausible curve.
    How: trains two copies of the fresh model with the recipe's training step on the same
    shuffled training batches (at the learning rate S2 needed to fit a batch), one on the
    real inputs and one with the inputs zeroed (the first item of a tuple batch; in a dict
    batch the entry named input_ids, pixel_values, x, ...) but scored against the real batch's
    targets (an autoencoder's target is its input, and must not be zeroed with it), then
    compares their losses on up to
    `eval_samples` validation samples (each on its own kind of input), sample by sample,
    with a paired t-statistic. It evaluates after `steps` steps and, while the real-input
    model is not clearly better, again after twice as many, up to `max_steps` (slow
    learners get more time; a clear pass stops early). When after `max_steps` neither model
    has learned anything from the inputs (their training losses within 10% of each other,
    the output does react to the input), it tries again at sqrt(`escalate`) and `escalate`
    times the rate, as S2 does, for up to twice `max_steps`: a healthy recurrent model can
    sit on the label-frequency plateau for hundreds of steps, and where it leaves it
    varies. Reports accuracies for classification.
    Thresholds: pass when the real-input model is better by at least S5.min_gain (1%) of
    the zero-input loss with t >= S5.min_t (3: clearly, not by chance); info when that
    took a higher rate than the one S2 found; warn when it is better but not clearly
    (1 <= t < 3, or a gain under 1%); fail when it is not better (t < 1: chance gives a
    positive t half the time) at any rate tried. Budget: S5.steps (100), S5.max_steps
    (400; 800 at a higher rate), S5.eval_samples (512), S5.escalate (10).
    Fix: make forward use its input; check that inputs and labels are read with the same
    index (shuffle them together, join on an id); if the data are just hard, raise
    S5.max_steps.
    A target that reaches the forward pass (handed to the model, a decoder that sees the
    token it predicts) fails with that cause: the zero-input model still reaches 99%
    held-out accuracy (largest class under 90%), or its held-out loss falls below
    LEAK_SHARE (5%) of its start while the inputs do not clearly help.
    Cannot see: labels that are only partly shuffled or partly wrong (still learnable:
    C2's suspicious labels look for them); a label leaked into the input itself (the model
    then depends on it, and passes; D5 looks for leaks between splits); a target leak in a
    model that gives only its loss when the inputs still help a little (Lightning's
    Transformer demo at 1.3M parameters fails, a 30k-parameter copy passes); tasks where the label
    prior is nearly optimal, which warn "not clearly" rather than pass.
    """

    id = "S5"
    name = "input dependence"
    stage = "train"
    settings = ("steps", "max_steps", "min_t", "min_gain", "eval_samples", "escalate")
    steps = 100
    max_steps = 400
    min_t = 3.0
    min_gain = 0.01
    eval_samples = 512
    escalate = 10.0

    def run(self, ctx) -> Finding:
        split(ctx.batch(2))  # needs (input, target) batches with a tensor input
        attempt = self._attempt(ctx, ctx.lr_scale, self.max_steps)
        if isinstance(attempt, Finding):
            return attempt
        attempts = [attempt]
        for factor in (math.sqrt(self.escalate), self.escalate) if self.escalate > 1 else ():
            if self._clear(attempts[-1].cmp) or not self._slow(attempts[-1]):
                break
            # a slow learner is answered fairly: a higher rate (as in S2) and more time, since where its
            # plateau ends varies from run to run; a clear result still stops it early
            again = self._attempt(ctx, ctx.lr_scale * factor, 2 * self.max_steps)
            if isinstance(again, Finding) or not _stable(again):
                break       # too high: a comparison of two models that blew up says nothing
            attempts.append(again)
        # a higher rate counts only when it is clearly better; else the rate S2 found speaks (picking the
        # largest of several noisy gains would turn "not better" into "better, not clearly")
        chosen = next((a for a in attempts if self._clear(a.cmp)), attempts[0])
        return self._finding(chosen, attempts)

    def _attempt(self, ctx, lr_scale: float, max_steps: int) -> _Attempt | Finding:
        """Train the real-input and zero-input models side by side at `lr_scale` times the recipe's rate,
        for up to `max_steps` steps."""
        real, zero = ctx.new_model().train(), ctx.new_model().train()
        step_real, step_zero = ctx.train_step(real, max_steps), ctx.train_step(zero, max_steps)
        for step in (step_real, step_zero):
            step.scale_lr(lr_scale)
        scored = _RealTarget(ctx.recipe)
        step_zero.recipe = scored      # type: ignore[assignment]  # the zero-input model learns the real targets
        lr = step_real.lr        # before the schedule moves it
        stream = ctx.stream(seed=5)
        train = {"real": math.nan, "zero": math.nan}
        done, target_steps = 0, max(1, min(self.steps, max_steps))
        while True:
            for _ in range(target_steps - done):
                batch = next(stream)
                x, _ = split(batch)
                for key, model, step, b in (("real", real, step_real, batch),
                                            ("zero", zero, step_zero, with_inputs(batch, torch.zeros_like(x)))):
                    model.train()
                    out = step(b)
                    scored.target = out.target if key == "real" else None
                    train[key] = scalar(out.loss)
                    train.setdefault(f"{key}_first", train[key])
            done = target_steps
            if not (math.isfinite(train["real"]) and math.isfinite(train["zero"])):
                return self.finding("fail", f"the loss became NaN/Inf within {done} steps", evidence={},
                                    cause="training diverged or an operation produced NaN/Inf", fix="see S9")
            cmp = self._compare(ctx, real, zero)
            if self._clear(cmp) or done >= max_steps:
                break
            target_steps = min(2 * done, max_steps)
        return _Attempt(cmp, done, train, lr, lr_scale)

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
        labels: list[int] = []
        counted, sensitivity, with_acc = 0, 0.0, ctx.classification
        with torch.no_grad():
            for start in range(0, n_eval, size):
                batch = ctx.collated(split_name, indices[start:start + size])
                x, _ = split(batch)
                zb = with_inputs(batch, torch.zeros_like(x))
                out_r, tgt = ctx.forward(real, batch)
                out_z, _ = ctx.forward(zero, zb)
                tgt_z = tgt       # scored against the real batch's target, which may be made from its input
                out_rz, _ = ctx.forward(real, zb)
                n = batch_size_of(batch)
                loss_r, loss_z = scalar(ctx.loss(out_r, tgt)), scalar(ctx.loss(out_z, tgt_z))
                totals["real"] += loss_r * n
                totals["zero"] += loss_z * n
                per_r, per_z = per_sample_losses(ctx, out_r, tgt), per_sample_losses(ctx, out_z, tgt_z)
                if per_r is not None and per_z is not None:
                    diffs.extend(z - r for r, z in zip(per_r, per_z))
                else:  # a loss that does not split by sample: one pair per batch
                    diffs.append(loss_z - loss_r)
                sensitivity = max(sensitivity, _largest_change(out_r, out_rz))
                if with_acc:
                    acc_r, acc_z = accuracy(out_r, tgt), accuracy(out_z, tgt_z)
                    if acc_r is None or acc_z is None:
                        with_acc = False
                    else:
                        correct["real"] += acc_r * n
                        correct["zero"] += acc_z * n
                        if isinstance(tgt, torch.Tensor) and not tgt.is_floating_point():
                            labels.extend(tgt.reshape(-1).tolist())
                counted += n
        return _Comparison(
            loss_real=totals["real"] / counted, loss_zero=totals["zero"] / counted, t=_t_statistic(diffs),
            better=sum(diffs) > 0, pairs=len(diffs), samples=counted, sensitivity=sensitivity,
            acc_real=correct["real"] / counted if with_acc else None,
            acc_zero=correct["zero"] / counted if with_acc else None,
            majority=max(labels.count(c) for c in set(labels)) / len(labels) if labels else None,
        )

    def _clear(self, cmp: _Comparison) -> bool:
        """Clearly better: by more than chance (t) and by a margin worth the name (gain)."""
        return cmp.better and cmp.t >= self.min_t and cmp.gain >= self.min_gain

    def _slow(self, attempt: _Attempt) -> bool:
        """Nothing learned from the inputs yet, though they reach the output: both models still at what
        needs no input, in training too (not the memorising of misaligned labels, not a leak)."""
        cmp, train = attempt.cmp, attempt.train
        return (cmp.sensitivity > 0 and not train["real"] < train["zero"] * 0.9
                and not self._leak(cmp, train))

    def _leak(self, cmp: _Comparison, train: dict[str, float]) -> bool:
        first = train.get("zero_first", math.nan)
        perfect_blind = (cmp.acc_zero is not None and cmp.majority is not None and cmp.acc_zero >= 0.99
                         and cmp.majority < 0.9)
        # the loss rule only where the inputs did not clearly help: learning a regression target's mean
        # alone also takes a loss far below its start
        fell = math.isfinite(first) and first > 0 and cmp.loss_zero < LEAK_SHARE * first and not self._clear(cmp)
        return perfect_blind or fell

    def _finding(self, attempt: _Attempt, attempts: list[_Attempt]) -> Finding:
        cmp, steps, train = attempt.cmp, attempt.steps, attempt.train
        ev: dict[str, Any] = {
            "steps": steps, "eval_samples": cmp.samples, "loss_real": cmp.loss_real, "loss_zero": cmp.loss_zero,
            "gain": cmp.gain, "t": cmp.t, "pairs": cmp.pairs, "train_loss_real": train["real"],
            "train_loss_zero": train["zero"], "output_change_when_zeroed": cmp.sensitivity,
            "acc_real": cmp.acc_real, "acc_zero": cmp.acc_zero, "lr": attempt.lr,
            "attempts": [{"lr": a.lr, "steps": a.steps, "gain": a.cmp.gain, "t": a.cmp.t} for a in attempts],
        }
        gain = f"{cmp.gain:+.1%}" if abs(cmp.gain) < 0.1 else f"{cmp.gain:+.0%}"
        text = f"held-out loss {cmp.loss_real:.4g} with real inputs vs {cmp.loss_zero:.4g} with zeroed inputs " \
               f"({gain}" + (f", t = {cmp.t:.3g})" if math.isfinite(cmp.t) else ")")
        if cmp.acc_real is not None:
            text += f", accuracy {cmp.acc_real:.0%} vs {cmp.acc_zero:.0%}"
        text += f" after {steps} steps"
        if len(attempts) > 1:
            text += f" at lr {attempt.lr:.2g} (rates tried: {', '.join(f'{a.lr:.2g}' for a in attempts)})"
        first = train.get("zero_first", math.nan)
        perfect_blind = (cmp.acc_zero is not None and cmp.majority is not None and cmp.acc_zero >= 0.99
                         and cmp.majority < 0.9)
        if self._leak(cmp, train):
            ev["zero_input_first_train_loss"] = first
            how = (f"held-out accuracy {cmp.acc_zero:.0%} (the largest class is {cmp.majority:.0%})"
                   if perfect_blind else f"held-out loss {first:.4g} -> {cmp.loss_zero:.4g}")
            cause = (f"with its inputs zeroed the model still reached {how}: it gets the answer another way. The "
                     "target reaches the forward pass (passed to the model, teacher forcing on the unshifted "
                     "target, a decoder whose mask lets position t see token t), so the inputs are not needed")
            fix = ("feed the model only what it may see at prediction time: shift decoder inputs right by one "
                   "(or mask the diagonal), and never pass the target to forward")
            return self.finding("fail", text, evidence=ev, cause=cause, fix=fix)
        if self._clear(cmp) and cmp.sensitivity > 0:
            if attempt is attempts[0]:
                return self.finding("pass", text, evidence=ev)
            return self.finding(
                "info", text, evidence=ev,
                cause=(f"the inputs help, but at lr {attempts[0].lr:.2g} nothing was learned from them within "
                       f"{attempts[0].steps} steps: a slow learner at the recipe's rate"),
                fix="find a faster rate with `danlu lr` (T4), or expect a long plateau at the start of training",
            )
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
                     f"{steps} steps" + (" (higher ones were tried too)" if len(attempts) > 1 else ""))
            fix = ("check that inputs and labels match (look at samples, D3); check preprocessing; if the task "
                   "is just hard, raise S5.max_steps")
        # better by some evidence (t >= 1), from an output that reacts to its input; a t under 1 is what
        # chance gives half the time when the labels do not belong to the inputs
        if cmp.better and cmp.t >= 1.0 and cmp.sensitivity > 0:
            why = (f"t < {self.min_t:g}" if cmp.t < self.min_t else f"by less than {self.min_gain:.0%} of the loss")
            return self.finding("warn", text, evidence=ev, fix=fix, cause=f"better, but not clearly ({why}): " + cause)
        return self.finding("fail", text, evidence=ev, cause=cause, fix=fix)


class _RealTarget:
    """The recipe, with forward's target replaced by the real batch's, for the zero-input model.

    A target made from the input (an autoencoder's reconstruction target, a language model's
    shifted input) would be zeroed with it, and the blind model would learn to predict zeros:
    a baseline no model can lose to. Scored against the real target, it learns what the
    labels alone tell. Where the target does not depend on the input, nothing changes.
    """

    def __init__(self, recipe: Any) -> None:
        self.recipe = recipe
        self.target: Any = None     # the real batch's target, set before each zero-input step

    def forward(self, model: nn.Module, batch: Any) -> tuple[Any, Any]:
        output, target = self.recipe.forward(model, batch)
        return output, (target if self.target is None else self.target)

    def loss(self, output: Any, target: Any) -> torch.Tensor:
        return self.recipe.loss(output, target)


def _largest_change(a: Any, b: Any) -> float:
    """The largest absolute difference between two outputs, over all their floating-point tensors
    (a VAE's (reconstruction, mu, logvar) too)."""
    largest = 0.0
    for x, y in zip(leaves(a), leaves(b)):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape and x.is_floating_point():
            largest = max(largest, float((x.float() - y.float()).abs().max()))
    return largest
