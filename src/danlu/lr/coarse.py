"""The coarse LR scan (T4): short real runs at 1e-1, 1e-2, 1e-3, 1e-4, each diagnosed.

NaN/divergence -> ÷10, slow -> ×5-10; the best, and why. Each run is an ordinary
training run (tagged "lr-scan") so its curves can be read like any other.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from danlu.errors import DanluError
from danlu.report import Finding, Report, Table

__all__ = ["lr_scan", "DEFAULT_SCAN_LRS", "SCAN_EPOCHS", "SCAN_SLOW_FRACTION", "SCAN_MIN_DROP"]

#: The coarse scan's grid (T4).
DEFAULT_SCAN_LRS = (1e-1, 1e-2, 1e-3, 1e-4)
#: Each scan run lasts at most this many epochs (T4: "the first epochs").
SCAN_EPOCHS = 2
#: A scan run is "slow" when its loss fell less than this fraction of the fastest healthy run's fall...
SCAN_SLOW_FRACTION = 0.5
#: ...or less than this much at all.
SCAN_MIN_DROP = 0.05


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
    from danlu.curves.diagnosis import diagnose_run
    from danlu.curves.live import LiveDiagnosis
    from danlu.engine import fit
    from danlu.store import open_store
    from danlu.store.base import Store

    store = store if isinstance(store, Store) else open_store(store)
    grid = sorted({float(x) for x in lrs}, reverse=True)
    if not grid or min(grid) <= 0:
        raise DanluError(f"lrs needs positive learning rates, e.g. (1e-1, 1e-2, 1e-3); got {grid}.")
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


