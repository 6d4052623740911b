"""S9: NaN/Inf in a short training, and where it came from (phase, module, operation, line, rows)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from danlu.batches import batch_size_of
from danlu.checks.base import Check, register
from danlu.report import Finding
from danlu.tracing import Origin, trace_nonfinite

__all__ = ["NonFinite", "localise_step", "nonfinite_finding"]


def _grads_finite(model: torch.nn.Module) -> tuple[bool, list[str]]:
    bad = [name for name, p in model.named_parameters()
           if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    return not bad, bad


def localise_step(ctx, model: torch.nn.Module, batch: Any, rng_state: torch.Tensor | None = None) -> Origin:
    """Replay recipe.forward + recipe.loss + backward on a copy of ``model`` under the tracer."""
    replay = copy.deepcopy(model)
    replay.zero_grad(set_to_none=True)
    if rng_state is not None:
        torch.set_rng_state(rng_state)

    def forward():
        output, target = ctx.forward(replay, batch)
        return ctx.loss(output, target)

    # The replay needs gradients to find where a NaN enters the backward pass; it does not train.
    return trace_nonfinite(replay, forward, lambda root: root.backward(), batch_size_of(batch), batch)


def nonfinite_finding(check: Check, origin: Origin, step: int, what: str, evidence: dict) -> Finding:
    """The S9 finding for a located NaN/Inf, with a cause and fix fitted to the phase and op."""
    evidence = dict(evidence, phase=origin.phase, op=origin.op, module=origin.module, where=origin.where,
                    samples=origin.samples[:20], value=origin.value, step=step)
    op = origin.op.lower()
    if origin.phase == "data":
        cause = "the training data contain NaN/Inf (D6)"
        fix = "drop or repair those samples in data() (S13 lists them)"
    elif origin.phase == "backward":
        cause = ("the forward values are finite but a derivative is not: sqrt or pow at 0, norm of a zero "
                 "vector, acos/asin at +-1, or log/division near 0 in the backward formula")
        fix = "add a small epsilon inside the operation (torch.sqrt(x + 1e-12), x.norm() + eps) or clamp its input"
    elif any(k in op for k in ("log", "div", "sqrt", "pow", "rsqrt", "reciprocal", "acos", "asin")):
        cause = f"{origin.op} got an input outside its domain (log of <= 0, division by 0, sqrt of < 0)"
        fix = ("clamp the input (x.clamp_min(1e-12)) or add an epsilon; prefer stable fused ops "
               "(log_softmax, cross_entropy, BCE-with-logits, logsumexp)")
    elif step > 0:
        cause = f"values overflowed after {step} steps: the weights diverged (learning rate too high?)"
        fix = "lower the learning rate (T4: /10), add gradient clipping (grad_clip), or normalise the inputs (D4)"
    else:
        cause = f"{origin.op or 'an operation'} overflowed (exp of a large value, huge activations)"
        fix = "normalise the inputs (D4) and use numerically stable ops (logsumexp, log_softmax)"
    if origin.phase == "not reproduced":
        return check.finding(
            "fail", f"{what} at step {step}, but replaying the step gave finite values", evidence=evidence,
            cause="the NaN depends on randomness not captured (dropout masks, data augmentation) or on state "
                  "changed by the step",
            fix="run with torch.autograd.set_detect_anomaly(True) around that step to see the operation",
        )
    return check.finding("fail", f"{what} at step {step}: {origin.describe()}", evidence=evidence,
                         cause=cause, fix=fix)


@register
class NonFinite(Check):
    """NaN/Inf: the loss and gradients stay finite; when not, where the first NaN/Inf came from.

    Detects: a non-finite loss or gradient in the first training steps, and localises it:
    the phase (data, forward, loss, backward), the first module and operation that
    produced it (torch.log of a negative number, division by zero, sqrt at 0 in the
    backward pass), the line in your code, and the batch rows involved.
    Why: practice S9. "Loss is NaN" is the most common training crash and the hardest to
    trace; knowing whether it came from the forward or the backward pass, and where,
    turns hours of printf debugging into one fix.
    How: trains a fresh model with the recipe's training step on `steps` batches, checking
    after each backward that the loss and all gradients are finite (before the optimizer
    step, so the weights are still those that produced the NaN). On the first failure it
    replays that step on a copy of the model, with the same batch and RNG state, under a
    TorchFunctionMode tracer and module hooks: the forward origin is the first op whose
    result is non-finite while its inputs are finite; the backward origin is the first
    autograd node whose incoming gradient is finite and outgoing gradient is not.
    Thresholds: any NaN/Inf in the loss or a gradient fails. Budget: S9.steps (20).
    Fix: clamp or add an epsilon where the check points (log, division, sqrt, norm);
    prefer fused stable ops (cross_entropy, log_softmax, BCE-with-logits); lower the
    learning rate when values diverge after several steps.
    Cannot see: NaN/Inf that appear only after S9.steps steps, on other batches, only in
    validation, or only on a GPU in reduced precision when the check runs elsewhere.
    """

    id = "S9"
    name = "NaN/Inf"
    stage = "step"
    settings = ("steps",)
    steps = 20

    def run(self, ctx) -> Finding:
        model = ctx.new_model().train()
        train_step = ctx.train_step(model, self.steps)
        stream = ctx.stream(seed=9)
        losses: list[float] = []
        for step in range(self.steps):
            batch = next(stream)
            rng = torch.get_rng_state()
            out = train_step.forward_backward(batch)
            value = float(out.loss.float().mean())
            grads_ok, bad_params = (True, []) if not math.isfinite(value) else _grads_finite(model)
            if not math.isfinite(value) or not grads_ok:
                what = (f"the loss is {value}" if not math.isfinite(value)
                        else f"gradients of {', '.join(bad_params[:3])} are non-finite (loss {value:.4g})")
                origin = localise_step(ctx, model, batch, rng)
                return nonfinite_finding(self, origin, step, what,
                                         {"losses": losses, "bad_params": bad_params[:10]})
            losses.append(value)
            train_step.update()
        return self.finding(
            "pass", f"loss and gradients finite over {self.steps} steps "
                    f"(loss {losses[0]:.4g} -> {losses[-1]:.4g})",
            evidence={"losses": losses},
        )
