"""Finding a learning rate without side effects (T4, T6).

- :func:`lr_range_test`: an exponential LR sweep over training batches (Smith 2015,
  "Cyclical learning rates", and fast.ai's lr_find). The loss is smoothed, the sweep stops
  at divergence, and the suggestion is where the smoothed loss falls fastest. Model,
  optimizer and every RNG are restored bit-exactly afterwards (tested).
- :func:`lr_scan`: the practitioners' coarse scan: short real runs at 1e-1, 1e-2, 1e-3,
  1e-4, each diagnosed; NaN/divergence -> ÷10, slow -> ×5-10; the best, and why (T4).
- :func:`scale_lr`: the LR for a new batch size under the linear and square-root rules (T6).

Why the steepest descent and not "the minimum ÷ 10": the steepest point is where an
increase of LR buys the most loss decrease per step, which is what a training LR should
sit near; "min ÷ 10" depends on where the sweep happens to blow up (batch noise, the
divergence threshold), and on digits it lands further from the best grid LR than the
steepest point does (see tests/diagnose/test_lr_benchmark.py). Both are reported.
"""

from __future__ import annotations

import copy
import math
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from danlu.diagnose.curves import median_smooth
from danlu.errors import DanluError
from danlu.report import Finding, Report, Table

__all__ = [
    "lr_range_test",
    "analyse_sweep",
    "SweepResult",
    "lr_scan",
    "scale_lr",
    "batch_scaling_finding",
    "DIVERGE_FACTOR",
    "SWEEP_BETA",
    "FASTEST_FRACTION",
    "HIGH_DROP",
    "LOW_DROP",
    "VALLEY_RISE",
    "DEFAULT_SCAN_LRS",
    "SCAN_EPOCHS",
    "SCAN_SLOW_FRACTION",
    "SCAN_MIN_DROP",
]

#: The sweep stops when the (causal EMA) smoothed loss exceeds this many times its best.
DIVERGE_FACTOR = 4.0
#: EMA factor of the causal smoothing used for the stop test (bias-corrected).
SWEEP_BETA = 0.9
#: "Where the loss falls fastest": the LRs whose descent is at least this fraction of the steepest.
FASTEST_FRACTION = 0.5
#: Confidence: the smoothed loss fell at least this much (relative) before its minimum -> can be high...
HIGH_DROP = 0.25
#: ...and below this much the sweep shows no clear descent -> low.
LOW_DROP = 0.10
#: A sweep that rose back at least this fraction of its descent after its minimum shows a full valley.
VALLEY_RISE = 0.1
#: The coarse scan's grid (T4).
DEFAULT_SCAN_LRS = (1e-1, 1e-2, 1e-3, 1e-4)
#: Each scan run lasts at most this many epochs (T4: "the first epochs").
SCAN_EPOCHS = 2
#: A scan run is "slow" when its loss fell less than this fraction of the fastest healthy run's fall...
SCAN_SLOW_FRACTION = 0.5
#: ...or less than this much at all.
SCAN_MIN_DROP = 0.05


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


def _seed(seed: int) -> None:
    try:
        from danlu.repro import seed_everything
    except ImportError:  # pragma: no cover - repro always ships with danlu
        random.seed(seed)
        torch.manual_seed(seed)
        return
    seed_everything(seed)


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
    diverge: float = DIVERGE_FACTOR,
    plot_path: str | Path | None = None,
) -> Report:
    """LR range test on a recipe's training batches; returns a Report of kind "lr".

    The LR grows exponentially from `start` to `end` over `steps` batches (one optimizer
    step each; param groups keep their LR ratios). It stops when the loss is NaN/Inf or
    its smoothed value exceeds `diverge` times its best. Pass `model`/`optimizer` to
    sweep those (they are restored exactly afterwards); else fresh ones come from the
    recipe, seeded with the recipe's seed. The global RNGs and determinism flags are
    always restored. ``meta`` holds the sweep points; `plot_path` saves a PNG.
    """
    if not (0 < start < end) or steps < 10:
        raise DanluError(f"LR range test needs 0 < start < end and steps >= 10 (got start={start}, "
                         f"end={end}, steps={steps}); e.g. start=1e-7 end=10 steps=100.")
    from danlu.device import resolve_device, to_device

    saved = _Restore(model, optimizer)
    try:
        _seed(recipe.seed)
        train, val = recipe.data()
        recipe.resolve_task(train)
        loader, _ = recipe.loaders(train, val)
        if model is None:
            dev = resolve_device(device)
            net = recipe.model().to(dev)
        else:
            net = model
            dev = next((p.device for p in net.parameters()), torch.device("cpu"))
        opt = optimizer if optimizer is not None else recipe.optimizer(net.parameters())
        lrs, losses, stop = _sweep(recipe, net, opt, loader, dev, to_device, start, end, steps, diverge)
    finally:
        saved.put_back()
    result = analyse_sweep(lrs, losses, stop)
    report = _range_report(recipe, result, start, end, steps)
    if plot_path is not None:
        from danlu.diagnose.plot import save_lr_png

        written = save_lr_png(report.meta["points"], result.suggestion, result.fastest, plot_path)
        if written is not None:
            report.images.append(Path(written).name)
    return report


def _sweep(recipe, model, opt, loader, device, to_device, start, end, steps, diverge):
    factors = [g["lr"] for g in opt.param_groups]
    top = max(factors) if max(factors) > 0 else 1.0
    factors = [f / top if top else 1.0 for f in factors]
    schedule = start * (end / start) ** (np.arange(steps) / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    batches = iter(loader)
    avg, best, stop = 0.0, math.inf, "end"
    model.train()
    for i, lr in enumerate(schedule):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        for group, f in zip(opt.param_groups, factors):
            group["lr"] = float(lr) * f
        output, target = recipe.forward(model, to_device(batch, device))
        loss = recipe.loss(output, target)
        value = float(loss.item())
        lrs.append(float(lr))
        losses.append(value)
        if not math.isfinite(value):
            stop = "nan"
            break
        avg = SWEEP_BETA * avg + (1 - SWEEP_BETA) * value
        smoothed = avg / (1 - SWEEP_BETA ** (i + 1))
        if i >= 5 and smoothed > diverge * best:  # a few points first: the EMA starts noisy
            stop = "diverged"
            break
        best = min(best, smoothed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if getattr(recipe, "grad_clip", 0) > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
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


# ---------------------------------------------------------------- the scan
@dataclass
class _ScanRow:
    lr: float
    run_id: str
    regime: str
    verdict: str = ""           # "too high", "slow", "ok"
    advice: str = ""
    train_start: float = math.nan
    train_end: float = math.nan
    best_val: float = math.nan

    @property
    def drop(self) -> float:
        if not (math.isfinite(self.train_start) and math.isfinite(self.train_end)) or self.train_start == 0:
            return -math.inf
        return 1 - self.train_end / self.train_start


def lr_scan(
    recipe,
    lrs: Iterable[float] = DEFAULT_SCAN_LRS,
    *,
    steps: int | None = None,
    store=None,
    device: str | torch.device | None = None,
    tags: Sequence[str] = ("lr-scan",),
    parent: str | None = None,
    adapt: bool = True,
    progress: bool = False,
) -> Report:
    """Short real runs at each LR (T4), each diagnosed: NaN/diverging -> ÷10, slow -> ×5–10.

    Each run lasts at most SCAN_EPOCHS epochs (and `steps` steps when given), at a constant
    LR (warmup kept), and is stored like any run (tagged "lr-scan"). With `adapt`, when every LR is too high the scan tries
    the lowest ÷10, and when every LR is slow the highest ×10 (at most two extra runs).
    The best is the lowest validation loss (training loss when a run has no validation yet)
    among the runs that are not too high.
    """
    from danlu.diagnose.diagnosis import diagnose_run
    from danlu.diagnose.live import LiveDiagnosis
    from danlu.engine import fit
    from danlu.store import open_store
    from danlu.store.base import Store

    store = store if isinstance(store, Store) else open_store(store)
    grid = sorted({float(x) for x in lrs}, reverse=True)
    if not grid or min(grid) <= 0:
        raise DanluError(f"--lrs needs positive learning rates, e.g. --lrs 1e-1,1e-2,1e-3 (got {grid}).")
    rows: list[_ScanRow] = []
    scan_id = parent[:6] if parent else uuid.uuid4().hex[:6]  # run names are unique in a store

    def run_one(lr: float) -> _ScanRow:
        # A constant LR: the scan asks what this LR does, not what a decayed schedule of it does.
        hp = {**recipe.hparams(), "lr": lr, "epochs": min(recipe.epochs, SCAN_EPOCHS)}
        if "schedule" in hp:
            hp["schedule"] = "constant"
        r = type(recipe)(**hp)
        live = LiveDiagnosis(stop_on={"nan", "diverging"}, announce=lambda line: None, save=False)
        res = fit(r, store=store, name=f"lr-scan-{scan_id}-{lr:.0e}", note=f"LR scan: lr={lr:.0e}", tags=tags,
                  device=device, progress=progress, max_steps=steps, callbacks=[live], parent=parent)
        diag = diagnose_run(store, res.run_id, plot=False)
        row = _ScanRow(lr=lr, run_id=res.run_id, regime=diag.meta["regime"])
        t = store.read_series(res.run_id, "train/loss")[1]
        t = t[np.isfinite(t)]
        if len(t):
            k = max(1, len(t) // 10)
            row.train_start, row.train_end = float(np.median(t[:k])), float(np.median(t[-k:]))
        v = store.read_series(res.run_id, "val/loss")[1]
        v = v[np.isfinite(v)]
        if len(v):
            row.best_val = float(v.min())
        return row

    for lr in grid:
        rows.append(run_one(lr))
    _judge(rows)
    extra = 0
    while adapt and extra < 2:
        if all(r.verdict == "too high" for r in rows):
            nxt = min(r.lr for r in rows) / 10
        elif all(r.verdict == "slow" for r in rows if r.verdict != "too high") and not any(r.verdict == "ok" for r in rows):
            nxt = max(r.lr for r in rows if r.verdict == "slow") * 10
            if any(r.lr == nxt for r in rows):
                break
        else:
            break
        rows.append(run_one(nxt))
        _judge(rows)
        extra += 1
    return _scan_report(rows, steps)


def _judge(rows: list[_ScanRow]) -> None:
    """Label each run: too high (NaN/diverging, or stuck above an LR that works) -> ÷10;
    slow -> ×5–10; else ok (T4)."""
    for r in rows:
        if r.regime in ("nan", "diverging") or not math.isfinite(r.train_end):
            r.verdict, r.advice = "too high", "÷10"
    healthy = [r for r in rows if r.verdict != "too high"]
    best_drop = max((r.drop for r in healthy), default=0.0)
    for r in healthy:
        if r.regime == "plateau" or r.drop < SCAN_SLOW_FRACTION * best_drop or r.drop < SCAN_MIN_DROP:
            r.verdict, r.advice = "slow", "×5–10"
        else:
            r.verdict, r.advice = "ok", ""
    # Stuck *above* an LR that works is not slowness: the large steps killed the units (a dead
    # network predicts a constant and sits at the baseline), so the LR is too high.
    working = [r.lr for r in healthy if r.verdict == "ok"]
    for r in healthy:
        if r.verdict == "slow" and working and r.lr > max(working):
            r.verdict, r.advice = "too high", "÷10"


def _scan_report(rows: list[_ScanRow], steps: int | None) -> Report:
    rows = sorted(rows, key=lambda r: -r.lr)
    candidates = [r for r in rows if r.verdict != "too high"]
    use_val = bool(candidates) and all(math.isfinite(r.best_val) for r in candidates)
    metric = "validation loss" if use_val else "training loss"

    def score(r: _ScanRow) -> float:
        return r.best_val if use_val else r.train_end

    table = Table(
        title="LR scan",
        columns=["lr", "regime", "verdict", "train loss start", "train loss end", "best val loss", "advice"],
        rows=[[r.lr, r.regime, r.verdict, r.train_start, r.train_end, r.best_val, r.advice] for r in rows],
    )
    report = Report(kind="lr", title="LR scan", tables=[table])
    if not candidates:
        lowest = min(r.lr for r in rows)
        report.findings.append(Finding(
            id="T4", name="best lr", status="fail",
            summary=f"every LR diverged or hit NaN down to {lowest:.0e}",
            fix=f"Try {lowest / 10:.0e} (T4: NaN → ÷10); if that fails too, the set-up is broken: run `danlu check`.",
        ))
        report.meta.update(best_lr=None, rows=[r.__dict__ for r in rows])
        return report
    best = min(candidates, key=score)
    why = [f"lowest {metric} ({score(best):.4g})"]
    for r in rows:
        if r is best:
            continue
        if r.verdict == "too high" and r.regime in ("nan", "diverging"):
            why.append(f"{r.lr:.0e} {r.regime} (÷10)")
        elif r.verdict == "too high":
            why.append(f"{r.lr:.0e} stuck ({r.regime}) above a working LR (÷10)")
        elif r.verdict == "slow":
            why.append(f"{r.lr:.0e} slow: loss fell {max(r.drop, 0):.0%} (×5–10)")
        else:
            why.append(f"{r.lr:.0e} {metric} {score(r):.4g}")
    status = "pass" if best.verdict == "ok" else "warn"
    fix = ""
    higher = [r for r in rows if r.lr > best.lr]
    if best.verdict == "slow":
        fix = f"Every healthy LR was slow: try {best.lr * 5:.0e}–{best.lr * 10:.0e} (T4: slow → ×5–10)."
    elif not higher:
        fix = f"The best is the highest LR tried: also try {best.lr * 5:.0e} (T4)."
    report.findings.append(Finding(
        id="T4", name="best lr", status=status,  # type: ignore[arg-type]
        summary=f"best LR {best.lr:.0e}: " + "; ".join(why),
        evidence={"best_lr": best.lr, "metric": metric, "score": score(best), "run_id": best.run_id,
                  "steps": steps},
        fix=fix,
    ))
    report.meta.update(best_lr=best.lr, metric=metric, rows=[r.__dict__ for r in rows])
    return report


# ------------------------------------------------------------ batch scaling
def scale_lr(lr: float, batch_ref: int, batch_new: int) -> dict[str, float]:
    """LR for a new batch size (T6): linear rule (lr·k, keeps the update per sample) and
    square-root rule (lr·√k, keeps the update's variance), with k = batch_new / batch_ref."""
    if lr <= 0 or batch_ref <= 0 or batch_new <= 0:
        raise DanluError(f"scale_lr needs a positive lr and batch sizes (got {lr}, {batch_ref}, {batch_new}).")
    k = batch_new / batch_ref
    return {"factor": k, "linear": lr * k, "sqrt": lr * math.sqrt(k)}


def batch_scaling_finding(lr: float, batch_ref: int, batch_new: int, ref_name: str = "the reference run") -> Finding:
    """A T6 finding: the reference LR rescaled to a new batch size, both rules."""
    s = scale_lr(lr, batch_ref, batch_new)
    same = batch_ref == batch_new
    return Finding(
        id="T6", name="batch scaling", status="pass" if same else "info",  # type: ignore[arg-type]
        summary=(f"batch size {batch_new} equals {ref_name}'s; keep lr {lr:.2g}" if same else
                 f"batch {batch_ref} → {batch_new} (×{s['factor']:.3g}) from {ref_name}'s lr {lr:.2g}: "
                 f"linear rule {s['linear']:.2g}, square-root rule {s['sqrt']:.2g}"),
        evidence={"ref_lr": lr, "ref_batch": batch_ref, "batch": batch_new, **s},
        fix="" if same else ("Linear scaling is the more common choice; prefer the square-root rule "
                             "for adaptive optimizers (Adam) or large factors, and add warmup (T4, T6)."),
    )
