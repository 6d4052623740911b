"""The LR range test (T4): find a learning rate without side effects.

An exponential LR sweep over training batches (Smith 2015, "Cyclical learning rates",
and fast.ai's lr_find). The loss is smoothed, the sweep stops at divergence, and the
suggestion is where the smoothed loss falls fastest. Model, optimizer and every RNG are
restored bit-exactly afterwards (tested).

Why the steepest descent and not "the minimum ÷ 10": the steepest point is where an
increase of LR buys the most loss decrease per step, which is what a training LR should
sit near; "min ÷ 10" depends on where the sweep happens to blow up (batch noise, the
divergence threshold), and on digits it lands further from the best grid LR than the
steepest point does (see tests/lr/test_lr_benchmark.py). Both are reported.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from danlu.curves.divergence import EMA_BETA, Tripwire
from danlu.curves.series import median_smooth
from danlu.errors import DanluError
from danlu.report import Finding, Report
from danlu.step import TrainStep, prepare

__all__ = [
    "lr_range_test",
    "analyse_sweep",
    "SweepResult",
    "SWEEP_BETA",
    "FASTEST_FRACTION",
    "HIGH_DROP",
    "LOW_DROP",
    "VALLEY_RISE",
]

#: EMA factor of the online smoothing the sweep's stop test uses (danlu.curves.divergence).
SWEEP_BETA = EMA_BETA
#: "Where the loss falls fastest": the LRs whose descent is at least this fraction of the steepest.
FASTEST_FRACTION = 0.5
#: Confidence: the smoothed loss fell at least this much (relative) before its minimum -> can be high...
HIGH_DROP = 0.25
#: ...and below this much the sweep shows no clear descent -> low.
LOW_DROP = 0.10
#: A sweep that rose back at least this fraction of its descent after its minimum shows a full valley.
VALLEY_RISE = 0.1


# ------------------------------------------------------------ sweep analysis
@dataclass
class SweepResult:
    """What a sweep says: the suggestion, the steep range, and how sure it is."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stop: str                              # "end", "diverged" or "nan"
    suggestion: float | None = None        # steepest descent of the smoothed loss
    min_loss_lr: float | None = None       # LR at the smoothed minimum
    fastest: tuple[float, float] | None = None
    drop: float = 0.0                      # relative fall of the smoothed loss to its minimum
    confidence: str = "low"
    reasons: list[str] = field(default_factory=list)

    @property
    def min_over_10(self) -> float | None:
        return None if self.min_loss_lr is None else self.min_loss_lr / 10


def _centred_mean(y: np.ndarray, k: int) -> np.ndarray:
    k = max(1, k | 1)
    if k == 1 or len(y) < 3:
        return y.copy()
    kernel = np.ones(k)
    num = np.convolve(y, kernel, mode="same")
    den = np.convolve(np.ones_like(y), kernel, mode="same")
    return num / den


def analyse_sweep(lrs: Sequence[float], losses: Sequence[float], stop: str = "end") -> SweepResult:
    """Smooth a sweep (centred: no lag), find the steepest descent, its range and a confidence."""
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    ok = np.isfinite(losses)
    n_ok = int(np.argmin(ok)) if not ok.all() else len(ok)  # finite prefix
    x, raw = np.log10(lrs[:n_ok]), losses[:n_ok]
    result = SweepResult(lrs, losses, np.full(len(losses), np.nan), stop)
    if n_ok < 8:
        result.reasons.append(f"only {n_ok} finite points before the sweep stopped")
        return result
    positive = bool((raw > 0).all())
    y = np.log(raw) if positive else raw / max(float(np.median(np.abs(raw))), 1e-12)
    ys = _centred_mean(median_smooth(y, 5), max(3, n_ok // 10))
    result.smoothed[:n_ok] = np.exp(ys) if positive else ys * max(float(np.median(np.abs(raw))), 1e-12)
    i_min = int(np.argmin(ys))
    result.min_loss_lr = float(lrs[i_min])
    result.drop = float(1 - math.exp(ys[i_min] - ys[0])) if positive else float(ys[0] - ys[i_min])
    grad = np.gradient(ys, x)
    i_steep = int(np.argmin(grad[: i_min + 1])) if i_min > 0 else 0
    result.suggestion = float(lrs[i_steep])
    if grad[i_steep] < 0:
        lo = hi = i_steep
        while lo > 0 and grad[lo - 1] <= FASTEST_FRACTION * grad[i_steep]:
            lo -= 1
        while hi < i_min and grad[hi + 1] <= FASTEST_FRACTION * grad[i_steep]:
            hi += 1
        result.fastest = (float(lrs[lo]), float(lrs[hi]))
    # Confidence: a clear descent, inside the sweep, followed by a turn up (a full valley).
    edge = max(2, n_ok // 20)
    valley = stop in ("diverged", "nan") or ys[-1] > ys[i_min] + VALLEY_RISE * abs(ys[0] - ys[i_min])
    if result.drop < LOW_DROP:
        result.reasons.append(f"the loss fell only {result.drop:.0%} across the sweep")
    if i_steep < edge:
        result.reasons.append("the steepest descent is at the start of the sweep (start lower)")
    if i_min >= n_ok - edge and not valley:
        result.reasons.append("the loss still falls at the end of the sweep (end higher)")
    if result.reasons:
        result.confidence = "low"
    elif result.drop >= HIGH_DROP and valley:
        result.confidence = "high"
    else:
        result.confidence = "medium"
        if not valley:
            result.reasons.append("the sweep ended before the loss turned up")
        if result.drop < HIGH_DROP:
            result.reasons.append(f"the loss fell {result.drop:.0%} (< {HIGH_DROP:.0%})")
    return result


# ------------------------------------------------------------- state restore
class _Restore:
    """Everything the sweep may touch, captured before and put back bit-exactly after."""

    def __init__(self, model: torch.nn.Module | None, optimizer: torch.optim.Optimizer | None) -> None:
        from danlu.repro import rng_state

        self.rng = rng_state()
        self.flags = (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled(),
                      torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        self.model = model
        self.tensors = None
        if model is not None:
            self.training = model.training
            self.tensors = {k: t.detach().clone() for k, t in _named_tensors(model)}
            self.grads = {k: (p.grad.detach().clone() if p.grad is not None else None)
                          for k, p in model.named_parameters()}
        self.optimizer = optimizer
        self.opt_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None

    def put_back(self) -> None:
        from danlu.repro import set_rng_state

        if self.model is not None and self.tensors is not None:
            with torch.no_grad():
                for k, t in _named_tensors(self.model):
                    t.copy_(self.tensors[k])
            for k, p in self.model.named_parameters():
                p.grad = self.grads[k]
            self.model.train(self.training)
        if self.optimizer is not None and self.opt_state is not None:
            self.optimizer.load_state_dict(self.opt_state)
            if not self.opt_state["state"]:
                self.optimizer.state.clear()
        set_rng_state(self.rng)
        det, warn_only, cudnn_det, bench = self.flags
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_det, bench


def _named_tensors(model: torch.nn.Module):
    seen = set()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            yield name, t


# ------------------------------------------------------------ the range test
def lr_range_test(
    recipe,
    device: str | torch.device | None = None,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    plot_path: str | Path | None = None,
) -> Report:
    """LR range test on a recipe's training batches; returns a Report of kind "lr".

    The LR grows exponentially from `start` to `end` over `steps` batches (one optimizer
    step each; param groups keep their LR ratios). It stops when the loss is NaN/Inf or
    diverges (danlu.curves.divergence: the one definition the curve reader uses too). Pass `model`/`optimizer` to
    sweep those (they are restored exactly afterwards); else fresh ones come from the
    recipe, seeded with the recipe's seed. The global RNGs and determinism flags are
    always restored. ``meta`` holds the sweep points; `plot_path` saves a PNG.
    """
    if not (0 < start < end) or steps < 10:
        raise DanluError(f"LR range test needs 0 < start < end and steps >= 10 (got start={start}, "
                         f"end={end}, steps={steps}); e.g. start=1e-7 end=10 steps=100.")
    from danlu.device import resolve_device

    saved = _Restore(model, optimizer)
    try:
        dev = resolve_device(device) if model is None else \
            next((p.device for p in model.parameters()), torch.device("cpu"))
        prep = prepare(recipe, dev)  # the run's data, loader and (unless given) model, as `danlu train` builds them
        net = model if model is not None else prep.model
        opt = optimizer if optimizer is not None else (prep.step.optimizer if model is None
                                                        else recipe.optimization(net, prep.total_steps)[0])
        lrs, losses, stop = _sweep(recipe, net, opt, prep.train_loader, dev, start, end, steps)
    finally:
        saved.put_back()
    result = analyse_sweep(lrs, losses, stop)
    report = _range_report(recipe, result, start, end, steps)
    if plot_path is not None:
        from danlu.plots import save_lr_png

        written = save_lr_png(report.meta["points"], result.suggestion, result.fastest, plot_path)
        if written is not None:
            report.images.append(Path(written).name)
    return report


def _sweep(recipe, model, opt, loader, device, start, end, steps):
    """Exponentially growing LR, one training step (the recipe's: clipping included) per batch."""
    step = TrainStep(recipe, model, opt, grad_clip=getattr(recipe, "grad_clip", 0.0), device=device)
    factors = [g["lr"] for g in opt.param_groups]
    top = max(factors) if max(factors) > 0 else 1.0
    factors = [f / top if top else 1.0 for f in factors]
    schedule = start * (end / start) ** (np.arange(steps) / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    batches = iter(loader)
    tripwire, stop = Tripwire(), "end"
    model.train()
    for _i, lr in enumerate(schedule):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        for group, f in zip(opt.param_groups, factors):
            group["lr"] = float(lr) * f
        out = step.forward_backward(batch)
        value = float(out.loss.item())
        lrs.append(float(lr))
        losses.append(value)
        if not math.isfinite(value):
            stop = "nan"
            break
        if tripwire.update(value):
            stop = "diverged"
            break
        step.update()
    return lrs, losses, stop


def _range_report(recipe, r: SweepResult, start: float, end: float, steps: int) -> Report:
    status = {"high": "pass", "medium": "info", "low": "warn"}[r.confidence]
    ev: dict[str, Any] = {
        "suggestion": r.suggestion, "steepest_lr": r.suggestion, "min_loss_lr": r.min_loss_lr,
        "min_over_10": r.min_over_10, "fastest": list(r.fastest) if r.fastest else None,
        "confidence": r.confidence, "drop": round(r.drop, 4), "stop": r.stop,
        "points": int(np.isfinite(r.losses).sum()), "recipe_lr": getattr(recipe, "lr", None),
    }
    findings = []
    if r.suggestion is None:
        summary = "no suggestion: " + "; ".join(r.reasons)
    else:
        summary = f"suggested LR {r.suggestion:.2g} (confidence {r.confidence})"
        if r.fastest:
            summary += f"; loss falls fastest between {r.fastest[0]:.2g} and {r.fastest[1]:.2g}"
        if r.reasons:
            summary += " — " + "; ".join(r.reasons)
    fix = ""
    if r.confidence == "low":
        fix = ("Widen the sweep (start lower / end higher, more steps), or use the coarse scan "
               "`danlu lr RECIPE --scan` (T4).")
    findings.append(Finding(id="T4", name="suggested lr", status=status, summary=summary, evidence=ev, fix=fix))  # type: ignore[arg-type]
    rlr = getattr(recipe, "lr", None)
    if r.suggestion is not None and r.fastest and rlr:
        inside = r.fastest[0] / 3 <= rlr <= r.fastest[1] * 3
        findings.append(Finding(
            id="T4", name="recipe lr", status="pass" if inside else "info",  # type: ignore[arg-type]
            summary=f"the recipe's lr {rlr:.2g} is {'near' if inside else 'outside'} the fast range "
                    f"({r.fastest[0]:.2g}–{r.fastest[1]:.2g}); suggestion {r.suggestion:.2g} "
                    f"is {max(rlr, r.suggestion) / min(rlr, r.suggestion):.1f}x "
                    f"{'lower' if r.suggestion < rlr else 'higher'}",
            evidence={"recipe_lr": rlr, "suggestion": r.suggestion},
            fix="" if inside else f"Try lr={r.suggestion:.2g}.",
        ))
    finite = np.isfinite(r.losses)
    report = Report(kind="lr", title="LR range test", findings=findings)
    report.meta.update(
        suggestion=r.suggestion, fastest=list(r.fastest) if r.fastest else None,
        confidence=r.confidence, min_loss_lr=r.min_loss_lr, stop=r.stop, start=start, end=end, steps=steps,
        points={"lr": r.lrs.tolist(), "loss": [float(v) if f else None for v, f in zip(r.losses, finite)],
                "smoothed": [float(v) if math.isfinite(v) else None for v in r.smoothed]},
    )
    return report
