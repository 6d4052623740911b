"""Where a study's trials live: Optuna storages (a journal file locally, PostgreSQL for
many machines), the per-stage Optuna studies, the QMC queue, and stale trials of dead workers.

Crash safety: each trial's worker writes a heartbeat into its trial; a trial left
"running" by a dead process (same rule as danlu's crashed runs,
:func:`danlu.store.base.is_crashed`) is marked failed and its point queued again
(:func:`requeue_stale`), whenever a study is resumed or a worker starts.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from danlu.store.base import redact_credentials
from danlu.tuning.halving import QUEUE_ATTRS
from danlu.tuning.space import Space
from danlu.tuning.spec import StudyError, StudySpec

__all__ = [
    "TRIAL_STALE_AFTER", "HEARTBEAT_EVERY", "local_storage_url", "default_storage_url", "quiet_optuna", "open_storage",
    "stage_study_name", "load_optuna_study", "spec_from_storage", "qmc_points", "trial_is_dead",
    "requeue_stale", "finite",
]

#: A running trial whose heartbeat is older than this (seconds) belongs to a dead worker.
TRIAL_STALE_AFTER = 60.0
#: How often a worker refreshes the heartbeat of the trial it runs (seconds).
HEARTBEAT_EVERY = 5.0


# ----------------------------------------------------------------- storages
def local_storage_url(store_root: Path | str) -> str:
    """The default, server-less Optuna storage: a journal file in the danlu store folder."""
    return "journal:" + str(Path(store_root).resolve() / "studies.journal")


def default_storage_url(store: Any) -> str:
    """The study storage that goes with a danlu store: the journal file in its folder, or for
    the team store on PostgreSQL the same database and schema (every machine reaches it, so
    workers on other hosts join without a --storage of their own)."""
    return getattr(store, "database_url", None) or local_storage_url(store.root)


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
        from optuna.storages.journal import JournalStorage

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(_journal_file(str(path)))
    if "://" not in url:
        raise StudyError(
            f"storage {url!r} is not a storage URL; use e.g. postgresql://user:pass@host/db "
            "(or leave it out for the local journal file in the store)."
        )
    try:
        return optuna.storages.RDBStorage(_rdb_url(url), engine_kwargs={"pool_pre_ping": True})
    except ImportError as exc:
        from danlu.errors import MissingExtra

        module = "psycopg2" if url.startswith("postgres") else str(exc.name or "a database driver")
        raise MissingExtra(module, "postgres", f"A {url.split('://')[0]}:// study storage") from exc
    except Exception as exc:
        raise StudyError(f"Cannot open the study storage {redact_credentials(url)}: {type(exc).__name__}: {exc}. "
                         "Check that the database server runs and the URL's user, password and database exist.") from exc


def _journal_file(path: str):
    """Optuna's journal file, each record appended under its lock and flushed to the operating
    system but not fsync'd: the durability the danlu store keeps (SQLite ``synchronous=NORMAL``):
    nothing is lost when a process is killed, the last records may be on a power loss. An fsync
    per record cost 0.5-1.2 ms, and a trial writes about 20 (its parameters, reports, outcome):
    10-25 ms, beside 21 ms of training in a 15-step screening trial of a small MLP
    (benchmarks/trial_overhead.py prints the cost of a record with and without)."""
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    class UnsyncedJournalFile(JournalFileBackend):
        def __init__(self, file_path: str) -> None:
            self._append_path, self._append_lock = file_path, JournalFileSymlinkLock(file_path)
            super().__init__(file_path, lock_obj=self._append_lock)

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
            self._append_lock.acquire()
            try:
                with open(self._append_path, "ab") as f:
                    f.write(text)
            finally:
                self._append_lock.release()

    return UnsyncedJournalFile(path)


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


def stage_study_name(name: str, stage: int) -> str:
    """The Optuna study holding one stage of a danlu study."""
    return f"{name}#{stage}"


def load_optuna_study(storage, name: str, stage: int, sampler=None):
    import optuna

    try:
        return optuna.load_study(study_name=stage_study_name(name, stage), storage=storage, sampler=sampler)
    except KeyError as exc:
        raise StudyError(f"The storage has no study '{name}' (stage {stage + 1}). Start it with "
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
            attrs = {k: v for k, v in t.user_attrs.items() if k in QUEUE_ATTRS}
            attrs["requeue_of"] = t.number
            study.enqueue_trial(dict(params), user_attrs=attrs, skip_if_exists=False)
        requeued.append(t.number)
    return requeued


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
