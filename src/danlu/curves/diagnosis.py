"""Diagnose curves into named regimes (T2, T3, T4) and store the result with a run.

    report = diagnose(Curves.from_series({"train/loss": (steps, losses), "val/loss": (vs, vl)}))
    report.meta["regime"]          # "learning", "overfitting", "plateau", ...

    report = diagnose_run(store, "last")   # reads the run's series, saves the report
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from danlu.curves.analysis import MIN_TRAIN_POINTS, analyse
from danlu.curves.rules import DiagnosisRule, get_rules
from danlu.curves.series import LR_SERIES, PROBE_SERIES, TRAIN_SERIES, VAL_SERIES, Curves, pick_series
from danlu.errors import DanluError
from danlu.report import STATUS_ORDER, Finding, Report

__all__ = ["diagnose", "diagnose_run", "curves_from_store", "primary_finding", "headline"]


def diagnose(curves: Curves, rules: Sequence[DiagnosisRule] | None = None) -> Report:
    """Run every rule on the curves; return a "diagnosis" Report.

    The findings are the regimes present; when none is a warn or fail, "learning" (pass)
    is added. ``meta["regime"]`` is the primary regime (most severe, then by priority),
    ``meta["text"]`` its one-line summary, ``meta["regimes"]`` all of them.
    """
    analysis = analyse(curves)
    rules = get_rules() if rules is None else list(rules)
    findings: list[Finding] = []
    for rule in rules:
        if rule.final_only and not curves.final:
            continue
        found = rule.check(curves, analysis)
        if found is not None:
            findings.append(found)
    if not any(f.status in ("warn", "fail") for f in findings):
        findings.append(_healthy(curves, analysis))
    order = {r.name: i for i, r in enumerate(rules)}
    findings.sort(key=lambda f: (-STATUS_ORDER[f.status], order.get(f.name, len(order))))
    top = findings[0]
    report = Report(kind="diagnosis", title=f"curve diagnosis: {top.name}", findings=findings)
    report.meta.update(
        regime=top.name,
        text=top.summary,
        headline=headline(top),
        regimes=[f.name for f in findings],
        since_step=top.evidence.get("since_step"),
        series={"train": curves.train.name, "val": curves.val.name if curves.val is not None else None,
                "lr": curves.lr.name if curves.lr is not None else None},
        final=curves.final,
    )
    return report


def _healthy(curves: Curves, a) -> Finding:
    if a is None:
        return Finding(id="T2", name="unknown", status="skip",
                       summary=f"too few finite training points to diagnose ({len(curves.train.finite())} "
                               f"< {MIN_TRAIN_POINTS})",
                       evidence={"train_points": len(curves.train)})
    fell = -a.rel(a.smooth[-1], a.smooth[0])
    text = f"training loss {a.smooth[0]:.4g} → {a.smooth[-1]:.4g} ({-fell * 100:+.0f}%)"
    ev: dict[str, Any] = {"train_start": float(a.smooth[0]), "train_end": float(a.smooth[-1]),
                          "train_change": round(-fell, 4)}
    if a.val is not None:
        best = int(np.argmin(a.val.values))
        ev.update(best_val=float(a.val.values[best]), best_step=int(a.val.steps[best]))
        text += f"; validation best {a.val.values[best]:.4g} at step {int(a.val.steps[best])}"
    return Finding(id="T2", name="learning", status="pass", summary=f"learning normally: {text}", evidence=ev)


def primary_finding(report: Report) -> Finding | None:
    """The finding of the report's primary regime."""
    name = report.meta.get("regime")
    return next((f for f in report.findings if f.name == name), None)


def headline(finding: Finding) -> str:
    """A few words for a progress display or a warning: "overfitting since step 1200"."""
    since = finding.evidence.get("since_step")
    if finding.name in ("learning", "unknown") or since is None:
        return finding.name
    return f"{finding.name} since step {since}"


# --------------------------------------------------------------------- store
def curves_from_store(store, run_id: str, *, baseline_loss: float | None = None, final: bool = True) -> Curves:
    """Read a run's train / validation / LR series (engine or `danlu.init` names) into Curves."""
    names = {n: (n,) for n in store.series_names(run_id)}  # present names; data read below
    train_name = pick_series(names, TRAIN_SERIES)
    if train_name is None:
        raise DanluError(
            f"Run {run_id} has no training-loss series to diagnose (looked for "
            f"{', '.join(TRAIN_SERIES)}; it has {', '.join(sorted(names)) or 'none'}). "
            "Log the loss as 'train/loss' (or 'loss') with run.log({...}, step=...)."
        )
    wanted = [n for n in (train_name, pick_series(names, VAL_SERIES), pick_series(names, PROBE_SERIES),
                          pick_series(names, LR_SERIES)) if n]
    series = {n: store.read_series(run_id, n) for n in wanted}
    return Curves.from_series(series, baseline_loss=baseline_loss, final=final)


def diagnose_run(
    store,
    run: str,
    *,
    baseline_loss: float | None = None,
    save: bool = True,
    plot: bool = True,
) -> Report:
    """Diagnose a stored run (engine or `danlu.init`), save the report and its regime.

    Saves the report (kind "diagnosis") with the run, a PNG of the curves in the run's
    folder when matplotlib is installed, and the regime as the run summary's "diagnosis".
    The majority baseline comes from `baseline_loss`, else the run summary's "baseline_loss".
    """
    record = store.get_run(run)
    base = baseline_loss if baseline_loss is not None else record.summary.get("baseline_loss")
    curves = curves_from_store(store, record.id, baseline_loss=base, final=record.status != "running")
    best = store.run_dir(record.id, create=False) / "checkpoints" / "best.pt"
    if best.exists():
        curves.best_checkpoint = str(best)
    report = diagnose(curves)
    report.meta.update(run_id=record.id, run_name=record.name)
    if plot:
        from danlu.plots import save_curves_png

        path = save_curves_png(curves, report, store.run_dir(record.id) / "diagnosis.png")
        if path is not None:
            report.images.append(Path(path).name)
    if save:
        from danlu.track import keep_report

        keep_report(report, store=store, run=record.id)
        fresh = store.get_run(record.id).summary
        store.update_run(record.id, summary={**fresh, "diagnosis": report.meta["regime"]})
    return report
