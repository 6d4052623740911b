"""What defines a study (its spec, validated), and the recipe of one trial.

The spec is stored as the study run's config and in the Optuna storage, so that
workers on other machines can rebuild it (:func:`danlu.tuning.storage.spec_from_storage`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from danlu.errors import DanluError
from danlu.tuning.space import Space, parse_vary

__all__ = ["pruning_plan", "rung_steps", "StudySpec", "StudyError", "MODES", "PRUNERS", "prepare_spec", "build_recipe"]

MODES = ("tune", "explore", "exploit")
PRUNERS = ("asha", "hyperband", "none")


class StudyError(DanluError):
    """A study cannot be created, found or resumed; the message says the fix."""


@dataclass
class StudySpec:
    """Everything that defines a study; stored as the study run's config and in Optuna."""

    name: str
    recipe: str                                   # "path.py" or "path.py:Class" (absolute)
    vary: list[str]                               # canonical --vary tokens
    fixed: dict[str, str] = field(default_factory=dict)
    trials: int = 16
    mode: str = "tune"                            # tune (QMC, then TPE) | explore (QMC) | exploit (TPE)
    prune: str = "asha"                           # asha | hyperband | none
    min_resource: int = 0                         # steps before any trial may be pruned
    reduction_factor: int = 3
    stages: list[float] = field(default_factory=lambda: [1.0])
    stage_on: str = "data"                        # data (data_fraction) | steps (step budget)
    keep: float = 1 / 3                           # fraction promoted to the next stage
    scientific: str | None = None
    seed: int = 0
    storage: str = ""                             # Optuna storage URL
    budget_steps: int = 0                         # full-scale steps of a trial at default batch size
    probe_every: int = 50                         # steps between reported values
    device: str = "cpu"
    source: str | None = None                     # exploit: the exploration it narrows
    seeded_trials: list[dict[str, Any]] = field(default_factory=list)  # exploit: explore results

    def space(self, recipe_cls: type | None = None) -> Space:
        return parse_vary(self.vary, recipe_cls)

    def vary_names(self) -> list[str]:
        return [t.partition("=")[0] for t in self.vary]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise StudyError(f"mode {self.mode!r} is not a mode; use one of {', '.join(MODES)}.")
        if self.prune not in PRUNERS:
            raise StudyError(f"prune {self.prune!r} is not a pruner; use one of {', '.join(PRUNERS)}.")
        if self.trials < 1:
            raise StudyError(f"trials must be at least 1, got {self.trials}.")
        if not self.stages or any(not (0 < f <= 1) for f in self.stages) or self.stages != sorted(self.stages):
            raise StudyError(
                f"stages {','.join(map(str, self.stages))} must be increasing fractions in (0, 1], "
                "e.g. 0.01,0.1,1.0."
            )
        if self.stage_on not in ("data", "steps"):
            raise StudyError(f"stage_on {self.stage_on!r}: use 'data' (training-set fraction) or 'steps' (step budget).")
        if not 0 < self.keep <= 1:
            raise StudyError(f"keep {self.keep} must be a fraction in (0, 1].")
        if self.reduction_factor < 2:
            raise StudyError("the pruning reduction factor must be at least 2.")
        if self.scientific and self.scientific not in self.space().names:
            raise StudyError(
                f"scientific {self.scientific} is not varied; vary it too ({self.scientific}=LOW..HIGH) "
                f"or pick one of {', '.join(self.space().names)}."
            )


def build_recipe(recipe_cls, fixed: dict[str, str], params: dict[str, Any]):
    """The trial's recipe: defaults, then --fix values (strings, typed by the fields), then params."""
    base = recipe_cls.from_strings(dict(fixed)).hparams()
    base.update(params)
    return recipe_cls(**base)


def pruning_plan(spec: StudySpec, min_resource: int, steps: int) -> str:
    """How pruning will go, in words: from which step, or why it cannot happen at all."""
    if spec.prune == "none":
        return "no pruning"
    if min_resource >= steps:
        return (f"no pruning can happen: trials of {steps} steps end before step {min_resource}, the first "
                f"at which one may be pruned (a trial reports every {spec.probe_every} steps, probe_every); "
                "lower --min-resource or probe_every")
    rungs = rung_steps(min_resource, spec.reduction_factor, steps)
    if not rungs:
        factor = spec.reduction_factor
        return (f"no pruning can happen: stopping a trial of {steps} steps at step {min_resource} (--min-resource, "
                f"a multiple of probe_every) would save less than 1/{factor} of it (that needs trials of "
                f"{-(-min_resource * factor // (factor - 1))} steps or more); lower --min-resource or probe_every")
    return (f"pruning ({spec.prune}) at step{'s' if len(rungs) > 1 else ''} {', '.join(map(str, rungs))} of {steps} "
            f"(--min-resource {min_resource}); a trial that reaches step {steps} is complete")


def rung_steps(min_resource: int, factor: int, steps: int) -> list[int]:
    """The steps at which a trial of `steps` steps may be pruned: min_resource * factor**j,
    where stopping still saves at least 1/factor of the trial (a rung at step 90 of 92 would
    throw away a trial that was all but paid for). The top rung is the full trial: reaching
    it completes the trial."""
    rungs, r = [], max(1, min_resource)
    while r * factor <= steps * (factor - 1):
        rungs.append(r)
        r *= factor
    return rungs


def prepare_spec(spec: StudySpec, recipe_cls) -> StudySpec:
    """Fill in what the recipe decides: the full-scale step budget of a trial, the probe
    interval (the reporting interval) and, unless given, the minimum resource before
    pruning (a ninth of the budget: rungs at B/9, B/3 and B with reduction 3)."""
    space = spec.space(recipe_cls)
    recipe = build_recipe(recipe_cls, spec.fixed, {})
    train, _ = recipe.data()
    n = len(train)
    batch = recipe.batch_size
    epochs = recipe.epochs
    if "batch_size" in space.names:
        p = space.get("batch_size")
        batch = int(min(p.choices) if p.kind == "choice" else p.low)
    if "epochs" in space.names:
        p = space.get("epochs")
        epochs = int(max(p.choices) if p.kind == "choice" else p.high)
    spec.budget_steps = max(1, epochs * math.ceil(n / max(1, batch)))
    spec.probe_every = max(1, int(recipe.probe_every))
    if not spec.min_resource:
        ninth = spec.budget_steps / spec.reduction_factor ** 2
        # the nearest whole probe interval (a rung is judged at a probe): rounding up moved the first
        # rung of a 92-step trial probed every 10 steps from B/9 to B/4.6
        spec.min_resource = max(spec.probe_every, int(round(ninth / spec.probe_every)) * spec.probe_every)
    spec.storage = spec.storage or ""
    return spec
