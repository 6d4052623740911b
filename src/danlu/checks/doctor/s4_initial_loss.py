"""S4: the initial loss matches its expected value (ln C for C-way cross-entropy)."""

from __future__ import annotations

import math
from typing import Any

import torch

from danlu.checks.base import Check, SkipCheck, register
from danlu.checks.doctor.measure import close, scalar, tensor_output
from danlu.outputs import class_layout
from danlu.report import Finding

__all__ = ["InitialLoss"]


@register
class InitialLoss(Check):
    """Initial loss: the loss of the untrained model matches its expected value.

    Detects: an initial loss far from what a near-uniform start gives: ln C for C-way
    cross-entropy, the target variance for MSE. Too high means overconfident initial
    outputs (unnormalised inputs, a large last-layer init) or targets far from zero; a
    loss that is the batch size times too large means it sums instead of averaging; a
    negative loss means log-probabilities are missing (NLL on probabilities). A softmax
    before cross-entropy is not visible here (probabilities near 1/C also give ln C):
    S7 catches it.
    Why: practice S4 (Karpathy's recipe). Checking the loss at step 0 catches a broken
    output layer or loss before any training; a bad start wastes the first epochs
    ("hockey stick" curves) or diverges.
    How: averages the recipe's loss of the fresh model (train mode, no update) over
    `samples` training samples in batches of the recipe's size. The expected value is ln C
    (classification) or the per-column target variance (regression). When the recipe's own
    loss, evaluated at a uniform prediction (or at the target mean), does not give that
    value, the loss is non-standard (label smoothing, focal, L1, ...) and that value is
    used as the expectation instead; if it is the batch size times ln C, the loss sums.
    Thresholds: ratio = measured / expected. Classification: warn above S4.ratio_warn
    (1.5), fail above S4.ratio_fail (3), warn below 1/S4.ratio_fail. Regression: warn
    above S4.regression_ratio_warn (3), fail above S4.regression_ratio_fail (10). A
    negative or non-finite loss fails. Budget: S4.samples (256).
    Fix: normalise inputs (D4); initialise the last layer small (zero or std 0.01) so
    the start is near uniform; for regression standardise the targets or initialise the
    last bias to their mean; average the loss over the batch (reduction="mean").
    Cannot see: a softmax before cross-entropy (S7 does); a bad start that still lands
    near the expected value; for losses it cannot evaluate at a uniform prediction
    (extra inputs, several heads summed) the expectation is only as good as that
    evaluation.
    """

    id = "S4"
    name = "initial loss"
    stage = "step"
    settings = ("ratio_warn", "ratio_fail", "regression_ratio_warn", "regression_ratio_fail", "samples")
    ratio_warn = 1.5
    ratio_fail = 3.0
    regression_ratio_warn = 3.0
    regression_ratio_fail = 10.0
    samples = 256

    def run(self, ctx) -> Finding:
        ctx.needs_output("comparing the initial loss with the chance level")
        classification = ctx.classification
        model = ctx.new_model().train()
        size = ctx.length("train")
        chunk = max(2, min(ctx.batch_size, size))
        count = max(1, min(self.samples, size) // chunk)
        outs, tgts, losses = [], [], []
        with torch.no_grad():
            for k in range(count):
                out, tgt = ctx.forward(model, ctx.batch(chunk, seed=100 + k))
                out = tensor_output(out)
                losses.append(scalar(ctx.loss(out, tgt)))
                outs.append(out)
                tgts.append(tgt)
        measured = sum(losses) / len(losses)
        ev: dict[str, Any] = {"measured": measured, "samples": chunk * count, "batch": chunk}
        if not math.isfinite(measured):
            return self.finding(
                "fail", f"the initial loss is {measured}", evidence=ev,
                cause="the untrained model or the loss produces NaN/Inf on real data",
                fix="see S9 for the module and operation that produce it; check inputs for NaN (S13)",
            )

        neutral: float | None = None
        with torch.no_grad():
            layout = class_layout(outs[0], tgts[0], ctx.loss) if classification else None
            if classification and layout is None:
                raise SkipCheck("the output does not hold class scores for the class-index targets "
                                f"(output {list(outs[0].shape)}, target {list(tgts[0].shape)}); see S13")
            if layout is not None:
                num = layout.classes
                if num < 2:
                    raise SkipCheck("the model has a single output; cross-entropy needs C >= 2 (see S13)")
                theory, basis = math.log(num), f"ln {num}"
                uniform = [scalar(ctx.loss(torch.full_like(o, -math.log(num)), t)) for o, t in zip(outs, tgts)]
                neutral = sum(uniform) / len(uniform)
                probs = torch.cat([layout.logits_last(o.float()) for o in outs]).softmax(-1)
                ev["max_prob_mean"] = float(probs.max(-1).values.mean())
                ev["logit_std"] = float(torch.cat([o.float().reshape(-1) for o in outs]).std())
            else:
                if not all(isinstance(t, torch.Tensor) for t in tgts):
                    raise SkipCheck("regression targets are not tensors")
                flat = torch.cat([t.double().reshape(len(t), -1) for t in tgts])
                col_mean = flat.mean(0)
                theory = float(((flat - col_mean) ** 2).mean())
                basis = "target variance"
                ev["target_mean"] = float(col_mean.mean())
                ev["target_var"] = theory
                if theory <= 0:
                    raise SkipCheck("the regression targets are constant; there is no variance to compare with")
                try:
                    mean_pred = [
                        scalar(ctx.loss(col_mean.to(o.dtype).expand(len(t), -1).reshape(o.shape).to(o.device), t))
                        for o, t in zip(outs, tgts) if o.numel() == t.numel()
                    ]
                    neutral = sum(mean_pred) / len(mean_pred) if mean_pred else None
                except Exception:
                    neutral = None
                ev["output_std"] = float(torch.cat([o.float().reshape(-1) for o in outs]).std())
        ev["theory"] = theory
        ev["neutral"] = neutral
        expected = theory
        if neutral is not None and math.isfinite(neutral) and not close(neutral, theory, 0.02):
            if abs(neutral - chunk * theory) <= 0.05 * chunk * theory:
                ev["expected"] = theory
                ev["ratio"] = measured / theory
                return self.finding(
                    "fail",
                    f"initial loss {measured:.4g} is {measured / theory:.3g}x the expected {theory:.4g} ({basis}): "
                    f"the loss grows with the batch size ({chunk})",
                    evidence=ev,
                    cause="the loss sums over the batch (reduction='sum') instead of averaging; the gradient "
                          "scale then changes with the batch size and the learning rate with it (see S7)",
                    fix="use reduction='mean' (or divide the sum by the batch size)",
                )
            if neutral > 0:
                expected = neutral
                basis = ("your loss at a uniform prediction" if classification
                         else "your loss predicting the target mean")
        ev["expected"] = expected
        ratio = measured / expected if expected > 0 else float("inf")
        ev["ratio"] = ratio
        head = f"initial loss {measured:.4g} vs expected {expected:.4g} ({basis}), ratio {ratio:.3g}"

        if measured < 0:
            return self.finding(
                "fail", f"initial loss {measured:.4g} is negative", evidence=ev,
                cause="a negative-log-likelihood loss is given probabilities instead of log-probabilities "
                      "(nll_loss after softmax), or the loss has a sign error",
                fix="return raw logits and use cross_entropy, or apply log_softmax before nll_loss (see S7)",
            )
        if classification:
            warn_at, fail_at = self.ratio_warn, self.ratio_fail
            extra = f"; max prob {ev['max_prob_mean']:.2f}, logit std {ev['logit_std']:.3g}"
            cause = (f"the initial outputs are far from uniform (logit std {ev['logit_std']:.3g}): "
                     "unnormalised inputs (D4), a large last-layer initialisation, or an extra scale factor")
            fix = ("normalise the inputs; initialise the last layer small (nn.init.zeros_ or std 0.01 on its "
                   "weight) so the model starts near uniform")
        else:
            warn_at, fail_at = self.regression_ratio_warn, self.regression_ratio_fail
            extra = f"; output std {ev['output_std']:.3g}"
            mean, var = ev["target_mean"], ev["target_var"]
            if mean * mean > var:
                cause = (f"the targets are far from zero (mean {mean:.4g}, std {math.sqrt(var):.4g}) while the "
                         "untrained model outputs about 0")
                fix = ("standardise the targets (and un-standardise predictions), or initialise the last bias "
                       "to their mean")
            else:
                cause = f"the initial outputs are large (std {ev['output_std']:.3g}) compared with the targets"
                fix = "normalise the inputs (D4) and initialise the last layer small"
        if ratio > fail_at:
            return self.finding("fail", head + extra, evidence=ev, cause=cause, fix=fix)
        if ratio > warn_at:
            return self.finding("warn", head + extra, evidence=ev, cause=cause, fix=fix)
        if classification and ratio < 1 / fail_at:
            return self.finding(
                "warn", head + " (well below chance before training)", evidence=ev,
                cause="the untrained model already predicts the labels: the inputs may carry the label "
                      "(leakage), or the loss is not the one you think",
                fix="check that no label information is in the inputs (D5) and what recipe.loss computes",
            )
        return self.finding("pass", head, evidence=ev)
