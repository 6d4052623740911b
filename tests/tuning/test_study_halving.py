"""Rounds of successive halving over a tune study's exploration (H2, H4), on synthetic trials:
who goes on, and that the same call after a crash completes a round without doubling it."""

from __future__ import annotations

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from danlu.tuning.halving import next_round

RUNGS = [10, 30]
DISTS = {"a": FloatDistribution(0, 1)}


def _trial(number, point, round_, value=None, state=TrialState.PRUNED, rung=10):
    attrs = {"point": point, "round": round_}
    if round_ < len(RUNGS):
        attrs["stop_at"] = RUNGS[round_]
    values = {} if value is None else {rung: value}
    t = create_trial(params={"a": point / 10}, distributions=DISTS, state=state, user_attrs=attrs,
                     value=value if state == TrialState.COMPLETE else None, intermediate_values=values)
    t.number = number
    return t


def test_the_best_third_of_a_round_goes_on_to_the_next_rung():
    first = [_trial(i, i, 0, value) for i, value in enumerate([5, 1, 4, 2, 9, 3, 8, 7])]
    todo = next_round(first, RUNGS, 3)
    assert [attrs["point"] for _, attrs in todo] == [1, 3, 5]                  # ceil(8 / 3) = 3 best, best first
    assert all(attrs == {"point": attrs["point"], "round": 1, "promoted_from": attrs["point"], "stop_at": 30}
               for _, attrs in todo)
    assert todo[0][0] == {"a": 0.1}


def test_the_last_round_trains_to_the_end_and_then_the_rounds_are_over():
    first = [_trial(i, i, 0, value) for i, value in enumerate([5, 1, 4, 2, 9, 3, 8, 7])]
    second = [_trial(8 + k, p, 1, value, rung=30) for k, (p, value) in enumerate([(1, 0.9), (3, 0.5), (5, 0.7)])]
    todo = next_round(first + second, RUNGS, 3)
    assert todo == [({"a": 0.3}, {"point": 3, "round": 2, "promoted_from": 9})]  # no stop_at: to its end
    final = _trial(11, 3, 2, 0.4, state=TrialState.RUNNING, rung=90)
    assert next_round(first + second + [final], RUNGS, 3) is None               # queued: TPE may start beside it


def test_a_round_of_one_goes_straight_to_the_end():
    first = [_trial(0, 0, 0, 2.0), _trial(1, 1, 0, 1.0), _trial(2, 2, 0, 3.0)]
    assert next_round(first, RUNGS, 3) == [({"a": 0.1}, {"point": 1, "round": 1, "promoted_from": 1})]


def test_nothing_is_decided_while_a_round_runs():
    first = [_trial(0, 0, 0, 2.0), _trial(1, 1, 0, 1.0), _trial(2, 2, 0, state=TrialState.RUNNING)]
    assert next_round(first, RUNGS, 3) == []


@pytest.mark.parametrize("state", [TrialState.FAIL, TrialState.COMPLETE])
def test_failed_and_finished_trials_never_go_on_but_count_in_the_round(state):
    """A NaN/diverged trial has nothing to promote; a trial whose last step came before its rung
    ended complete. Either still counts in n, so the best third of the round is ceil(n / 3)."""
    first = [_trial(0, 0, 0, 0.5, state=state), *[_trial(i, i, 0, float(i)) for i in range(1, 6)]]
    todo = next_round(first, RUNGS, 3)
    assert [attrs["point"] for _, attrs in todo] == [1, 2]


def test_the_same_call_after_a_crash_completes_a_round_without_doubling_it():
    first = [_trial(i, i, 0, value) for i, value in enumerate([5, 1, 4, 2, 9, 3, 8, 7])]
    queued_before_crash = [_trial(8, 1, 1, state=TrialState.WAITING)]
    todo = next_round(first + queued_before_crash, RUNGS, 3)
    assert [attrs["point"] for _, attrs in todo] == [3, 5]


def test_a_point_run_twice_in_a_round_counts_once():
    """A trial re-queued after its worker died leaves a failed twin with the same point."""
    first = [_trial(i, i, 0, float(i)) for i in range(6)]
    twin = _trial(6, 0, 0, state=TrialState.FAIL)
    assert [attrs["point"] for _, attrs in next_round(first + [twin], RUNGS, 3)] == [0, 1]


def test_a_round_trial_whose_worker_died_is_queued_again_in_its_round():
    """`danlu study --resume`: the point goes back into the same round, to the same rung."""
    import optuna

    from danlu.tuning.objective import _pop_waiting
    from danlu.tuning.storage import requeue_stale

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.enqueue_trial({"a": 0.4}, user_attrs={"point": 4, "round": 1, "stop_at": 30, "promoted_from": 2})
    trial = _pop_waiting(study)
    study._storage.set_trial_user_attr(trial._trial_id, "worker", {"pid": 2**22 + 7, "host": "elsewhere"})
    study._storage.set_trial_user_attr(trial._trial_id, "heartbeat", 0.0)   # silent since 1970: dead
    assert requeue_stale(study) == [trial.number]
    again = study.get_trials(states=(TrialState.WAITING,))
    assert len(again) == 1
    kept = {k: again[0].user_attrs[k] for k in ("point", "round", "stop_at", "promoted_from")}
    assert kept == {"point": 4, "round": 1, "stop_at": 30, "promoted_from": 2}
    assert again[0].user_attrs["requeue_of"] == trial.number


def test_a_worker_waiting_between_rounds_requeues_a_trial_whose_worker_died():
    """Otherwise the round would never end and every worker would wait out its limit."""
    import optuna

    from danlu.tuning.objective import _pop_waiting, _wait_for_next_round

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.enqueue_trial({"a": 0.2}, user_attrs={"point": 2, "round": 0, "stop_at": 10})
    lost = _pop_waiting(study)
    study._storage.set_trial_user_attr(lost._trial_id, "worker", {"pid": 2**22 + 7, "host": "elsewhere"})
    study._storage.set_trial_user_attr(lost._trial_id, "heartbeat", 0.0)
    assert _wait_for_next_round(study, {"rounds": RUNGS}) is True
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["point"] for t in waiting] == [2] and waiting[0].user_attrs["round"] == 0


def test_a_worker_in_the_coordinators_process_starts_the_next_round_without_waiting_for_its_poll(
        store, synth_path, monkeypatch):
    """One worker (the default): the worker that finds a round ended nudges the coordinator's
    look, so a round does not start up to a poll period late. With the poll at 10 minutes
    the rounds could not happen otherwise before the worker gave up (RUNG_WAIT_LIMIT)."""
    from danlu.tuning import objective
    from danlu.tuning import study as study_module
    from danlu.tuning.executors import Sequential
    from danlu.tuning.study import new_study

    monkeypatch.setattr(study_module, "ROUND_POLL", 600.0)
    monkeypatch.setattr(objective, "RUNG_WAIT_LIMIT", 20.0)
    waits, wait = [], objective._wait_for_next_round
    monkeypatch.setattr(objective, "_wait_for_next_round", lambda *a: waits.append(wait(*a)) or waits[-1])
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"epochs": "3"}, trials=10, name="nudged",
                      prune="asha", min_resource=2)
    study.run(Sequential())
    trials = study.optuna_study(0).get_trials(deepcopy=False)
    assert {t.user_attrs.get("round") for t in trials} >= {0, 1, 2}
    assert len(waits) >= 2 and all(waits)   # the worker waited for each round and never gave up
    assert any(t.user_attrs.get("phase") == "exploit" for t in trials)
    assert objective.round_keeper is None


def test_a_nudge_ticks_at_once():
    import threading

    from danlu.tuning.objective import Every

    ticked = threading.Event()
    with Every(600.0, ticked.set, "test-nudge") as every:
        every.nudge()
        assert ticked.wait(10.0)
