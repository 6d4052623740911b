"""What a study concludes (H1, H2, H5), on synthetic trials: no training, so it is fast.

Each rule is shown firing on a planted case and staying quiet on a healthy one.
"""

from __future__ import annotations

import random

from optuna.trial import TrialState, create_trial

from danlu.tuning import importance as A
from danlu.tuning.space import parse_vary

SPACE = parse_vary(["a=0..1", "b=0..1", "c=0..1"])


def _trials(objective, n=32, seed=0):
    """n trials at random points with objective(params) as their final value."""
    rng = random.Random(seed)
    dists = SPACE.distributions()
    out = []
    for i in range(n):
        params = {k: rng.random() for k in SPACE.names}
        t = create_trial(params=params, distributions=dists, value=objective(params, rng),
                         user_attrs={"outcome": "complete"})
        t.number = i
        out.append(t)
    return out


def only_a(p, rng):
    return 1.0 + 10 * (p["a"] - 0.3) ** 2 + 0.01 * rng.random()


def everything(p, rng):
    return 1.0 + 10 * (p["a"] - 0.3) ** 2 + 10 * (p["b"] - 0.7) ** 2 + 10 * (p["c"] - 0.2) ** 2


def flat(p, rng):
    return 1.0 + 0.001 * rng.random()


def test_importance_ranks_the_one_that_matters_first():
    comp = A.comparable(_trials(only_a), min_complete=8)
    imps = A.importance(comp, SPACE, seed=0)
    assert [i.name for i in imps][0] == "a"
    assert imps[0].share > 0.8 and imps[0].matters
    assert not any(i.matters for i in imps[1:])
    assert A.verdict(imps, A.relative_spread([p.value for p in comp.points])) == "a matters; b and c do not here"


def test_hypersensitivity_warns_when_everything_matters_and_only_then():
    # 48 trials: enough for every planted effect to be significant on its own (H5_MAX_P).
    planted = A.comparable(_trials(everything, n=48), min_complete=8)
    imps = A.importance(planted, SPACE)
    assert all(i.matters for i in imps)
    assert A.hypersensitivity(imps, A.relative_spread([p.value for p in planted.points]))
    healthy = A.comparable(_trials(only_a), min_complete=8)
    assert not A.hypersensitivity(A.importance(healthy, SPACE), A.relative_spread([p.value for p in healthy.points]))


def test_a_flat_objective_is_neither_important_nor_hypersensitive():
    comp = A.comparable(_trials(flat), min_complete=8)
    spread = A.relative_spread([p.value for p in comp.points])
    imps = A.importance(comp, SPACE)
    assert spread < A.MIN_SPREAD
    assert "hardly moves" in A.verdict(imps, spread)
    assert not A.hypersensitivity(imps, spread)


def test_shares_spread_by_stalled_trials_are_not_hypersensitivity():
    # Healthy: only a matters, but a fifth of the trials stall at chance level whatever b and c
    # are (as real explorations do). fANOVA then hands b and c shares over the threshold on
    # 9 of these 12 seeds; H5 must stay quiet because neither moves the objective significantly.
    def healthy(p, rng):
        stuck = 2.0 if rng.random() < 0.2 else 0.0
        return 1.0 + 3 * (p["a"] - 0.3) ** 2 + stuck

    spread_by_noise = 0
    for seed in range(12):
        comp = A.comparable(_trials(healthy, n=48, seed=seed), min_complete=8)
        imps = A.importance(comp, SPACE)
        spread_by_noise += all(i.matters for i in imps)
        assert not A.hypersensitivity(imps, A.relative_spread([p.value for p in comp.points]),
                                      n_points=len(comp.points)), seed
    assert spread_by_noise >= 6  # the trap is real: shares alone would have warned


def test_two_hyperparameters_are_not_hypersensitivity():
    two = parse_vary(["a=0..1", "b=0..1"])
    imps = [A.Importance("a", 0.5, 0.5, True), A.Importance("b", 0.5, 0.5, True)]
    assert not A.hypersensitivity(imps, 1.0)  # "every" needs at least three to mean something
    assert two.names == ["a", "b"]


def test_best_at_the_edge_of_its_range_is_flagged_with_a_wider_range():
    space = parse_vary(["lr=1e-5..1e-1:log", "b=0..1"])
    best = A.Point(0, {"lr": 0.09, "b": 0.5}, 0.1)
    edges = A.edges(best, space)
    assert [(e.name, e.side) for e in edges] == [("lr", "high")]
    assert "top edge" in edges[0].message()
    fix = edges[0].fix(space.get("lr"))
    assert fix.startswith("widen the range: --vary lr=1e-05..") and ":log" in fix
    assert A.edges(A.Point(0, {"lr": 1e-3, "b": 0.5}, 0.1), space) == []


def test_a_fraction_at_the_top_of_its_range_is_widened_short_of_1():
    """dropout=0..0.5 with its best at 0.49 (seen on a word LM): the fix said --vary dropout=0.0..1.0,
    a dropout that zeroes every unit. A range inside [0, 1) widens halfway to 1; others double."""
    space = parse_vary(["dropout=0..0.5", "momentum=0.8..0.99", "shift=-1..1"])
    best = A.Point(0, {"dropout": 0.49, "momentum": 0.985, "shift": 0.98}, 0.1)
    fixes = {e.name: e.fix(space.get(e.name)) for e in A.edges(best, space)}
    assert fixes["dropout"] == "widen the range: --vary dropout=0.0..0.75"
    assert fixes["momentum"] == "widen the range: --vary momentum=0.8..0.995"
    assert fixes["shift"] == "widen the range: --vary shift=-1.0..3.0"


def test_isolation_takes_the_best_trial_per_bucket():
    space = parse_vary(["bs=16,32,64", "a=0..1"])
    pts = [A.Point(0, {"bs": 16, "a": 0.9}, 3.0), A.Point(1, {"bs": 16, "a": 0.3}, 1.0),
           A.Point(2, {"bs": 64, "a": 0.5}, 2.0)]
    buckets = A.isolation(A.Comparable(pts, "final"), space.get("bs"))
    assert [(b.label, b.count, b.best, b.best_number) for b in buckets] == [
        ("16", 2, 1.0, 1), ("32", 0, None, None), ("64", 1, 2.0, 2)]
    ranged = A.isolation(A.Comparable(pts, "final"), space.get("a"), buckets=2)
    assert [(b.count, b.best) for b in ranged] == [(1, 1.0), (2, 2.0)]


def test_few_completed_trials_are_compared_at_the_first_rung():
    dists = SPACE.distributions()
    trials = []
    for i in range(6):
        state = TrialState.COMPLETE if i < 2 else TrialState.PRUNED
        t = create_trial(params={"a": i / 10, "b": 0.5, "c": 0.5}, distributions=dists, state=state,
                         value=float(i) if state == TrialState.COMPLETE else None,
                         intermediate_values={10: float(i), 30: float(i)} if i < 4 else {10: float(i)})
        t.number = i
        trials.append(t)
    comp = A.comparable(trials, min_complete=8)
    assert comp.basis == "step" and comp.step == 10 and len(comp.points) == 6
    assert "step 10" in comp.describe()


def test_a_point_trained_in_several_rounds_counts_once():
    """Rounds of successive halving train the best points again; each point is one trial's worth."""
    dists = SPACE.distributions()
    trials = []
    for number, (point, values) in enumerate([(0, {10: 1.0}), (1, {10: 2.0}), (2, {10: 3.0}),
                                              (0, {10: 1.0, 30: 0.5}), (0, {10: 1.0, 30: 0.5, 90: 0.4})]):
        t = create_trial(params={"a": point / 10, "b": 0.5, "c": 0.5}, distributions=dists,
                         state=TrialState.PRUNED, intermediate_values=values, user_attrs={"point": point})
        t.number = number
        trials.append(t)
    comp = A.comparable(trials, min_complete=8)
    assert comp.step == 10 and sorted(p.value for p in comp.points) == [1.0, 2.0, 3.0]
    assert [p.number for p in comp.points] == [1, 2, 4]  # point 0 by the trial that trained it furthest


def test_outcomes_are_counted():
    dists = SPACE.distributions()
    kinds = ["complete", "pruned", "diverged", "nan", "failed", "crashed", "complete"]
    trials = [create_trial(params={"a": 0.1, "b": 0.1, "c": 0.1}, distributions=dists,
                           state=TrialState.COMPLETE if k == "complete" else TrialState.FAIL,
                           value=1.0 if k == "complete" else None, user_attrs={"outcome": k}) for k in kinds]
    assert A.outcomes(trials) == {"complete": 2, "pruned": 1, "diverged": 1, "nan": 1, "failed": 1, "crashed": 1}


def test_too_few_trials_give_a_ranking_not_a_verdict_nor_an_h5_warning():
    # A healthy digits exploration of 12 trials once looked sensitive to all three of its
    # hyperparameters: fANOVA spreads importance over noise when points are few.
    comp = A.comparable(_trials(everything, n=12), min_complete=8)
    imps = A.importance(comp, SPACE)
    spread = A.relative_spread([p.value for p in comp.points])
    assert not A.hypersensitivity(imps, spread, n_points=len(comp.points))
    assert "too few to say which do not matter" in A.verdict(imps, spread, len(comp.points))
    # What stops it is the count of trials: the same importances with enough points warn.
    strong = [A.Importance(i.name, i.share, i.raw, True, p=0.001) for i in imps]
    assert not A.hypersensitivity(strong, spread, n_points=len(comp.points))
    assert A.hypersensitivity(strong, spread, n_points=A.POINTS_PER_PARAM * len(strong))
