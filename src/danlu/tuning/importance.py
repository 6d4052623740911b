"""What a study found: importance, range edges, isolation, failures, hypersensitivity.

Plain functions over Optuna's FrozenTrials and the study's Space, each returning small
dataclasses that the report turns into findings, tables and plots:

- :func:`comparable` picks the values to compare: the final validation losses when
  enough trials completed, else every trial's reported value at the first pruning rung
  (pruned trials included: all were trained equally long up to there).
- :func:`importance` ranks the varied hyperparameters with Optuna's fANOVA (fraction of
  the objective's variance each explains alone; PED-ANOVA when scikit-learn is absent)
  and says in plain words which matter (H1).
- :func:`edges` flags a best value at the edge of its range ("widen the range", H2).
- :func:`isolation` gives, per bucket of a scientific hyperparameter, the best trial
  with the nuisance hyperparameters optimised away (H2).
- :func:`outcomes` counts completed / pruned / diverged / NaN / failed trials.
- :func:`hypersensitivity` warns when nearly every hyperparameter matters (H5).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from danlu.tuning.space import Param, Space

__all__ = [
    "Point", "Comparable", "Importance", "Edge", "Bucket",
    "comparable", "importance", "verdict", "edges", "isolation", "outcomes",
    "hypersensitivity", "relative_spread", "MATTERS_SHARE", "MIN_SPREAD",
]

#: A hyperparameter "matters" when it explains at least this share of the explained
#: variance (and at least a quarter of an even share, 0.25/d, when few are varied).
MATTERS_SHARE = 0.1
#: Below this relative spread ((q90 - q10) / |median|) the objective barely moves.
MIN_SPREAD = 0.02


@dataclass
class Point:
    number: int
    params: dict[str, Any]
    value: float


@dataclass
class Comparable:
    """Values measured at one scale, so they can be compared; `basis` says which."""

    points: list[Point]
    basis: str                   # "final" or "step"
    step: int | None = None

    def describe(self) -> str:
        if self.basis == "final":
            return f"the best validation loss of {len(self.points)} completed trials"
        return f"the validation probe loss at step {self.step} of {len(self.points)} trials"

    @property
    def best(self) -> Point | None:
        return min(self.points, key=lambda p: (p.value, p.number)) if self.points else None


@dataclass
class Importance:
    name: str
    share: float                 # share of the explained variance (sums to 1)
    raw: float                   # fraction of variance explained alone (fANOVA) / raw PED-ANOVA
    matters: bool = False
    p: float = 0.0               # Kruskal-Wallis p-value of the objective across its terciles


@dataclass
class Edge:
    name: str
    value: Any
    side: str                    # "low" | "high"
    token: str                   # the range as given
    matters: bool

    def message(self) -> str:
        where = "bottom" if self.side == "low" else "top"
        return (f"best {self.name}={_fmt(self.value)} is at the {where} edge of its range "
                f"({self.token.split('=', 1)[1]}): the best may lie beyond it")

    def fix(self, param: Param) -> str:
        if param.kind == "choice":
            return f"add choices {'below' if self.side == 'low' else 'above'} {_fmt(self.value)} to --vary {param.name}=..."
        lo, hi = float(param.low), float(param.high)
        if param.log:
            span = math.log10(hi / lo)
            widen = 10 ** max(1, round(span / 2))
            lo2, hi2 = (lo / widen, hi) if self.side == "low" else (lo, hi * widen)
        else:
            width = hi - lo
            lo2, hi2 = (lo - width, hi) if self.side == "low" else (lo, hi + width)
            if lo >= 0 and lo2 < 0:
                lo2 = 0.0
            if lo >= 0 and hi < 1 and hi2 >= 1:   # a fraction (dropout, momentum): halfway to 1, never 1
                hi2 = round((hi + 1) / 2, 6)
        new = Param(param.name, param.kind, low=type(param.low)(lo2) if param.kind == "int" else lo2,
                    high=type(param.high)(hi2) if param.kind == "int" else hi2, log=param.log)
        return f"widen the range: --vary {new.token()}"


@dataclass
class Bucket:
    label: str
    count: int
    best: float | None
    best_number: int | None
    best_params: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------- comparable
def comparable(trials: Sequence[Any], min_complete: int) -> Comparable:
    """Final values when at least `min_complete` trials completed; otherwise the reported
    value at the largest step that at least 80% of the non-failed trials reached."""
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                and math.isfinite(t.value) and "seeded_from" not in t.user_attrs]
    if len(complete) >= min_complete:
        return Comparable([Point(t.number, dict(t.params), float(t.value)) for t in complete], "final")
    live = _one_per_point([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                           and t.intermediate_values and "seeded_from" not in t.user_attrs])
    if not live:
        return Comparable([Point(t.number, dict(t.params), float(t.value)) for t in complete], "final")
    steps = sorted({s for t in live for s in t.intermediate_values})
    chosen = None
    for s in steps:
        if sum(1 for t in live if s in t.intermediate_values) >= 0.8 * len(live):
            chosen = s
    if chosen is None:
        chosen = steps[0]
    points = [Point(t.number, dict(t.params), float(t.intermediate_values[chosen]))
              for t in live if chosen in t.intermediate_values and math.isfinite(t.intermediate_values[chosen])]
    if len(points) <= len(complete):
        return Comparable([Point(t.number, dict(t.params), float(t.value)) for t in complete], "final")
    return Comparable(points, "step", chosen)


def _one_per_point(trials: Sequence[Any]) -> list[Any]:
    """A point trained more than once (the rounds of a tune study's exploration) counts once, by
    the trial that trained it furthest: the same point twice would weigh double."""
    furthest: dict[Any, Any] = {}
    for t in trials:
        key = t.user_attrs.get("point", ("trial", t.number))
        if key not in furthest or max(t.intermediate_values) > max(furthest[key].intermediate_values):
            furthest[key] = t
    return sorted(furthest.values(), key=lambda t: t.number)


def relative_spread(values: Sequence[float]) -> float:
    """(90th - 10th percentile) / |median|: how much the objective moves over the space."""
    vals = sorted(values)
    if len(vals) < 2:
        return 0.0
    q = statistics.quantiles(vals, n=10, method="inclusive")
    med = statistics.median(vals)
    return (q[-1] - q[0]) / max(abs(med), 1e-12)


# --------------------------------------------------------------- importance
def importance(comp: Comparable, space: Space, seed: int = 0) -> list[Importance]:
    """Importance of each varied hyperparameter, most important first (H1).

    fANOVA (Optuna's FanovaImportanceEvaluator, seeded): the fraction of the objective's
    variance each hyperparameter explains on its own. Needs 3+ points; with one varied
    hyperparameter it trivially gets everything.
    """
    import optuna

    names = space.names
    if len(names) == 1:
        return [Importance(names[0], 1.0, 1.0, matters=True)]
    if len(comp.points) < 3:
        return []
    dists = space.distributions()
    study = optuna.create_study(direction="minimize")
    trials = []
    for p in comp.points:
        params = {k: p.params[k] for k in names if k in p.params}
        if len(params) != len(names):
            continue
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=p.value))
    study.add_trials(trials)
    try:
        import sklearn  # noqa: F401

        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    except ImportError:  # pragma: no cover - scikit-learn is in the study extra's tests
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    raw = optuna.importance.get_param_importances(study, evaluator=evaluator, params=names, normalize=False)
    total = sum(max(0.0, v) for v in raw.values())
    out = [Importance(k, float(max(0.0, v) / total) if total > 0 else 0.0, float(v)) for k, v in raw.items()]
    out.sort(key=lambda i: (-i.share, names.index(i.name)))
    threshold = max(MATTERS_SHARE, 0.25 / len(names))
    for imp in out:
        imp.p = significance(comp, space.get(imp.name))  # gates H5 only: too weak to gate H1 on
        imp.matters = bool(imp.share >= threshold)
    return out


#: Comparable trials needed per varied hyperparameter before "X does not matter" or an H5
#: warning is said: with fewer, fANOVA spreads importance over noise (a healthy digits
#: exploration of 12 trials looked sensitive to all three of its hyperparameters).
POINTS_PER_PARAM = 8

#: H5 also needs each hyperparameter's effect to be significant on its own: Kruskal-Wallis
#: p-value over terciles of its range below this.
H5_MAX_P = 0.05


def significance(comp: Comparable, param: Param) -> float:
    """Kruskal-Wallis p-value of the objective grouped by the parameter: terciles of its
    range (on the sampling scale) or its choices. Rank-based, so a few huge losses
    (diverging corners) do not decide it. 1.0 when fewer than two groups have 2+ points."""
    from scipy.stats import kruskal

    groups: dict[Any, list[float]] = {}
    for pt in comp.points:
        value = pt.params.get(param.name)
        if value is None:
            continue
        if param.kind == "choice":
            key = value
        else:
            pos = param.position(value) or 0.0
            key = min(2, int(pos * 3))
        groups.setdefault(key, []).append(pt.value)
    usable = [g for g in groups.values() if len(g) >= 2]
    if len(usable) < 2 or len({v for g in usable for v in g}) < 2:
        return 1.0
    return float(kruskal(*usable).pvalue)


def enough_points(n_points: int, n_params: int) -> bool:
    return n_points >= POINTS_PER_PARAM * n_params


def verdict(imps: Sequence[Importance], spread: float, n_points: int | None = None) -> str:
    """'lr and weight_decay matter; batch_size does not here' (H1); with too few trials
    for that, only the ranking."""
    if imps and n_points is not None and len(imps) > 1 and not enough_points(n_points, len(imps)):
        return (f"{_join([i.name for i in imps])}, in order of importance; {n_points} comparable trials are too few "
                f"to say which do not matter (run {POINTS_PER_PARAM * len(imps)} or more)")
    if not imps:
        return "too few comparable trials to rank the hyperparameters; run more trials"
    if spread < MIN_SPREAD:
        return (f"the objective hardly moves over this space (spread {spread:.1%}): no varied "
                "hyperparameter matters here; widen the ranges or vary others")
    yes = [i.name for i in imps if i.matters]
    no = [i.name for i in imps if not i.matters]
    text = f"{_join(yes)} {'matters' if len(yes) == 1 else 'matter'}"
    if no:
        text += f"; {_join(no)} {'does' if len(no) == 1 else 'do'} not here"
    return text


def hypersensitivity(imps: Sequence[Importance], spread: float, min_params: int = 3,
                     n_points: int | None = None) -> bool:
    """H5: the objective moves a lot and nearly every varied hyperparameter matters (all of
    them, or all but one when 5 or more are varied). A healthy set-up is usually
    dominated by one or two (often the learning rate)."""
    if len(imps) < min_params or spread < MIN_SPREAD:
        return False
    if n_points is not None and not enough_points(n_points, len(imps)):
        return False
    n = len(imps)
    needed = n if n < 5 else n - 1
    # fANOVA shares always add up to 1, so three healthy hyperparameters can all clear the
    # share threshold on noise (a 24-trial digits exploration gave lr 0.48, dropout 0.35,
    # hidden 0.17). A hypersensitive set-up also moves the objective significantly along
    # every one of them (rank test over terciles of each range), which noise does not.
    return sum(1 for i in imps if i.matters and i.p < H5_MAX_P) >= needed


# -------------------------------------------------------------------- edges
def edges(best: Point | None, space: Space, imps: Sequence[Importance] = ()) -> list[Edge]:
    """Numeric hyperparameters whose best value lies in the outer tenth of the range (an
    ordered choice list: its first or last choice)."""
    if best is None:
        return []
    matters = {i.name: i.matters for i in imps}
    out = []
    for p in space:
        if p.name not in best.params:
            continue
        side = p.edge(best.params[p.name])
        if side:
            out.append(Edge(p.name, best.params[p.name], side, p.token(), matters.get(p.name, True)))
    return out


# ---------------------------------------------------------------- isolation
def isolation(comp: Comparable, param: Param, buckets: int = 5) -> list[Bucket]:
    """Best value per bucket of a scientific hyperparameter, nuisance ones optimised away."""
    if param.kind == "choice":
        groups = {c: [p for p in comp.points if p.params.get(param.name) == c] for c in param.choices}
        labels = {c: _fmt(c) for c in param.choices}
    else:
        edges_ = [i / buckets for i in range(buckets + 1)]
        groups, labels = {}, {}
        for b in range(buckets):
            lo_pos, hi_pos = edges_[b], edges_[b + 1]
            members = [p for p in comp.points if p.params.get(param.name) is not None
                       and lo_pos <= (param.position(p.params[param.name]) or 0.0) <= hi_pos
                       and (b == buckets - 1 or (param.position(p.params[param.name]) or 0.0) < hi_pos)]
            groups[b] = members
            labels[b] = f"{_fmt(_at(param, lo_pos))}..{_fmt(_at(param, hi_pos))}"
    out = []
    for key, members in groups.items():
        best = min(members, key=lambda p: (p.value, p.number)) if members else None
        out.append(Bucket(labels[key], len(members), best.value if best else None,
                          best.number if best else None, dict(best.params) if best else {}))
    return out


def _at(param: Param, pos: float) -> float:
    lo, hi = float(param.low), float(param.high)
    if param.log:
        return math.exp(math.log(lo) + pos * (math.log(hi) - math.log(lo)))
    value = lo + pos * (hi - lo)
    return round(value) if param.kind == "int" else value


# ----------------------------------------------------------------- outcomes
OUTCOMES = ("complete", "pruned", "diverged", "nan", "failed", "crashed")


def outcomes(trials: Sequence[Any]) -> dict[str, int]:
    """Trials per outcome; 'crashed' ones were re-queued and run again."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for t in trials:
        if "seeded_from" in t.user_attrs:
            continue
        key = t.user_attrs.get("outcome") or t.state.name.lower()
        if key == "interrupted":
            key = "crashed"
        if key in ("running", "waiting"):
            continue
        counts[key if key in counts else "failed"] += 1
    return counts


def _join(names: Sequence[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
