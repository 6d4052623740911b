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

from danlu.curves.analysis import LEARNED_FRACTION, MIN_TRAIN_POINTS, analyse
from danlu.curves.rules import DiagnosisRule, get_rules
from danlu.curves.series import (
    DATA_WAIT_SERIES,
    LR_SERIES,
    PROBE_SERIES,
    TRAIN_SERIES,
    VAL_SERIES,
    Curves,
    baseline_name,
    pick_series,
)
from danlu.errors import DanluError
from danlu.report import STATUS_ORDER, Finding, Report

__all__ = ["diagnose", "diagnose_run", "curves_from_store", "primary_finding", "headline", "regime_of",
           "regime_title", "HEALTHY", "READ_POINTS", "LITTLE_OF_BASELINE"]


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
    findings.sort(key=lambda f: (-STATUS_ORDER[f.status], order.get(regime_of(f), len(order))))
    top = findings[0]
    report = Report(kind="diagnosis", title=f"curve diagnosis: {top.name}", findings=findings)
    report.meta.update(
        regime=regime_of(top),
        title=top.name,
        text=top.summary,
        headline=headline(top),
        regimes=[regime_of(f) for f in findings],
        since_step=top.evidence.get("since_step"),
        series={"train": curves.train.name, "val": curves.val.name if curves.val is not None else None,
                "lr": curves.lr.name if curves.lr is not None else None},
        final=curves.final,
    )
    return report


#: Regimes of a run no rule flags: how much its curves can say.
HEALTHY = ("learning", "too_short", "learning_little", "unknown")
#: "learning normally" needs at least this many finite training points...
READ_POINTS = 30
#: ...and a training loss that fell LEARNED_FRACTION (10%) below its start. A run whose validation (or,
#: without one, training) loss settled at this fraction of the baseline or above learned little.
LITTLE_OF_BASELINE = 0.5


def _healthy(curves: Curves, a) -> Finding:
    """The finding when no rule flags a problem: learning normally only with evidence for it."""
    if a is None:
        return Finding(id="T2", name="too short to tell", status="skip",
                       summary=f"too few finite training points to diagnose ({len(curves.train.finite())} "
                               f"< {MIN_TRAIN_POINTS})",
                       evidence={"regime": "unknown", "train_points": len(curves.train)})
    fell = -a.rel(a.smooth[-1], a.start_level)
    text = f"training loss {a.start_level:.4g} → {a.smooth[-1]:.4g} ({-fell * 100:+.0f}%)"
    ev: dict[str, Any] = {"train_start": float(a.start_level), "train_end": float(a.smooth[-1]),
                          "train_change": round(-fell, 4), "train_points": len(a.train)}
    level = float(a.smooth[-1])
    if a.val is not None:
        best = int(np.argmin(a.val.values))
        level = float(a.val.values[best])
        ev.update(best_val=level, best_step=int(a.val.steps[best]))
        text += f"; validation best {level:.4g} at step {int(a.val.steps[best])}"
    if len(a.train) < READ_POINTS or not a.learned_enough:
        ev["regime"] = "too_short"
        return Finding(
            id="T2", name="too short to tell", status="info", evidence=ev,
            summary=f"{text}: {len(a.train)} training points and a fall of {max(fell, 0):.0%} are too little to "
                    "tell learning from noise",
            fix=f"train longer: at least {READ_POINTS} logged steps, and until the loss has fallen by "
                f"{LEARNED_FRACTION:.0%}, with validation (T1); then read the curves again",
        )
    base = curves.baseline_loss
    late = a.train_trend(0.75)
    settled = late.n >= 4 and not late.falling(0.05)
    if base is not None and base > 0 and settled and level >= LITTLE_OF_BASELINE * base:
        ev.update(regime="learning_little", baseline_loss=base, of_baseline=round(level / base, 3))
        return Finding(
            id="T2", name="learning little", status="info", evidence=ev,
            summary=f"{text}: the loss settled at {level / base:.0%} of the {baseline_name(curves)} "
                    f"({_short(level)} vs {_short(base)}); a model that works usually gets far below it",
            cause="too little capacity, a learning rate far off, or a bug that still lets the model learn a "
                  "little (a mixed-up batch, a wrong input): curves alone cannot tell which",
            fix="compare with a stronger baseline or a known-good run; run `danlu check` (S2, S5, S10) and "
                "`danlu lr` (T4)",
        )
    ev["regime"] = "learning"
    return Finding(id="T2", name="learning normally", status="pass", summary=text,
                   evidence=ev)


def _short(value: float) -> str:
    return f"{value:.4g}"


def regime_of(finding: Finding) -> str:
    """The regime key of a diagnosis finding ("overfitting", "lr_decay", ...)."""
    return str(finding.evidence.get("regime", finding.name))


def primary_finding(report: Report) -> Finding | None:
    """The finding of the report's primary regime."""
    name = report.meta.get("regime")
    return next((f for f in report.findings if regime_of(f) == name), None)


#: The words for the regimes no rule owns (the rules' titles name the others).
_VERDICTS = {"learning": "learning normally", "too_short": "too short to tell", "learning_little": "learning little",
             "unknown": "too short to tell"}


def regime_title(key: str) -> str:
    """What a user reads for a regime key (a run summary's "diagnosis"): "lr_decay" -> "flat only from LR decay"."""
    rule = next((r for r in get_rules() if r.name == key), None)
    return rule.title if rule is not None else _VERDICTS.get(key, key)


def headline(finding: Finding) -> str:
    """A few words for a progress display or a warning: "overfitting since step 1200" (the regime's
    title, never its internal key)."""
    since = finding.evidence.get("since_step")
    if regime_of(finding) in HEALTHY or since is None:
        return finding.name
    return f"{finding.name} since step {since}"


# --------------------------------------------------------------------- store
def curves_from_store(store, run_id: str, *, baseline_loss: float | None = None, final: bool = True,
                      task: str | None = None) -> Curves:
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
                          pick_series(names, LR_SERIES), pick_series(names, DATA_WAIT_SERIES)) if n]
    series = {n: store.read_series(run_id, n) for n in wanted}
    return Curves.from_series(series, baseline_loss=baseline_loss, final=final, task=task)


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
    curves = curves_from_store(store, record.id, baseline_loss=base, final=record.status != "running",
                               task=record.summary.get("task"))
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
