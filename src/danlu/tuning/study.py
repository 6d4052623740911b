"""A study: its spec, its record in the danlu store, its Optuna studies, create and resume.

A study is stored twice, each part where it belongs:

- in the danlu store, as a run of kind ``"study"`` named after the study: the spec
  (space, fixed values, mode, pruning, stages, budget) as its config, the status,
  a best-so-far curve, the results as its summary and the analysis as its report;
  every trial is an ordinary ``train`` run tagged ``study:<name>`` (E1-E3).
- in an Optuna storage, as one Optuna study per stage (``<name>#<stage>``), which holds
  the queue of trials, their parameters, intermediate values and states. Locally that
  storage is Optuna's journal file ``<store>/studies.journal`` (safe for many processes,
  no server, no "database is locked"); ``--storage postgresql://...`` puts it in a
  database every worker machine can reach (Optuna's RDB storage).

Crash safety: each trial's worker writes a heartbeat into its trial; a trial left
"running" by a dead process (same rule as danlu's crashed runs,
:func:`danlu.store.base.is_crashed`) is marked failed and its point queued again
(:func:`requeue_stale`), whenever a study is resumed or a worker starts.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from danlu.errors import DanluError
from danlu.tuning.space import Space, parse_vary

__all__ = [
    "StudySpec",
    "StudyError",
    "TRIAL_STALE_AFTER",
    "HEARTBEAT_EVERY",
    "open_storage",
    "local_storage_url",
    "stage_study_name",
    "qmc_points",
    "requeue_stale",
    "trial_is_dead",
    "load_optuna_study",
    "spec_from_storage",
]

#: A running trial whose heartbeat is older than this (seconds) belongs to a dead worker.
TRIAL_STALE_AFTER = 60.0
#: How often a worker refreshes the heartbeat of the trial it runs (seconds).
HEARTBEAT_EVERY = 5.0

MODES = ("explore", "exploit")
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
    mode: str = "explore"                         # explore (QMC) | exploit (TPE)
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
    def from_dict(cls, data: dict[str, Any]) -> "StudySpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise StudyError(f"--mode {self.mode!r} is not a mode; use one of {', '.join(MODES)}.")
        if self.prune not in PRUNERS:
            raise StudyError(f"--prune {self.prune!r} is not a pruner; use one of {', '.join(PRUNERS)}.")
        if self.trials < 1:
            raise StudyError(f"--trials must be at least 1, got {self.trials}.")
        if not self.stages or any(not (0 < f <= 1) for f in self.stages) or self.stages != sorted(self.stages):
            raise StudyError(
                f"--stages {','.join(map(str, self.stages))} must be increasing fractions in (0, 1], "
                "e.g. --stages 0.01,0.1,1.0."
            )
        if self.stage_on not in ("data", "steps"):
            raise StudyError(f"--stage-on {self.stage_on!r}: use 'data' (training-set fraction) or 'steps' (step budget).")
        if not 0 < self.keep <= 1:
            raise StudyError(f"--keep {self.keep} must be a fraction in (0, 1].")
        if self.reduction_factor < 2:
            raise StudyError("the pruning reduction factor must be at least 2.")
        if self.scientific and self.scientific not in self.space().names:
            raise StudyError(
                f"--scientific {self.scientific} is not varied; vary it too (--vary {self.scientific}=...) "
                f"or pick one of {', '.join(self.space().names)}."
            )


# ----------------------------------------------------------------- storages
def local_storage_url(store_root: Path | str) -> str:
    """The default, server-less Optuna storage: a journal file in the danlu store folder."""
    return "journal:" + str(Path(store_root).resolve() / "studies.journal")


def quiet_optuna() -> None:
    """Optuna's per-trial INFO lines and experimental-feature warnings would drown danlu's own."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(url: str):
    """Optuna storage for a URL: ``journal:PATH`` (a journal file, for many local
    processes) or any SQLAlchemy URL (``postgresql://``, ``mysql://``, ``sqlite:///``)."""
    import optuna

    quiet_optuna()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise StudyError(
            f"--storage {url!r} is not a storage URL; use e.g. postgresql://user:pass@host/db "
            "(or leave it out for the local journal file in the store)."
        )
    try:
        return optuna.storages.RDBStorage(_rdb_url(url), engine_kwargs={"pool_pre_ping": True})
    except ImportError as exc:
        from danlu.errors import MissingExtra

        module = "psycopg2" if url.startswith("postgres") else str(exc.name or "a database driver")
        raise MissingExtra(module, "postgres", f"--storage {url.split('://')[0]}://") from exc
    except Exception as exc:
        raise StudyError(f"Cannot open the study storage {_redact(url)}: {type(exc).__name__}: {exc}. "
                         "Check that the database server runs and the URL's user, password and database exist.") from exc


def _rdb_url(url: str) -> str:
    """A PostgreSQL URL without a driver gets the installed one (psycopg 3, else psycopg2):
    SQLAlchemy 2.1 assumes psycopg 3, and 'postgres://' is not a dialect name."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
            if importlib.util.find_spec(module) is not None:
                return f"postgresql+{driver}://{rest}"
        raise ImportError(name="psycopg2")
    return url


def _redact(url: str) -> str:
    import re

    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def stage_study_name(name: str, stage: int) -> str:
    """The Optuna study holding one stage of a danlu study."""
    return f"{name}#{stage}"


def load_optuna_study(storage, name: str, stage: int, sampler=None):
    import optuna

    try:
        return optuna.load_study(study_name=stage_study_name(name, stage), storage=storage, sampler=sampler)
    except KeyError as exc:
        raise StudyError(f"The storage has no study '{name}' (stage {stage}). Start it with "
                         f"`danlu study RECIPE --vary ... --name {name}`.") from exc


def spec_from_storage(storage, name: str) -> StudySpec:
    """The spec a coordinator stored with stage 0 (how remote workers learn what to run)."""
    study = load_optuna_study(storage, name, 0)
    data = study.user_attrs.get("danlu_spec")
    if not data:
        raise StudyError(f"Optuna study '{name}' was not made by danlu (no spec); it cannot be joined.")
    return StudySpec.from_dict(json.loads(data) if isinstance(data, str) else data)


# ------------------------------------------------------------- QMC points
def qmc_points(space: Space, n: int, seed: int) -> list[dict[str, Any]]:
    """The first n points of a scrambled Sobol sequence over the space, from Optuna's
    QMCSampler with the given seed: point i is the same on every machine and run, so
    trial i gets point i however many workers share the study (H2 exploration)."""
    import warnings

    import optuna

    sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                         warn_independent_sampling=False)
    scratch = optuna.create_study(sampler=sampler)  # in memory: only a counter for the sequence
    dists = space.distributions()
    points = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy: Sobol balance wants powers of 2
        for _ in range(n):
            trial = scratch.ask()
            frozen = scratch._storage.get_trial(trial._trial_id)
            points.append(sampler.sample_relative(scratch, frozen, dists))
            scratch.tell(trial, 0.0)
    return [{k: _plain(v) for k, v in p.items()} for p in points]


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


# --------------------------------------------------------- stale trials
def trial_is_dead(trial, now: float | None = None, stale_after: float = TRIAL_STALE_AFTER) -> bool:
    """Whether a RUNNING trial's worker is gone: its heartbeat is older than
    `stale_after`, or it ran on this host and its pid is dead (danlu's crash rule)."""
    from danlu.store.base import RunRecord, is_crashed

    worker = trial.user_attrs.get("worker") or {}
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    record = RunRecord(id="", name="", status="running", created=started,
                       heartbeat=trial.user_attrs.get("heartbeat"),
                       pid=worker.get("pid"), host=worker.get("host"))
    return is_crashed(record, pidns=worker.get("pidns"), now=now, stale_after=stale_after)


def requeue_stale(study, stale_after: float = TRIAL_STALE_AFTER) -> list[int]:
    """Mark trials left RUNNING by dead workers failed and queue their points again.

    Returns the numbers of the trials re-queued. Safe to call from several processes:
    a trial is only re-queued by the process that moved it out of RUNNING.
    """
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    requeued = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not trial_is_dead(t, stale_after=stale_after):
            continue
        worker = t.user_attrs.get("worker") or {}
        reason = (f"worker died (pid {worker.get('pid')} on {worker.get('host')}); "
                  f"point queued again")
        try:
            storage.set_trial_user_attr(t._trial_id, "outcome", "crashed")
            storage.set_trial_user_attr(t._trial_id, "reason", reason)
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        params = t.system_attrs.get("fixed_params") or dict(t.params)
        if params:  # a model-based trial that died before sampling is simply asked again
            attrs = {k: v for k, v in t.user_attrs.items() if k in ("point", "from_trial")}
            attrs["requeue_of"] = t.number
            study.enqueue_trial(dict(params), user_attrs=attrs, skip_if_exists=False)
        requeued.append(t.number)
    return requeued


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ---------------------------------------------------------------- the study
def prepare_spec(spec: StudySpec, recipe_cls) -> StudySpec:
    """Fill in what the recipe decides: the full-scale step budget of a trial, the probe
    interval (the reporting interval) and, unless given, the minimum resource before
    pruning (a ninth of the budget: rungs at B/9, B/3 and B with reduction 3)."""
    from danlu.tuning.objective import build_recipe

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
        spec.min_resource = max(spec.probe_every, int(math.ceil(ninth / spec.probe_every)) * spec.probe_every)
    spec.storage = spec.storage or ""
    return spec


class Study:
    """A danlu study: its record in the store, its Optuna storage, and how to run it."""

    def __init__(self, store, spec: StudySpec, run, storage_url: str) -> None:
        self.store, self.spec, self.run_handle = store, spec, run
        self.storage_url = storage_url
        self.storage = open_storage(storage_url)

    # ---------------------------------------------------------- create / resume
    @classmethod
    def create(cls, store, spec: StudySpec, command: str | None = None) -> "Study":
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
                             f"`danlu study --resume {spec.name}` or pick another --name.")
        url = spec.storage or local_storage_url(store.root)
        storage = open_storage(url)
        if stage_study_name(spec.name, 0) in optuna.get_all_study_names(storage):
            raise StudyError(f"The storage already holds a study '{spec.name}'; resume it "
                             f"(`danlu study --resume {spec.name}`) or pick another --name.")
        run = open_run(store=store, kind="study", name=spec.name, config=spec.to_dict(), recipe=spec.recipe,
                       tags=[f"study:{spec.name}"], note=f"{spec.mode} study: {' '.join(spec.vary)}",
                       command=command)
        study = cls(store, spec, run, url)
        study.storage = storage
        return study

    @classmethod
    def resume(cls, store, name: str) -> "Study":
        from danlu.track import reopen_run

        record = store.get_run(name)
        if record.kind != "study":
            raise StudyError(f"'{name}' is a {record.kind} run, not a study; `danlu study --resume` takes a study "
                             "name (see `danlu runs`).")
        if record.status == "running":
            raise StudyError(f"Study '{name}' is still running (pid {record.pid} on {record.host}); "
                             "stop it before resuming, or join it with `danlu study worker`.")
        spec = StudySpec.from_dict(record.config)
        url = spec.storage or local_storage_url(store.root)
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
        if index == 0 and spec.mode == "explore":
            for i, point in enumerate(qmc_points(space, spec.trials, spec.seed)):
                if i not in have:
                    study.enqueue_trial(point, user_attrs={"point": i}, skip_if_exists=False)
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
        from danlu.tuning.objective import WorkerJob

        spec = self.spec
        recipe_cls = load_recipe_class(recipe or spec.recipe)
        say = console.print if console is not None else (lambda *a, **k: None)
        try:
            for index, fraction in enumerate(spec.stages):
                study = self._seed_stage(index, workers, recipe_cls)
                self._announce(index, study, workers, say)
                job = WorkerJob(store=str(self.store.root), storage=self.storage_url, name=spec.name,
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
            executor.run(job, workers)
            states = {t.state for t in study.get_trials(deepcopy=False)}
            if TrialState.WAITING in states:
                continue
            if TrialState.RUNNING in states:  # other workers (danlu study worker) still busy
                time.sleep(2.0)
                continue
            return

    def _announce(self, index: int, study, workers: int, say) -> None:
        from danlu.tuning.stages import estimate_stage_seconds

        spec = self.spec
        stage = study.user_attrs.get("danlu_stage", {})
        n = spec.trials if stage.get("queue") is False else len(study.get_trials(deepcopy=False))
        fraction = spec.stages[index]
        scale = ("full scale" if fraction >= 1 else f"{fraction:g} of the training data" if spec.stage_on == "data"
                 else f"{fraction:g} of the step budget")
        line = f"stage {index + 1}/{len(spec.stages)}: {n} trials at {scale}"
        if index > 0:
            previous = load_optuna_study(self.storage, spec.name, index - 1)
            eta = estimate_stage_seconds(previous.get_trials(deepcopy=False), spec.stages[index - 1],
                                         spec.stages[index], n, workers)
            if eta is not None:
                line += f", estimated {_duration(eta)} (measured on stage {index})"
        if spec.prune != "none":
            line += f"; pruning {spec.prune} from step {stage.get('min_resource')} (--min-resource)"
        say(line)

    def _mark_storage_status(self, status: str) -> None:
        load_optuna_study(self.storage, self.spec.name, 0).set_user_attr("status", status)

    # --------------------------------------------------------------- analysis
    def analyse(self, recipe_cls=None):
        """The study report from what the storage holds now (H1, H2, H4, H5)."""
        from danlu.tuning.summary import study_report

        return study_report(self, recipe_cls)


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

    from danlu.tuning.objective import WorkerJob

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
            if TrialState.WAITING in states or study.user_attrs.get("danlu_stage", {}).get("queue") is False:
                job = WorkerJob(store=str(store.root), storage=storage_url, name=name, stage=i,
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
              name: str | None = None, mode: str = "explore", prune: str = "asha", min_resource: int = 0,
              stages: list[float] | None = None, stage_on: str = "data", keep: float = 1 / 3,
              scientific: str | None = None, seed: int = 0, storage: str | None = None, device: str = "cpu",
              source: str | None = None, command: str | None = None) -> Study:
    """Check everything, fill in the recipe's budget, and create the study (store + storage).

    Exploit mode (`mode="exploit"`) narrows the ranges of the exploration `source` (by
    default the newest finished explore study of the same recipe) around its best trials
    and seeds TPE with the trials that fall inside them (H2)."""
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
                        and r.config.get("mode") == "explore" and r.config.get("recipe") == spec.recipe]
        if not explorations:
            raise StudyError("--mode exploit narrows an exploration, and this recipe has no finished one; run "
                             "`danlu study RECIPE --vary ...` (explore) first, or name one with --from NAME.")
        source = explorations[0].name
    record = store.get_run(source)
    if record.kind != "study":
        raise StudyError(f"--from {source}: that is a {record.kind} run, not a study.")
    src = StudySpec.from_dict(record.config)
    storage = open_storage(src.storage or local_storage_url(store.root))
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
                          and math.isfinite(t.value) and set(t.params) == set(p.name for p in params)]
