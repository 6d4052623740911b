"""Staged scale (H3, H6): run every trial small, promote the best, grow the scale.

``--stages 0.01,0.1,1.0`` runs the study's trials on 1% of the training data (or of
the step budget with ``--stage-on steps``), promotes the best ``keep`` fraction
(default a third) to 10%, and the best of those to the full scale. Before each stage
after the first, the estimated time of that stage is printed, measured on the stage
just run (D8: estimate full training time from a 1/100 and 1/10 subset).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["StagePlan", "plan_stage", "promote", "estimate_stage_seconds", "parse_stages"]


@dataclass
class StagePlan:
    """What one stage runs: its scale, its step budget, where pruning may start."""

    index: int
    fraction: float
    data_fraction: float
    max_steps: int | None
    min_resource: int
    budget_steps: int

    def attrs(self) -> dict[str, Any]:
        return {"index": self.index, "fraction": self.fraction, "data_fraction": self.data_fraction,
                "max_steps": self.max_steps, "min_resource": self.min_resource,
                "budget_steps": self.budget_steps}


def parse_stages(text: str) -> list[float]:
    """'0.01,0.1,1.0' -> [0.01, 0.1, 1.0]; a clear error for anything else."""
    from danlu.tuning.spec import StudyError

    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise StudyError(f"stages {text!r}: write increasing fractions separated by commas, e.g. 0.01,0.1,1.0.") from None
    if not values or any(not 0 < v <= 1 for v in values) or values != sorted(set(values)):
        raise StudyError(f"stages {text!r}: each fraction must be in (0, 1] and larger than the one before, e.g. 0.01,0.1,1.0.")
    return values


def plan_stage(index: int, fraction: float, stage_on: str, budget_steps: int, min_resource: int,
               probe_every: int) -> StagePlan:
    """The stage's settings: data_fraction or max_steps scaled, min_resource scaled alike
    (never below one probe interval, so a pruning decision always has a reported value)."""
    budget = max(1, int(round(budget_steps * fraction)))
    if stage_on == "steps":
        data_fraction, max_steps = 1.0, (budget if fraction < 1 else None)
    else:
        data_fraction, max_steps = fraction, None
    scaled = int(math.ceil(min_resource * fraction)) if fraction < 1 else min_resource
    min_res = max(probe_every, int(math.ceil(scaled / probe_every)) * probe_every)
    return StagePlan(index, fraction, data_fraction, max_steps, min_res, budget)


def promote(trials: Sequence[Any], keep: float, minimum: int = 1) -> list[Any]:
    """The best `keep` fraction (at least `minimum`) of the completed trials, best first.
    Pruned, diverged and failed trials are never promoted. Ties keep the lower number."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
            and math.isfinite(t.value)]
    done.sort(key=lambda t: (t.value, t.number))
    count = max(minimum, int(math.ceil(len(done) * keep)))
    return done[:count]


def estimate_stage_seconds(trials: Sequence[Any], prev_fraction: float, next_fraction: float,
                           n_next: int, workers: int) -> float | None:
    """Wall time of the next stage (D8), measured on the completed trials of the stage
    just run: each trial's training-loop time grows with the scale, its set-up time
    (data, model, reproducibility record) does not. None when nothing was measured."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("seconds")]
    if not done or n_next <= 0:
        return None
    wall = [float(t.user_attrs["seconds"]) for t in done]
    loop = [min(float(t.user_attrs.get("train_seconds", w)), w) for t, w in zip(done, wall)]
    setup = sum(w - lp for w, lp in zip(wall, loop)) / len(done)
    per_trial = setup + sum(loop) / len(done) * (next_fraction / prev_fraction)
    return per_trial * math.ceil(n_next / max(1, workers))
