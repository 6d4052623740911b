"""Synchronous successive halving over a tune study's exploration (H2, H4).

Tune mode explores its quasi-random points in rounds, as successive halving was first
written (Jamieson & Talwalkar 2016; Optuna's SuccessiveHalvingPruner is its asynchronous
form): every point trains to the first rung, the best third of them to the next rung, and
so on until one trains its full length. Each round is judged once all of its trials have
ended, so every decision compares all the points of the round.

Why not asynchronous: an asynchronous rung can only compare a trial with those that came
before it, so it must let the first few run to the end unjudged (at least three per rung,
`objective.min_trials_per_rung`); the first three trials of a study then each cost a full
trial whether they were good or not. With 9 points and rungs at B/9 and B/3 of a trial's
B steps the rounds cost 9 x B/9 + 3 x 2B/9 + 1 x 2B/3 = about 2.3 full trials, and the one
full trial is the best point of nine, not the first one drawn
(benchmarks/study_efficiency.py).

A promoted point goes on from the last checkpoint of the trial that screened it (the trial
user attribute ``promoted_from``; objective.run_trial, engine.fit's ``branch_from``), as a new
trial whose run starts with the screened trial's curve: it trains exactly as it would have
from its first step, and pays only the steps it adds. Where that checkpoint is gone, it
trains from its first step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["QUEUE_ATTRS", "value_at", "next_round"]

#: The user attributes that say which queued point a trial trains; a trial queued again
#: (its worker died, Ctrl-C) keeps them.
QUEUE_ATTRS = ("point", "from_trial", "round", "stop_at", "promoted_from")


def value_at(trial, rung: int) -> float | None:
    """What the trial reported at a rung: its first report at or after the rung's step."""
    steps = [s for s in trial.intermediate_values if s >= rung]
    if not steps:
        return None
    value = trial.intermediate_values[min(steps)]
    return float(value) if math.isfinite(value) else None


def next_round(trials: Sequence[Any], rungs: Sequence[int], factor: int) -> list[tuple[dict, dict]] | None:
    """The trials to queue next, as (params, user attrs); [] while a round is still running;
    None once the last round (the points that train to their end) is queued.

    `rungs` are the steps the rounds stop at (`spec.rung_steps`, below a trial's last step).
    Round r's points (user attr ``round``) are ranked by what they reported at rung r; the
    best ceil(n / factor) that ended early go on to round r + 1 (to the next rung, or to
    their end after the last rung or when only one goes on). Points already queued for the next round are not queued
    twice, so the same call after a crash completes a round, never repeats it. Points that
    failed (NaN, divergence) never go on; ties keep the lower trial number.
    """
    from optuna.trial import TrialState

    for r in range(len(rungs)):
        mine = [t for t in trials if t.user_attrs.get("round") == r]
        if not mine or not any("stop_at" in t.user_attrs for t in mine):
            return None  # nothing went on, or the last round (to the end) is queued: TPE may start beside it
        if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in mine):
            return []  # the round has not ended: nothing is decided yet
        ranked: dict[Any, tuple[float, int, Any]] = {}
        for t in mine:
            value = value_at(t, rungs[r])
            if t.state != TrialState.PRUNED or value is None:
                continue  # completed (nothing left to train), failed, or crashed before the rung
            point = t.user_attrs.get("point")
            if point not in ranked or (value, t.number) < ranked[point][:2]:
                ranked[point] = (value, t.number, t)
        points = {t.user_attrs.get("point") for t in mine}
        keep = sorted(ranked.values(), key=lambda x: x[:2])[: math.ceil(len(points) / factor)]
        queued = {t.user_attrs.get("point") for t in trials if t.user_attrs.get("round") == r + 1}
        todo = []
        for _, number, t in keep:
            if t.user_attrs.get("point") in queued:
                continue
            attrs = {"point": t.user_attrs.get("point"), "round": r + 1, "promoted_from": number}
            if r + 1 < len(rungs) and len(keep) > 1:  # a round of one point has nothing to compare: to the end
                attrs["stop_at"] = rungs[r + 1]
            todo.append((dict(t.params), attrs))
        if todo:
            return todo
    return None
