"""A study: its record in the danlu store, creating and resuming it, running its stages.

A study is stored twice, each part where it belongs:

- in the danlu store, as a run of kind ``"study"`` named after the study: the spec
  (space, fixed values, mode, pruning, stages, budget) as its config, the status,
  a best-so-far curve, the results as its summary and the analysis as its report;
  every trial is an ordinary ``train`` run tagged ``study:<name>`` (E1-E3).
- in an Optuna storage (danlu.tuning.storage), as one Optuna study per stage
  (``<name>#<stage>``), which holds the queue of trials, their parameters,
  intermediate values and states.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from typing import Any

from danlu.tuning.objective import Every, WorkerJob
from danlu.tuning.space import parse_vary
from danlu.tuning.spec import StudyError, StudySpec, prepare_spec, pruning_plan, rung_steps
from danlu.tuning.storage import (
    default_storage_url,
    load_optuna_study,
    open_storage,
    qmc_points,
    requeue_stale,
    spec_from_storage,
    stage_study_name,
)

__all__ = ["Study", "new_study", "join_study", "EXPLOIT_TOP"]


# ---------------------------------------------------------------- the study
def explore_points(trials: int) -> int:
    """Space-filling points a tune study starts from before TPE takes over: a third of the
    budget's trials, at least 8 (enough for TPE to model 2-4 hyperparameters). Measured:
    exploring the whole budget first left TPE too little to find the best before the budget's
    last third (benchmarks/study_efficiency.py)."""
    return min(trials, max(8, trials // 3))


class Study:
    """A danlu study: its record in the store, its Optuna storage, and how to run it."""

    def __init__(self, store, spec: StudySpec, run, storage_url: str, run_id: str | None = None) -> None:
        self.store, self.spec, self.run_handle = store, spec, run
        self.run_id = run.id if run is not None else run_id
        self.storage_url = storage_url
        self.storage = open_storage(storage_url)

    @classmethod
    def load(cls, store, name: str) -> Study:
        """A study to read (its analysis), without taking its run over: it may still be running."""
        record = store.get_run(name)
        if record.kind != "study":
            raise StudyError(f"'{name}' is a {record.kind} run, not a study; `danlu show {name}` shows runs.")
        spec = StudySpec.from_dict(record.config)
        return cls(store, spec, None, spec.storage or default_storage_url(store), run_id=record.id)

    def report(self):
        """The study's report: the one kept when it finished, else an analysis of its trials so far."""
        from danlu.report import Report

        record = self.store.get_run(self.run_id)
        stored = self.store.list_reports(run_id=record.id, kind="study")
        if record.status == "finished" and stored:
            return Report.from_dict(stored[0].data)
        return self.analyse()

    # ---------------------------------------------------------- create / resume
    @classmethod
    def create(cls, store, spec: StudySpec, command: str | None = None) -> Study:
        import optuna

        from danlu.errors import RunNotFound
        from danlu.track import open_run

        spec.validate()
        try:
            existing = store.get_run(spec.name)
        except RunNotFound:
            existing = None
        if existing is not None:
            what = "study" if existing.kind == "study" else f"{existing.kind} run"
            raise StudyError(f"A {what} named '{spec.name}' is already in the store; continue it with "
                             f"`danlu study --resume {spec.name}` or pick another name.")
        url = spec.storage or default_storage_url(store)
        storage = open_storage(url)
        if stage_study_name(spec.name, 0) in optuna.get_all_study_names(storage):
            raise StudyError(f"The storage already holds a study '{spec.name}'; resume it "
                             f"(`danlu study --resume {spec.name}`) or pick another name.")
        run = open_run(store=store, kind="study", name=spec.name, config=spec.to_dict(), recipe=spec.recipe,
                       tags=[f"study:{spec.name}"], note=f"{spec.mode} study: {' '.join(spec.vary)}",
                       command=command)
        study = cls(store, spec, run, url)
        study.storage = storage
        return study

    @classmethod
    def resume(cls, store, name: str) -> Study:
        from danlu.track import reopen_run

        record = store.get_run(name)
        if record.kind != "study":
            raise StudyError(f"'{name}' is a {record.kind} run, not a study; `danlu study --resume` takes a study "
                             "name (see `danlu runs`).")
        if record.status == "running":
            raise StudyError(f"Study '{name}' is still running (pid {record.pid} on {record.host}); "
                             "stop it before resuming, or join it with `danlu study worker`.")
        spec = StudySpec.from_dict(record.config)
        url = spec.storage or default_storage_url(store)
        run = reopen_run(store, record)
        return cls(store, spec, run, url)

    # ---------------------------------------------------------------- stages
    def stage_plan(self, index: int):
        from danlu.tuning.stages import plan_stage

        s = self.spec
        return plan_stage(index, s.stages[index], s.stage_on, s.budget_steps, s.min_resource, s.probe_every)

    def optuna_study(self, index: int):
        import optuna

        name = stage_study_name(self.spec.name, index)
        return optuna.create_study(study_name=name, storage=self.storage, direction="minimize",
                                   load_if_exists=True)

    def stage_studies(self) -> list:
        import optuna

        names = set(optuna.get_all_study_names(self.storage))
        return [load_optuna_study(self.storage, self.spec.name, i) for i in range(len(self.spec.stages))
                if stage_study_name(self.spec.name, i) in names]

    def _seed_stage(self, index: int, workers: int, recipe_cls) -> Any:
        """Create the stage's Optuna study and fill its queue (idempotent: a study killed
        while seeding is completed on resume, never duplicated)."""
        import optuna

        spec = self.spec
        study = self.optuna_study(index)
        if study.user_attrs.get("seeded"):
            return study
        plan = self.stage_plan(index)
        stage = dict(plan.attrs(), queue=True, workers=workers)
        if index == 0:
            study.set_user_attr("danlu_spec", json.dumps(spec.to_dict()))
        have = {t.user_attrs.get("point") for t in study.get_trials(deepcopy=False)}
        space = spec.space(recipe_cls)
        if index == 0 and spec.mode in ("explore", "tune"):
            points = spec.trials if spec.mode == "explore" else explore_points(spec.trials)
            rungs = rung_steps(plan.min_resource, spec.reduction_factor, plan.budget_steps)
            halving = spec.mode == "tune" and spec.prune == "asha" and bool(rungs)
            for i, point in enumerate(qmc_points(space, points, spec.seed)):
                if i not in have:  # in rounds of successive halving (danlu.tuning.halving), or pruned as they go
                    attrs = {"point": i, "round": 0, "stop_at": rungs[0]} if halving else {"point": i}
                    study.enqueue_trial(point, user_attrs=attrs, skip_if_exists=False)
            if spec.mode == "tune":  # then TPE, on what pruning saved, until trials x steps are spent (H2)
                stage.update(step_budget=spec.trials * plan.budget_steps, prunes=spec.prune != "none")
            if halving:
                stage.update(rounds=rungs)
        elif index == 0:  # exploit: narrowed space, seeded with the exploration's trials
            dists = space.distributions()
            stage.update(queue=False, target=spec.trials, startup=max(0, 5 - len(spec.seeded_trials)))
            if "seeded" not in have:
                seeded = []
                for row in spec.seeded_trials:
                    params = row["params"]
                    if set(params) == set(dists) and all(space.get(k).contains(v) for k, v in params.items()):
                        seeded.append(optuna.trial.create_trial(
                            params=params, distributions=dists, value=row["value"],
                            user_attrs={"seeded_from": spec.source, "point": "seeded",
                                        "source_trial": row.get("number"), "outcome": "seeded"}))
                study.add_trials(seeded)
        else:
            previous = load_optuna_study(self.storage, spec.name, index - 1)
            for rank, t in enumerate(promote_from(previous, spec.keep)):
                if t.number not in {t2.user_attrs.get("from_trial") for t2 in study.get_trials(deepcopy=False)}:
                    study.enqueue_trial(dict(t.params), user_attrs={"point": t.user_attrs.get("point"),
                                                                     "from_trial": t.number, "rank": rank},
                                        skip_if_exists=False)
        study.set_user_attr("danlu_stage", stage)
        study.set_user_attr("seeded", True)
        return study

    # ------------------------------------------------------------------- run
    def run(self, executor, workers: int = 1, console=None, recipe: str | None = None):
        """Run (or continue) every stage, then analyse; returns the study Report."""
        from danlu.recipe import load_recipe_class

        spec = self.spec
        recipe_cls = load_recipe_class(recipe or spec.recipe)
        say = console.print if console is not None else (lambda *a, **k: None)
        try:
            for index, _fraction in enumerate(spec.stages):
                study = self._seed_stage(index, workers, recipe_cls)
                self._announce(index, study, workers, say)
                job = WorkerJob(store=self.store.location, storage=self.storage_url, name=spec.name,
                                stage=index, recipe=recipe, quiet=console is None)
                self._drain(study, executor, job, workers, say)
            self._mark_storage_status("finished")
            report = self.analyse(recipe_cls)
            self.run_handle.save_report(report)
            self.run_handle.finish("finished", report.meta.get("summary", {}))
            return report
        except KeyboardInterrupt:
            self.run_handle.finish("stopped", {"stop_reason": f"interrupted; resume with `danlu study --resume {spec.name}`"})
            raise
        except BaseException as exc:
            self.run_handle.finish("failed", {"error": f"{type(exc).__name__}: {exc}"})
            raise

    def _drain(self, study, executor, job, workers: int, say) -> None:
        """Run workers until the stage has nothing queued or running (trials run by other
        machines' workers included; dead ones are re-queued and run here)."""
        from optuna.trial import TrialState

        while True:
            requeued = requeue_stale(study)
            if requeued:
                say(f"  re-queued trials {', '.join(map(str, requeued))}: their worker died")
            with _round_keeper(self, study):  # the workers wait between rounds; this process starts the next
                executor.run(job, workers)
            states = {t.state for t in study.get_trials(deepcopy=False)}
            if TrialState.WAITING in states:
                continue
            if TrialState.RUNNING in states:  # other workers (danlu study worker) still busy
                time.sleep(2.0)
                continue
            if self.next_round(study):
                continue
            return

    def next_round(self, study) -> bool:
        """Successive halving over a tune study's exploration (danlu.tuning.halving): when a
        round has ended, queue its best third for the next one; once the last is queued, open
        the TPE phase. Only the coordinating process calls this (no two processes promote the
        same round). Returns whether it queued or opened anything."""
        from danlu.tuning.halving import next_round

        rungs = study.user_attrs.get("danlu_stage", {}).get("rounds")
        if not rungs or study.user_attrs.get("explored"):
            return False
        todo = next_round(study.get_trials(deepcopy=False), rungs, self.spec.reduction_factor)
        if todo is None:
            study.set_user_attr("explored", True)
            return True
        for params, attrs in todo:
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
        return bool(todo)

    def _announce(self, index: int, study, workers: int, say) -> None:
        from danlu.tuning.stages import estimate_stage_seconds

        spec = self.spec
        stage = study.user_attrs.get("danlu_stage", {})
        n = spec.trials if stage.get("queue") is False else len(study.get_trials(deepcopy=False))
        n = min(n, spec.trials) if stage.get("step_budget") else n
        fraction = spec.stages[index]
        scale = ("full scale" if fraction >= 1 else f"{fraction:g} of the training data" if spec.stage_on == "data"
                 else f"{fraction:g} of the step budget")
        line = f"stage {index + 1}/{len(spec.stages)}: {n} trials at {scale}"
        if stage.get("rounds"):
            points = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("round") == 0)
            later = "".join(f", the best third on to {r}" for r in stage["rounds"][1:])
            line = (f"stage {index + 1}/{len(spec.stages)}: {points} points at {scale} in rounds (all to step "
                    f"{stage['rounds'][0]}{later}, the best third on to the end)")
        steps = int(stage.get("max_steps") or math.ceil(spec.budget_steps * min(fraction, 1.0)))
        min_resource = int(stage.get("min_resource") or spec.min_resource)
        if stage.get("step_budget"):
            prunes = spec.prune != "none" and bool(rung_steps(min_resource, spec.reduction_factor, steps))
            if n >= spec.trials and not stage.get("rounds") and not prunes:   # nothing can be saved for TPE
                more = spec.trials + 1
                while explore_points(more) >= more:
                    more += 1
                line += (f", the whole budget of {stage['step_budget']} steps (TPE searches after the first "
                         f"{explore_points(more)} points, from --trials {more} on)")
            else:
                line += f", then TPE until {stage['step_budget']} steps are spent"
        if index > 0:
            previous = load_optuna_study(self.storage, spec.name, index - 1)
            eta = estimate_stage_seconds(previous.get_trials(deepcopy=False), spec.stages[index - 1],
                                         spec.stages[index], n, workers)
            if eta is not None:
                line += f", estimated {_duration(eta)} (measured on stage {index})"
        say(line + "; " + pruning_plan(spec, min_resource, steps))

    def _mark_storage_status(self, status: str) -> None:
        load_optuna_study(self.storage, self.spec.name, 0).set_user_attr("status", status)

    # --------------------------------------------------------------- analysis
    def analyse(self, recipe_cls=None):
        """The study report from what the storage holds now (H1, H2, H4, H5)."""
        from danlu.tuning.summary import study_report

        return study_report(self, recipe_cls)


@contextlib.contextmanager
def _round_keeper(study: Study, optuna_study) -> Iterator[None]:
    """While the workers run, queue each round of the exploration as soon as the previous one
    has ended (every ROUND_POLL seconds, or at once when a worker in this process finds it
    ended), so that workers wait between rounds instead of exiting and being started again."""
    from danlu.tuning import objective

    if not optuna_study.user_attrs.get("danlu_stage", {}).get("rounds"):
        yield
        return

    def look() -> bool:
        try:
            study.next_round(optuna_study)
            return not optuna_study.user_attrs.get("explored")
        except Exception:  # a storage hiccup: the next look (or the coordinator after the workers) retries
            return True

    with Every(ROUND_POLL, look, "danlu-study-rounds") as keeper:
        objective.round_keeper = keeper
        try:
            yield
        finally:
            objective.round_keeper = None


#: Seconds between the coordinator's looks at whether an exploration round has ended.
ROUND_POLL = 0.1


def promote_from(previous, keep: float) -> list:
    from danlu.tuning.stages import promote

    return promote(previous.get_trials(deepcopy=False), keep)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def join_study(storage_url: str, name: str, store, executor, workers: int = 1, recipe: str | None = None,
               wait: float = 600.0, console=None) -> int:
    """Worker mode: run the trials of study `name` from a shared storage until its
    coordinator marks it finished (or nothing new appears for `wait` seconds)."""
    import optuna
    from optuna.trial import TrialState


    storage = open_storage(storage_url)
    spec = spec_from_storage(storage, name)
    done, idle_since = 0, time.time()
    say = console.print if console is not None else (lambda *a, **k: None)
    say(f"joined study {name}: {' '.join(spec.vary)} ({spec.mode}, {len(spec.stages)} stage(s))")
    while True:
        names = set(optuna.get_all_study_names(storage))
        stages = [i for i in range(len(spec.stages)) if stage_study_name(name, i) in names]
        ran = 0
        for i in stages:
            study = load_optuna_study(storage, name, i)
            if not study.user_attrs.get("seeded"):
                continue
            states = {t.state for t in study.get_trials(deepcopy=False)}
            attrs = study.user_attrs.get("danlu_stage", {})
            if TrialState.WAITING in states or attrs.get("queue") is False or attrs.get("step_budget"):
                job = WorkerJob(store=store.location, storage=storage_url, name=name, stage=i,
                                recipe=recipe, quiet=console is None)
                ran += executor.run(job, workers)
        done += ran
        if load_optuna_study(storage, name, 0).user_attrs.get("status") == "finished":
            return done
        if ran:
            idle_since = time.time()
        elif time.time() - idle_since > wait:
            say(f"nothing to run for {wait:.0f} s; leaving study {name}")
            return done
        time.sleep(2.0)


def new_study(store, recipe: str, vary: list[str], *, fixed: dict[str, str] | None = None, trials: int = 16,
              name: str | None = None, mode: str = "tune", prune: str = "asha", min_resource: int = 0,
              stages: list[float] | None = None, stage_on: str = "data", keep: float = 1 / 3,
              scientific: str | None = None, seed: int = 0, storage: str | None = None, device: str = "cpu",
              source: str | None = None, command: str | None = None) -> Study:
    """Check everything, fill in the recipe's budget, and create the study (store + storage).

    Tune mode (the default) explores `trials` quasi-random points, then spends the steps that
    pruning saved (the budget is `trials` full trials) on TPE trials in the same study,
    seeded with the exploration's (H2). Explore mode only explores. Exploit mode
    (`mode="exploit"`) narrows the ranges of the exploration `source` (by default the newest
    finished explore study of the same recipe) around its best trials and seeds TPE with the
    trials that fall inside them (H2)."""
    from danlu.recipe import load_recipe_class
    from danlu.store.base import make_run_name

    recipe_cls = load_recipe_class(recipe)
    spec_text = getattr(recipe_cls, "__danlu_spec__", recipe)
    fixed = dict(fixed or {})
    recipe_cls.from_strings(fixed)  # unknown names / wrong types: the recipe's own clear errors
    spec = StudySpec(name=name or f"study-{make_run_name()}", recipe=spec_text, vary=[], fixed=fixed,
                     trials=trials, mode=mode, prune=prune, min_resource=min_resource,
                     stages=list(stages or [1.0]), stage_on=stage_on, keep=keep, scientific=scientific,
                     seed=seed, storage=storage or "", device=device, source=source)
    if mode == "exploit":
        _narrow_from_exploration(store, spec, vary, recipe_cls)
    else:
        spec.vary = parse_vary(vary, recipe_cls, fixed=fixed).tokens()
    spec.validate()
    prepare_spec(spec, recipe_cls)
    return Study.create(store, spec, command=command)


#: Exploit narrows each range around the best EXPLOIT_TOP fraction of the exploration.
EXPLOIT_TOP = 0.25


def _narrow_from_exploration(store, spec: StudySpec, vary: list[str], recipe_cls) -> None:
    from danlu.tuning.importance import comparable

    source = spec.source
    if source is None:
        explorations = [r for r in store.list_runs(kind="study") if r.status == "finished"
                        and r.config.get("mode") in ("explore", "tune") and r.config.get("recipe") == spec.recipe]
        if not explorations:
            raise StudyError("mode='exploit' narrows an exploration, and this recipe has no finished one; run "
                             "an explore study first (`danlu study RECIPE --vary ...`), or name one (source=NAME).")
        source = explorations[0].name
    record = store.get_run(source)
    if record.kind != "study":
        raise StudyError(f"source={source!r}: that is a {record.kind} run, not a study.")
    src = StudySpec.from_dict(record.config)
    storage = open_storage(src.storage or default_storage_url(store))
    trials = load_optuna_study(storage, src.name, 0).get_trials(deepcopy=False)
    base = parse_vary(vary, recipe_cls, fixed=spec.fixed) if vary else parse_vary(src.vary, recipe_cls)
    comp = comparable(trials, min_complete=4)
    ranked = sorted(comp.points, key=lambda p: (p.value, p.number))
    top = ranked[: max(2, int(math.ceil(len(ranked) * EXPLOIT_TOP)))]
    params = []
    for p in base:
        params.append(p.narrowed([t.params.get(p.name) for t in top]) if p.name in src.vary_names() else p)
    spec.vary = [p.token() for p in params]
    spec.source = src.name
    from optuna.trial import TrialState

    spec.seeded_trials = [{"params": dict(t.params), "value": float(t.value), "number": t.number}
                          for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                          and math.isfinite(t.value) and set(t.params) == {p.name for p in params}]
