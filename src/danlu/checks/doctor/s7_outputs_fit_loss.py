"""S7: the model outputs fit the loss (no softmax before a loss that expects logits, shapes, reduction)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from danlu.checks.base import Check, register
from danlu.checks.doctor.measure import close, couples_samples, scalar, tensor_output
from danlu.outputs import class_layout
from danlu.report import Finding

__all__ = ["OutputsFitLoss"]


@register
class OutputsFitLoss(Check):
    """Outputs fit the loss: logits for logit losses, matching shapes, a mean over the batch.

    Detects: probabilities fed to a loss that expects logits (softmax before
    cross_entropy, sigmoid before BCE-with-logits), probabilities fed to nll_loss,
    ReLU-clipped logits, output/target shapes that broadcast silently ([B,1] against [B]
    in MSE gives a [B,B] loss), a loss that is summed over the batch, and a loss that is
    not a scalar.
    Why: practice S7. These bugs do not crash: the model trains, slowly or to a worse
    optimum (softmax + cross-entropy squashes gradients; a broadcast MSE regresses every
    output to the batch mean; a summed loss ties the learning rate to the batch size).
    How: runs the fresh model in eval mode on a batch; tests whether the outputs are
    probabilities (in [0, 1], summing to 1 over dim 1) or sigmoids, and whether the
    recipe's loss equals cross_entropy / nll_loss / BCE-with-logits applied to them;
    compares the loss with the loss on the output reshaped to the target's shape; for
    outputs with more values than the target (a regression head), asks whether sample 0's
    gradient moves when only the other samples' targets change (a loss that broadcasts
    [B,1] against [B] inside does; a mean-and-variance head's own NLL does not, and passes);
    and compares the batch loss with the mean of per-sample losses (a ratio equal to the
    batch size means a sum).
    Thresholds: losses are "equal" within a relative 1e-4; a sum is a batch/per-sample
    ratio within 10% of the batch size (batch >= 4); ReLU-clipping warns when outputs are
    never negative and over S7.zero_fraction (0.25) of them are exactly zero. Budget:
    S7.samples (32).
    Fix: return raw logits from the model and let the loss apply (log-)softmax/sigmoid;
    make the output shape equal the target's (output.squeeze(-1) or target.unsqueeze(-1));
    average the loss over the batch (reduction="mean").
    Cannot see: a hand-written loss that is numerically well formed but means the wrong
    thing (wrong class weights, the wrong target encoding that still runs); a custom
    loss that reads classes from another dimension than it should; the amount of label
    smoothing.
    """

    id = "S7"
    name = "outputs fit the loss"
    stage = "step"
    settings = ("zero_fraction", "samples")
    zero_fraction = 0.25
    samples = 32

    def run(self, ctx) -> Finding:
        ctx.needs_output("comparing the output shape with the target")
        classification = ctx.classification
        model = ctx.new_model().eval()
        batch = ctx.batch(max(4, min(self.samples, ctx.length("train"))), seed=7)
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            output, target = ctx.forward(model, batch)
            output = tensor_output(output)
            loss_t = ctx.loss(output, target)
        problems: list[tuple[str, str, str, str]] = []
        ev: dict[str, Any] = {"output_shape": list(output.shape)}
        if caught:
            ev["warnings"] = sorted({str(w.message) for w in caught})[:5]
        if isinstance(target, torch.Tensor):
            ev["target_shape"] = list(target.shape)
        if isinstance(loss_t, torch.Tensor) and loss_t.numel() != 1:
            problems.append((
                "fail", f"the loss is a tensor of shape {list(loss_t.shape)}, not a scalar",
                "the loss uses reduction='none' without a final mean; backward() needs a scalar",
                "end the loss with .mean() (or use reduction='mean')",
            ))
            loss_t = loss_t.mean()
        loss = scalar(loss_t)
        ev["loss"] = loss
        out = output.detach().float()
        with torch.no_grad():
            class_indices = isinstance(target, torch.Tensor) and not target.is_floating_point()
            layout = class_layout(out, target, ctx.loss) if classification and class_indices else None
            if layout is not None:
                self._classification(ctx, layout, out, target, loss, problems, ev)
            elif isinstance(target, torch.Tensor) and target.is_floating_point():
                self._sigmoid(out, target, loss, problems, ev)
            if isinstance(target, torch.Tensor) and not classification:
                self._shapes(ctx, output, target, loss, problems, ev)
            self._reduction(ctx, output, target, loss, problems, ev)

        status = "fail" if any(p[0] == "fail" for p in problems) else ("warn" if problems else "pass")
        if status == "pass":
            kind = ev.get("output_kind", "outputs")
            text = f"{kind} {ev['output_shape']} vs target {ev.get('target_shape', '?')}; loss {loss:.4g}"
            if "per_sample_ratio" in ev:
                text += f"; batch loss / mean per-sample loss = {ev['per_sample_ratio']:.3g} (a mean)"
            return self.finding("pass", text, evidence=ev)
        return self.finding(status, "; ".join(p[1] for p in problems), evidence=ev,
                            cause=" ".join(p[2] for p in problems), fix=" ".join(p[3] for p in problems))

    def _classification(self, ctx, layout, out, target, loss, problems, ev) -> None:
        num = layout.classes
        rows = layout.logits_last(out).T
        is_prob = bool(((out >= -1e-6) & (out <= 1 + 1e-6)).all()) and bool(((rows.sum(0) - 1).abs() < 1e-3).all())
        is_logprob = bool((out <= 1e-6).all()) and bool((rows.logsumexp(0).abs() < 1e-3).all())
        ev["output_kind"] = "probabilities" if is_prob else ("log-probabilities" if is_logprob else "logits")
        ev["classes"] = num
        tgt = target.long().reshape(-1)
        if is_prob and num > 1:
            try:
                ce = float(F.cross_entropy(rows.T, tgt))
                nll = float(F.nll_loss(rows.T, tgt))
            except Exception:
                return
            if close(loss, ce):
                problems.append((
                    "fail", "the model outputs probabilities (softmax) and the loss applies cross_entropy to them",
                    "cross_entropy applies log_softmax itself; softmax before it squashes the logits into [0, 1], "
                    "so the loss cannot go below ~ln(C+e-1)-1 and gradients vanish",
                    "remove the final softmax from the model (return logits); apply softmax only for predictions",
                ))
            elif close(loss, nll):
                problems.append((
                    "fail", "nll_loss is applied to probabilities, not log-probabilities",
                    "nll_loss expects log-probabilities; on probabilities it returns -p[y], which is negative and "
                    "has the wrong gradient",
                    "use log_softmax instead of softmax in the model, or return logits and use cross_entropy",
                ))
        if num == 1 and abs(loss) < 1e-7:
            problems.append((
                "fail", "one output with cross-entropy: the loss is always 0",
                "softmax over a single class is 1 whatever the input, so nothing is learned",
                "give the model 2 outputs for binary classification, or use float targets with BCE-with-logits",
            ))
        if not is_prob and not is_logprob and out.numel() >= 8:
            zeros = float((out == 0).float().mean())
            ev["output_zero_fraction"] = zeros
            varied = bool((out > 0).any()) and bool((out != out[:1]).any())  # not a zero/constant init
            if varied and bool((out >= 0).all()) and zeros > self.zero_fraction:
                problems.append((
                    "warn", f"the logits are never negative and {zeros:.0%} are exactly 0 (a ReLU on the output?)",
                    "an activation after the last layer clips the logits, so the model cannot express low scores",
                    "end the model with a plain Linear layer (no ReLU after it)",
                ))

    def _sigmoid(self, out, target, loss, problems, ev) -> None:
        if out.numel() < 4 or out.shape != target.shape:
            return
        if bool(((out > 0) & (out < 1)).all()) and bool(((target >= 0) & (target <= 1)).all()):
            try:
                bce_logits = float(F.binary_cross_entropy_with_logits(out, target.float()))
            except Exception:
                return
            ev["output_kind"] = "values in (0, 1)"
            if close(loss, bce_logits):
                problems.append((
                    "fail", "the model outputs sigmoid probabilities and the loss is BCE-with-logits",
                    "binary_cross_entropy_with_logits applies the sigmoid itself; a second sigmoid squashes "
                    "the outputs into (0.5, 0.73) and training stalls",
                    "remove the final sigmoid from the model (return logits)",
                ))

    def _shapes(self, ctx, output, target, loss, problems, ev) -> None:
        if output.shape == target.shape:
            return
        if output.numel() == target.numel():
            try:
                reshaped = scalar(ctx.loss(output.reshape(target.shape), target))
            except Exception:
                return
            ev["loss_reshaped"] = reshaped
            if not close(loss, reshaped):
                problems.append((
                    "fail",
                    f"output {list(output.shape)} and target {list(target.shape)} broadcast in the loss "
                    f"(loss {loss:.4g}, {reshaped:.4g} with matching shapes)",
                    "the loss compares every output with every target "
                    f"({list(torch.broadcast_shapes(output.shape, target.shape))} elements), so the model learns "
                    "the batch mean",
                    "make the shapes equal: output.squeeze(-1) or target.unsqueeze(-1) (or view(target.shape))",
                ))
            return
        coupled = couples_samples(ctx.loss, output, target)
        if coupled is not None:
            ev["loss_couples_samples"] = coupled
        if coupled:
            problems.append((
                "fail", f"the loss mixes samples: output {list(output.shape)} against target {list(target.shape)}, "
                "sample 0's gradient changes when only the other samples' targets do",
                "shapes broadcast inside the loss ([B,1] against [B] gives [B,B]): every output is pulled toward "
                "every target, and the model learns the batch mean",
                "make the shapes equal where the loss compares them (target.unsqueeze(-1), or output[:, 0])",
            ))
            return
        if not ctx.default_loss:   # the recipe's own loss reads several values per sample (a mean and a variance)
            return
        try:
            shape = torch.broadcast_shapes(output.shape, target.shape)
        except RuntimeError:
            return
        if shape != output.shape or shape != target.shape:
            problems.append((
                "fail", f"output {list(output.shape)} and target {list(target.shape)} broadcast to {list(shape)}",
                "the loss silently broadcasts mismatched shapes", "make the output's shape equal the target's",
            ))

    def _reduction(self, ctx, output, target, loss, problems, ev) -> None:
        size = output.shape[0] if output.dim() else 0
        if size < 4 or not isinstance(target, torch.Tensor) or target.dim() == 0 or target.shape[0] != size:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                per_sample = [scalar(ctx.loss(output[i:i + 1], target[i:i + 1])) for i in range(size)]
        except Exception:
            return
        finite = [v for v in per_sample if math.isfinite(v)]
        if len(finite) != size:
            return
        mean = sum(finite) / size
        if abs(mean) < 1e-12:
            return
        ratio = loss / mean
        ev["per_sample_ratio"] = ratio
        if abs(ratio - size) <= 0.1 * size:
            problems.append((
                "fail",
                f"the batch loss is {ratio:.3g}x the mean per-sample loss (batch of {size}): the loss is summed",
                "the loss sums over the batch (reduction='sum'), so its scale and the effective learning rate "
                "change with the batch size",
                "use reduction='mean' (or divide by the batch size)",
            ))
