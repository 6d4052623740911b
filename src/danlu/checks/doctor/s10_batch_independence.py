"""S10: samples in a batch do not leak into each other (view/permute bugs)."""

from __future__ import annotations

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from danlu.batches import leaves
from danlu.checks.base import Check, SkipCheck, register
from danlu.checks.doctor.measure import split, with_inputs
from danlu.report import Finding

__all__ = ["BatchIndependence"]


@register
class BatchIndependence(Check):
    """Batch independence: one sample's output does not depend on the other samples' inputs.

    Detects: operations that mix samples of a batch: x.view(C, B, ...) or reshape where
    a permute/transpose was meant, a sum/mean/softmax over dim 0, a normalisation over
    the batch written by hand.
    Why: practice S10 (Karpathy: "use backprop to chart dependencies"). Mixed samples
    still train, just worse, and the bug hides until someone looks at per-sample
    predictions; evaluation results then depend on the batch size and order.
    How: puts batch-norm in eval mode (its batch statistics legitimately couple samples),
    runs the model on a small batch whose input requires grad, and backpropagates a
    random projection of sample i's output (i = first and middle) to the inputs. Every
    other sample's input gradient must be exactly zero. For integer inputs (token ids)
    it changes the other samples' inputs instead and checks that output i is unchanged (in
    eval mode, so that dropout masks do not differ between the two passes).
    Thresholds: fails when another sample's input gradient exceeds S10.tolerance (1e-6)
    times the largest gradient on sample i's own input. Budget: S10.samples (8).
    Fix: use permute/transpose (not view/reshape) to reorder dimensions, and reduce over
    the intended dimension (dim=1, not 0); keep batch statistics inside nn.BatchNorm.
    Cannot see: mixing that appears only at other batch sizes; coupling through non-
    differentiable paths for float inputs (argsort or indexing by batch statistics:
    their gradient is zero); batch-norm's own coupling, which is legitimate and
    excluded.
    """

    id = "S10"
    name = "batch independence"
    stage = "step"
    settings = ("tolerance", "samples")
    tolerance = 1e-6
    samples = 8

    def run(self, ctx) -> Finding:
        ctx.needs_output("following each sample to its own output")
        model = ctx.new_model().train()
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.eval()
        batch = ctx.batch(max(3, self.samples), seed=10)
        x, _ = split(batch)
        size = x.shape[0] if x.dim() else 0
        if size < 3:
            raise SkipCheck("need at least 3 samples in a batch")
        probes = sorted({0, size // 2})
        leaks: dict[int, list[int]] = {}
        gen = torch.Generator().manual_seed(10)
        if x.is_floating_point():
            xg = x.detach().clone().requires_grad_(True)
            output, _ = ctx.forward(model, with_inputs(batch, xg))
            parts = _batched(output, size)
            if not parts:
                raise SkipCheck("no tensor in the model output has the batch as its first dimension")
            for i in probes:
                probe = sum((part[i] * torch.randn(part[i].shape, generator=gen).to(part.device, part.dtype)).sum()
                            for part in parts)
                # input gradients chart which samples feed sample i's output; nothing is trained
                (grad,) = torch.autograd.grad(probe, xg, retain_graph=True, allow_unused=True)
                if grad is None:
                    raise SkipCheck("the output does not depend on the input tensor (see S5)")
                per = grad.detach().abs().reshape(size, -1).max(dim=1).values
                own = float(per[i])
                if own == 0:
                    continue
                others = [j for j in range(size) if j != i and float(per[j]) > self.tolerance * own]
                if others:
                    leaks[i] = others
            method = "input gradients"
        else:
            model.eval()  # two forwards are compared: dropout masks must not differ between them
            with torch.no_grad():
                base, _ = ctx.forward(model, batch)
                if not _batched(base, size):
                    raise SkipCheck("no tensor in the model output has the batch as its first dimension")
                for i in probes:
                    other = torch.roll(x, shifts=1, dims=0)
                    changed = other.clone()
                    changed[i] = x[i]
                    out, _ = ctx.forward(model, with_inputs(batch, changed))
                    if any(not torch.allclose(a[i], b[i], rtol=1e-5, atol=1e-6)
                           for a, b in zip(_batched(out, size), _batched(base, size))):
                        leaks[i] = [j for j in range(size) if j != i]
            method = "changing other samples' inputs"
        ev = {"batch": size, "probed": probes, "method": method, "leaks": {str(k): v for k, v in leaks.items()}}
        if leaks:
            i, others = next(iter(leaks.items()))
            return self.finding(
                "fail",
                f"the output of sample {i} depends on the inputs of samples {others[:6]}"
                f"{'...' if len(others) > 6 else ''} (by {method})",
                evidence=ev,
                cause="an operation mixes samples across the batch: view/reshape used to swap dimensions "
                      "(x.view(C, B, ...) instead of x.permute), or a sum/mean/softmax over dim 0",
                fix="reorder dimensions with permute/transpose, reduce over the intended dimension, and check "
                    "every view/reshape that touches the batch dimension",
            )
        return self.finding("pass", f"no sample's output depends on another's input (batch of {size}, by {method})",
                            evidence=ev)


def _batched(output, size: int) -> list[torch.Tensor]:
    """The floating-point tensors of an output (one tensor, a tuple, a dict) whose first dimension is the batch."""
    return [t for t in leaves(output) if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == size
            and t.is_floating_point()]
