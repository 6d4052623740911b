"""Studies end to end on a synthetic recipe (issue 7): trials are runs, pruning stops the
right trials (H4), NaN/divergence stop at once, stages promote the best (H3), the
study is stored and shown with the command that reproduces its best trial."""

from __future__ import annotations

import json
import math

import pytest
from optuna.trial import TrialState

from danlu.tuning.executors import Sequential
from danlu.tuning.storage import load_optuna_study
from danlu.tuning.study import explore_points, new_study


def _phases(report):
    return next(f for f in report.findings if f.name == "explore, then exploit")


def _trials(store, name, stage=0):
    from danlu.tuning.spec import StudySpec
    from danlu.tuning.storage import local_storage_url, open_storage

    spec = StudySpec.from_dict(store.get_run(name).config)
    storage = open_storage(spec.storage or local_storage_url(store.root))
    return sorted(load_optuna_study(storage, name, stage).get_trials(deepcopy=False), key=lambda t: t.number)


def test_an_exploration_stores_runs_report_and_the_reproducing_command(store, synth_path, cli, capsys, monkeypatch):
    code = cli(str(synth_path), "--vary", "a=0..1", "b=0..1", "--trials", "6", "--name", "expl",
               "--prune", "none", "--store", str(store.root), "--json")
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code == 0
    assert captured.err.count("no pruning") == 1   # the plan is said once, in the stage's line
    record = store.get_run("expl")
    assert record.kind == "study" and record.status == "finished"
    runs = store.list_runs(tags=["study:expl"], kind="train")
    assert len(runs) == 6 and all(r.status == "finished" for r in runs)
    assert all(r.repro for r in (store.get_run(r.id) for r in runs))  # each trial keeps its record (E1)
    trials = _trials(store, "expl")
    assert [t.user_attrs["point"] for t in trials] == list(range(6))  # trial i ran Sobol point i
    best = min(trials, key=lambda t: t.value)
    assert out["meta"]["best"]["trial"] == best.number
    command = out["meta"]["command"]
    assert command.startswith("danlu train ") and f"a={best.params['a']!r}" in command
    assert {"axes.png", "history.png"} <= set(out["images"])
    for image in out["images"]:
        assert (store.run_dir(record.id) / image).stat().st_size > 1000
    assert store.list_reports(run_id=record.id, kind="study")
    # `danlu study show` prints the same study, with the command
    from danlu.console import console

    monkeypatch.setattr(console, "width", 80)
    assert cli("show", "expl", "--store", str(store.root)) == 0
    shown = capsys.readouterr().out
    assert "reproduce the best trial" in shown and "danlu train" in shown and "trials" in shown
    # the command is longer than the 80-column console, and stays one line a user can paste
    assert len(command) > 80 and command in [line.strip() for line in shown.splitlines()]


def test_pruning_stops_the_trials_whose_loss_is_worse_and_never_before_min_resource(store, synth_path):
    # val loss = training mse + 10 (a - 0.3)^2: trials far from a = 0.3 are hopeless from the start.
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"epochs": "3"}, trials=9, name="prune",
                      prune="asha", min_resource=2, mode="explore")  # pruned as they go (tune: in rounds)
    report = study.run(Sequential())
    trials = _trials(store, "prune")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and done
    closest = min(trials, key=lambda t: abs(t.params["a"] - 0.3))
    assert closest.state == TrialState.COMPLETE  # the best trial is never killed
    assert all(t.user_attrs["steps"] >= 2 for t in pruned)  # the stated minimum resource
    # each pruned trial was worse, at its last rung, than the best trial started before it
    for t in pruned:
        earlier = [u for u in trials if u.number < t.number]
        step = max(t.intermediate_values)
        assert any(step in u.intermediate_values and u.intermediate_values[step] < t.intermediate_values[step]
                   for u in earlier)
        assert store.get_run(t.user_attrs["run_id"]).status == "stopped"
        assert "pruned by asha" in store.get_run(t.user_attrs["run_id"]).summary["stop_reason"]
    assert report.finding("H4").evidence["pruned"] == len(pruned)


def test_diverging_and_nan_trials_are_stopped_at_once(store, synth_path):
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"explode": "0.8", "nan_below": "0.15", "epochs": "3"},
                      trials=8, name="div", prune="none")
    report = study.run(Sequential())
    trials = _trials(store, "div")
    for t in trials:
        a, outcome = t.params["a"], t.user_attrs["outcome"]
        if a >= 0.8:
            assert outcome == "diverged" and t.state == TrialState.FAIL
        elif a <= 0.15:
            assert outcome == "nan" and t.state == TrialState.FAIL
        else:
            assert outcome == "complete"
        if outcome == "nan":
            assert t.user_attrs["steps"] <= 1  # stopped at the NaN step, not at the end (12 steps)
        if outcome == "diverged":  # as soon as the divergence test may fire (after its 5-step warm-up)
            assert t.user_attrs["steps"] <= 6 and "diverged: smoothed training loss" in t.user_attrs["reason"]
        if outcome != "complete":
            assert store.get_run(t.user_attrs["run_id"]).status == "failed"
    bad = sum(1 for t in trials if t.user_attrs["outcome"] != "complete")
    assert 0 < bad < len(trials)
    assert report.finding("T2").evidence["diverged"] + report.finding("T2").evidence["nan"] == bad


def test_stages_promote_the_best_third_and_print_an_eta(store, synth_path, capsys):
    from danlu.console import console

    study = new_study(store, str(synth_path), ["a=0..1"], trials=6, name="staged", prune="none",
                      stages=[0.5, 1.0])
    report = study.run(Sequential(), console=console)
    first, second = _trials(store, "staged", 0), _trials(store, "staged", 1)
    ranked = sorted((t for t in first if t.state == TrialState.COMPLETE), key=lambda t: (t.value, t.number))
    assert [t.user_attrs["from_trial"] for t in second] == [t.number for t in ranked[:2]]
    assert [t.params for t in second] == [t.params for t in ranked[:2]]
    out = capsys.readouterr().out
    assert "stage 2/2: 2 trials at full scale, estimated" in out
    runs = {r.name: store.get_run(r.id) for r in store.list_runs(tags=["study:staged"], kind="train")}
    assert len(runs) == 8
    assert report.finding("H3").summary.startswith("6 trials at 0.5 -> 2 trials at 1")
    assert report.meta["best"]["stage"] == 2


def test_a_stage_cut_to_a_step_budget_keeps_its_weights(store, synth_path):
    """--stage-on steps: a first-stage trial stops before any epoch's end has put its weights in
    best.pt, so it keeps last.pt (later stages' trials end at their epochs' ends: best.pt)."""
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"epochs": "3"}, trials=3, name="stepped",
                      prune="none", stages=[0.1, 1.0], stage_on="steps")
    study.run(Sequential())
    for index in (0, 1):
        for t in _trials(store, "stepped", index):
            folder = store.run_dir(t.user_attrs["run_id"], create=False) / "checkpoints"
            assert (folder / ("last.pt" if index == 0 else "best.pt")).exists(), (index, t.number)


def test_bad_input_is_exit_code_2_with_the_fix(store, synth_path, cli, capsys):
    assert cli(str(synth_path), "--vary", "a=1..0", "--store", str(store.root)) == 2
    assert "LOW < HIGH" in capsys.readouterr().err
    assert cli(str(synth_path), "--vary", "zz=0..1", "--store", str(store.root)) == 2
    assert "Valid fields" in capsys.readouterr().err
    assert cli(str(synth_path), "--store", str(store.root)) == 2
    assert "--vary" in capsys.readouterr().err
    assert cli(str(synth_path), "--vary", "a=0..1", "--stages", "1.0,0.1", "--store", str(store.root)) == 2
    assert cli("show", "nope", "--store", str(store.root)) == 2


def test_missing_ray_names_the_extra(monkeypatch):
    import builtins

    from danlu.errors import MissingExtra
    from danlu.tuning.executors import RayExecutor
    from danlu.tuning.objective import WorkerJob

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(__import__("sys").modules, "ray", raising=False)
    with pytest.raises(MissingExtra, match=r"pip install 'danlu\[ray\]'"):
        RayExecutor("local").run(WorkerJob(store="x", storage="journal:/nonexistent", name="n"), 1)


def test_a_trial_that_reached_its_full_budget_is_complete_never_pruned(store, synth_path):
    """H4: with 9 steps and rungs at 1, 3 and 9 the top rung is the trial's end; reaching it
    completes the trial (it was paid for in full), whatever its value there."""
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"epochs": "9", "batch_size": "32"}, trials=14,
                      name="top", prune="asha", min_resource=1, mode="explore")
    study.run(Sequential())
    trials = _trials(store, "top")
    assert {t.user_attrs["total_steps"] for t in trials} == {9}
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned                                                   # pruning did happen, at earlier rungs
    assert all(t.user_attrs["steps"] < 9 for t in pruned)
    assert all(t.state == TrialState.COMPLETE for t in trials if t.user_attrs["steps"] == 9)


def test_a_rung_prunes_only_after_enough_earlier_trials_reached_it(store, synth_path):
    """H4: 'not among the best third' needs at least 2 x 3 earlier trials at the rung; with
    fewer, one lucky early trial would stop every trial after it."""
    from danlu.tuning.objective import min_trials_per_rung

    need = min_trials_per_rung(3)
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"epochs": "3"}, trials=12, name="rung",
                      prune="asha", min_resource=2, mode="explore")
    study.run(Sequential())
    trials = _trials(store, "rung")
    assert all(t.state == TrialState.COMPLETE for t in trials[:need])
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned
    for t in pruned:
        step = max(t.intermediate_values)
        earlier = [u for u in trials if u.number < t.number and any(s >= step for s in u.intermediate_values)]
        assert len(earlier) >= need


def test_tune_spends_what_pruning_saved_on_tpe_trials_and_reports_both_phases(store, synth_path):
    """H2: explore the Sobol points, then TPE trials in the same study until trials x steps are spent."""
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"epochs": "3"}, trials=10, name="tune",
                      prune="asha", min_resource=2)
    assert study.spec.mode == "tune"                                 # the default
    report = study.run(Sequential())
    trials = _trials(store, "tune")
    explore = [t for t in trials if "point" in t.user_attrs]
    exploit = [t for t in trials if t.user_attrs.get("phase") == "exploit"]
    first_round = [t.user_attrs["point"] for t in explore if t.user_attrs["round"] == 0]
    assert first_round == list(range(explore_points(10))) and exploit
    assert min(t.number for t in exploit) > max(t.number for t in explore)   # exploitation comes after
    per_trial = trials[0].user_attrs["total_steps"]
    budget = 10 * per_trial
    spent = sum(t.user_attrs["steps"] for t in trials)
    assert budget - 2 < spent <= budget + per_trial   # spent: less than one first rung (2 steps) left over
    phases = _phases(report)
    assert phases.evidence["budget"] == budget
    assert phases.evidence["explore"]["steps"] + phases.evidence["exploit"]["steps"] == spent
    assert phases.evidence["exploit"]["trials"] == len(exploit)
    # importance (H1) is judged on the even exploration only; the best trial may come from either phase
    best = min((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: (t.value, t.number))
    assert report.meta["best"]["trial"] == best.number


def test_tune_explores_in_rounds_that_each_keep_the_best_third(store, synth_path):
    """H2/H4: every point trains to the first rung; the best third of them, judged together once
    the round has ended, go on to the next rung; the best of those trains to its end.
    Only then do TPE trials start. 12-step trials, rungs at 2 and 6."""
    from danlu.tuning.halving import value_at

    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"epochs": "3"}, trials=10, name="rounds",
                      prune="asha", min_resource=2)
    report = study.run(Sequential())
    trials = _trials(store, "rounds")
    rounds = [[t for t in trials if t.user_attrs.get("round") == r] for r in range(3)]
    assert [len(r) for r in rounds] == [explore_points(10), 3, 1]
    assert all(t.state == TrialState.PRUNED and t.user_attrs["steps"] == 2 for t in rounds[0])
    # a promoted point goes on from where its screened trial stopped: only the new steps are paid
    assert all(t.state == TrialState.PRUNED and t.user_attrs["steps"] == 4 and t.user_attrs["from_step"] == 2
               for t in rounds[1])
    assert rounds[2][0].state == TrialState.COMPLETE and rounds[2][0].user_attrs["steps"] == 6
    assert rounds[2][0].user_attrs["from_step"] == 6
    # each round kept the best third of the one before, judged at that round's rung
    best3 = sorted(rounds[0], key=lambda t: value_at(t, 2))[:3]
    assert sorted(t.user_attrs["point"] for t in rounds[1]) == sorted(t.user_attrs["point"] for t in best3)
    best1 = min(rounds[1], key=lambda t: value_at(t, 6))
    assert rounds[2][0].user_attrs["point"] == best1.user_attrs["point"]
    assert rounds[2][0].params == best1.params
    # the point closest to the optimum a = 0.3 is the one that trained to its end
    assert rounds[2][0].user_attrs["point"] == min(rounds[0], key=lambda t: abs(t.params["a"] - 0.3)).user_attrs["point"]
    exploit = [t for t in trials if t.user_attrs.get("phase") == "exploit"]
    assert exploit and min(t.number for t in exploit) > rounds[2][0].number
    # the table says which screened trials went on
    table = next(t for t in report.tables if "outcome" in t.columns)
    outcomes = {row[1]: row[2] for row in table.rows}
    assert {outcomes[t.user_attrs["promoted_from"]] for t in rounds[1] + rounds[2]} == {"promoted"}
    assert report.finding("H4").evidence["went_on"] == 4 and "went on" in report.finding("H4").summary
    # only a screened trial, which a promoted point may go on from, keeps last.pt (optimizer and all)
    def has_last(t):
        return (store.run_dir(t.user_attrs["run_id"], create=False) / "checkpoints" / "last.pt").exists()

    assert all(has_last(t) for t in rounds[0] + rounds[1])
    assert not any(has_last(t) for t in rounds[2] + exploit)


def test_a_point_that_went_on_trains_exactly_as_if_trained_from_the_start(store, synth_path):
    """The last round's trial went on from the checkpoints of two screened trials (steps 1-2,
    then 3-6, then 7-12): its run holds the whole curve, and curve and score equal those of
    the same point trained once from its first step (CPU)."""
    from danlu.engine import fit
    from danlu.recipe import load_recipe_class
    from danlu.tuning.spec import build_recipe

    new_study(store, str(synth_path), ["a=0..1", "b=0..1"], fixed={"epochs": "3"}, trials=10, name="went-on",
              prune="asha", min_resource=2).run(Sequential())
    last = next(t for t in _trials(store, "went-on") if t.user_attrs.get("round") == 2)
    assert last.user_attrs["from_step"] == 6
    recipe = build_recipe(load_recipe_class(str(synth_path)), {"epochs": "3"}, dict(last.params))
    whole = fit(recipe, store=store, progress=False, resumable=False)
    went_on = last.user_attrs["run_id"]
    for series in ("train/loss", "val/loss", "val/probe_loss"):
        steps, values = store.read_series(went_on, series)
        again_steps, again = store.read_series(whole.run_id, series)
        assert list(steps) == list(again_steps) and len(steps) > 0, series
        assert list(values) == list(again), series
    assert last.value == whole.summary["best_val_loss"]
    assert (store.run_dir(went_on) / "checkpoints" / "best.pt").exists()
    assert store.get_run(went_on).parent is not None


def test_tune_without_pruning_has_nothing_left_to_exploit_and_says_so(store, synth_path):
    """4 points without pruning spend the whole budget: the plan says TPE gets nothing and from how
    many trials it would (it said "then TPE until 120 steps are spent"), and H2 says why it had none."""
    from rich.console import Console

    con = Console(record=True, width=200)
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"epochs": "1"}, trials=4, name="flat", prune="none")
    report = study.run(Sequential(), console=con)
    trials = _trials(store, "flat")
    assert len(trials) == 4 and not [t for t in trials if t.user_attrs.get("phase") == "exploit"]
    assert _phases(report).evidence["exploit"]["trials"] == 0
    plan = con.export_text()
    assert "the whole budget of" in plan and "from --trials 9 on" in plan and "then TPE" not in plan
    assert explore_points(9) == 8 < 9          # the number the plan names
    assert "exploit 0 trials, 0 steps (0% of the budget), nothing left to spend" in _phases(report).summary


def test_the_pruner_is_never_asked_about_a_trial_at_its_last_step():
    """A pruner that would stop everything stops a trial before its last step, never at it."""
    from types import SimpleNamespace

    from danlu.tuning.objective import TrialCallback

    class StopAll:
        factor = 3

        def should_prune(self, trial, step):
            return True

    reported = []
    trial = SimpleNamespace(report=lambda value, step: reported.append(step))
    stopped = []

    def state(step):
        return SimpleNamespace(probe_loss=1.0, step=step, total_steps=9, val_loader=None, best_val_loss=math.inf,
                               stop=lambda reason, status: stopped.append((step, status)))

    last = TrialCallback(trial, StopAll(), min_resource=1, pruner_name="asha")
    last.on_probe_end(state(9))
    assert last.outcome == "complete" and stopped == [] and reported == [9]
    early = TrialCallback(trial, StopAll(), min_resource=1, pruner_name="asha")
    early.on_probe_end(state(3))
    assert early.outcome == "pruned" and stopped == [(3, "stopped")]


@pytest.mark.parametrize("fourth,pruned", [(1.5, False), (2.5, True)])
def test_a_rung_keeps_the_best_third_rounded_up_and_waits_for_three_earlier_trials(fourth, pruned):
    """H4: at a rung with 3 earlier values (1, 2, 3) the best ceil(4/3) = 2 of 4 go on: 1.5 is kept
    (Optuna's own rule, the best 4 // 3 = 1, would stop it), 2.5 is pruned; nothing is pruned before."""
    import optuna

    from danlu.tuning.objective import OrderedPruning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, min_early_stopping_rate=0)
    decisions = []
    for value in (1.0, 2.0, 3.0, fourth):
        trial = study.ask()
        trial.report(value, 1)
        decisions.append(OrderedPruning(study, pruner, 1, 3).should_prune(trial, 1))
        study.tell(trial, value)
    assert decisions == [False, False, False, pruned]


def test_a_study_is_a_function_too_and_shows_itself_in_a_notebook(store, synth_path):
    import danlu

    report = danlu.study(synth_path, ["a=0..1"], fixed={"epochs": "1"}, trials=4, prune="none", name="fn",
                         store=store)
    assert report.kind == "study" and store.get_run("fn").status == "finished"
    assert report.meta["best"]["trial"] in range(4)
    assert report.folder == str(store.run_dir(store.get_run("fn").id, create=False))
    assert "data:image/png;base64," in report._repr_html_()


def test_a_point_that_went_on_judges_divergence_against_its_whole_curve(store):
    """Its divergence tripwire starts from the copied curve: a loss that fell from 2.1 to 0.08 and
    now stands at 0.17 has not diverged (it gave back 4% of what it learned), while a tripwire
    that started at the branch point, at 0.10, would stop it as diverged (seen on the diabetes
    task of benchmarks/study_efficiency.py, where it cost a seed its exploration's full trial)."""
    from types import SimpleNamespace

    from danlu.curves.divergence import Tripwire
    from danlu.track import open_run
    from danlu.tuning.objective import TrialCallback

    run = open_run(store=store, kind="train", name="screened-and-went-on")
    past = [2.0 * 0.8 ** i + 0.1 for i in range(40)]
    store.log_points(run.id, [("train/loss", i + 1, v, 0.0) for i, v in enumerate(past)])
    callback = TrialCallback(SimpleNamespace(set_user_attr=lambda *a: None), None, 1, "asha")
    callback.on_fit_start(SimpleNamespace(step=40, run=run, total_steps=90))
    whole = Tripwire()
    for value in past:
        whole.update(value)
    assert (callback.tripwire.n, callback.tripwire.start, callback.tripwire.best) == (whole.n, whole.start, whole.best)
    wobble = [0.08] * 10 + [0.17] * 20   # a little lower, then back up where it stood a while ago
    assert not any(callback.tripwire.update(v) for v in wobble)
    fresh = Tripwire()
    assert any(fresh.update(v) for v in [past[-1], *wobble])
    run.finish("finished", {})


def test_the_plan_says_so_when_trials_are_too_short_to_prune():
    """69-step trials probed every 50 steps: a rung at step 50 would save under a third of a
    trial, so there is none; the announcement says why and what to change, not 'at step  of 69'."""
    from types import SimpleNamespace

    from danlu.tuning.spec import pruning_plan

    spec = SimpleNamespace(prune="asha", reduction_factor=3, probe_every=50)
    plan = pruning_plan(spec, 50, 69)
    assert plan.startswith("no pruning can happen") and "75 steps" in plan and "probe_every" in plan
    assert pruning_plan(spec, 10, 69).startswith("pruning (asha) at steps 10, 30 of 69")


def _study_of_synth_with(store, tmp_path, synth_path, name: str, method: str):
    """A 4-trial study of the synthetic recipe with `method` (source) overridden: (report, trials)."""
    (tmp_path / f"{name}.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(synth_path.parent)!r})\n"
        "from synth import Synth\n\n"
        "class Changed(Synth):\n" + method)
    study = new_study(store, f"{tmp_path / f'{name}.py'}:Changed", ["a=0..1"], fixed={"epochs": "3"}, trials=4,
                      name=name, prune="asha", min_resource=2)
    return study.run(Sequential()), _trials(store, name)


def test_a_recipe_that_raises_before_its_first_step_ends_the_study_and_says_why(store, tmp_path, synth_path):
    """Failed trials spend no steps, so a step budget alone would never end the study (seen:
    5,385 failed trials in 20 minutes). After FAILED_IN_A_ROW such failures it stops, and T2
    quotes the error and the command that shows its traceback. The error names the point (as a
    shape mismatch names the layer's width): the same error at every point is still one error."""
    from danlu.tuning.objective import FAILED_IN_A_ROW

    report, trials = _study_of_synth_with(
        store, tmp_path, synth_path, "broken", "    def forward(self, model, batch):\n"
        "        raise ValueError(f'the recipe is broken at a={self.a}, width {int(self.a * 100)}')\n")
    assert len(trials) == FAILED_IN_A_ROW and all(t.state == TrialState.FAIL for t in trials)
    t2 = report.finding("T2")
    assert t2.status == "fail" and "the recipe is broken at a=" in t2.cause and "danlu train" in t2.fix
    assert t2.cause.startswith(f"{FAILED_IN_A_ROW} trials raised before their first step")


def test_trials_that_raise_at_their_first_validation_count_their_steps(store, tmp_path, synth_path):
    """A recipe whose metrics raise trains to its first epoch end, then fails: those steps are spent
    (the budget ends the study), and T2 says the trials raised in training, not before it."""
    report, trials = _study_of_synth_with(
        store, tmp_path, synth_path, "badval", "    def metrics(self, output, target):\n"
        "        raise RuntimeError(f'my metric is broken at a={self.a}')\n")
    assert trials and all(t.state == TrialState.FAIL and t.user_attrs["steps"] > 0 for t in trials)
    t2 = report.finding("T2")
    assert t2.cause.startswith(f"{len(trials)} trials raised in training: RuntimeError: my metric is broken")
