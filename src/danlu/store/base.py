"""The Store interface: where runs, their curves, reports and artefacts live.

Contract for implementations (compare optuna/storages/_base.py):
- Every method is safe to call from several processes at once on the same store, and
  from several threads of one process; no method raises "database is locked" under
  8 concurrent writers.
- Points are keyed by (run, series, step); logging a step again replaces its value
  (so a resumed run rewrites the steps it redoes; within one write, the later point of
  a step wins). Values are floats and come back exactly, NaN and +-Inf included (a
  backend may read -0.0 back as 0.0; SQLiteStore keeps the sign).
- Readers never need a writer to be alive: a run whose process died is reported, and
  persisted, with status "crashed" when it is next read (see ``is_crashed`` for the
  exact rule). The owner of a running run keeps it alive with ``heartbeat`` at least
  every ``HEARTBEAT_STALE_AFTER`` seconds (``BatchedWriter`` does so every second).
- Artefacts (checkpoints, code snapshots, report images) live under
  ``run_dir(run_id)``; the database holds only small values.

Backend-independent pieces live here, written once: run-name generation and
validation, and the crash-detection rule.
"""

from __future__ import annotations

import abc
import functools
import os
import random
import re
import socket
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from danlu.errors import StoreError

__all__ = [
    "RunRecord",
    "ReportRecord",
    "Store",
    "RunStatus",
    "RunKind",
    "RUN_STATUSES",
    "RUN_KINDS",
    "HEARTBEAT_STALE_AFTER",
    "is_crashed",
    "process_identity",
    "make_run_name",
    "check_run_name",
    "redact_credentials",
    "default_store_path",
]

RunStatus = Literal["running", "finished", "failed", "crashed", "stopped"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)

#: What made a run: `danlu train` ("train"), danlu.init ("init"), the doctor ("check"), the
#: audit ("audit"), the LR search ("lr"), a study ("study"). Stores accept other kinds too.
RunKind = Literal["train", "init", "check", "audit", "lr", "study"]
RUN_KINDS: tuple[RunKind, ...] = get_args(RunKind)

#: A running run whose last heartbeat is older than this (seconds) is crashed.
HEARTBEAT_STALE_AFTER = 30.0


@dataclass
class RunRecord:
    """One run as stored: identity, settings, outcome and reproducibility record."""

    id: str
    name: str
    kind: str = "train"                  # one of RUN_KINDS (or a kind of the user's own)
    status: RunStatus = "running"
    recipe: str | None = None            # recipe spec, e.g. "/abs/examples/digits.py:Digits"
    note: str = ""                       # strategy note (E2)
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)     # hyperparameters
    summary: dict[str, Any] = field(default_factory=dict)    # best val loss, metrics, epoch of best
    repro: dict[str, Any] = field(default_factory=dict)      # reproducibility record (E1)
    command: str = ""
    parent: str | None = None            # run this one resumes / reproduces
    created: float = 0.0
    ended: float | None = None
    heartbeat: float | None = None
    pid: int | None = None
    host: str | None = None

    @property
    def duration(self) -> float | None:
        end = self.ended or self.heartbeat
        return None if end is None else max(0.0, end - self.created)


@dataclass
class ReportRecord:
    id: int
    run_id: str | None
    kind: str
    created: float
    data: dict[str, Any]


def default_store_path() -> Path:
    """$DANLU_HOME if set (and not empty), else ./.danlu in the working directory."""
    return Path(os.environ.get("DANLU_HOME") or ".danlu")


# ------------------------------------------------------------------ credentials
_PASSWORD_IN_URL = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@/\s]+@")


def redact_credentials(text: str) -> str:
    """Text with the password of every URL in it (``scheme://user:password@host``) replaced by
    ``***``: store URLs reach command lines, and command lines reach run records and logs."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", text)


# ------------------------------------------------------------------ crash detection
@functools.lru_cache(maxsize=1)
def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_identity() -> tuple[int, str, str]:
    """(pid, hostname, pid namespace) of the calling process, as stored with a run.

    The pid namespace (Linux: the link text of /proc/self/ns/pid, else "") keeps two
    containers that share a hostname from judging each other's pids.
    """
    return os.getpid(), socket.gethostname(), _pid_namespace()


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for us
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
        return state not in (b"Z", b"X", b"x")
    except (OSError, ValueError):
        return True


def is_crashed(
    run: RunRecord,
    *,
    pidns: str | None = None,
    now: float | None = None,
    stale_after: float = HEARTBEAT_STALE_AFTER,
) -> bool:
    """Whether a run recorded as "running" has in fact died. The rule:

    1. its last sign of life (heartbeat, else creation time) is older than
       ``stale_after`` seconds -> crashed, whatever host it ran on and whether or not
       a process with its pid exists (that pid may have been reused); or
    2. it ran on this host, in this pid namespace, and no live process has its pid
       (a zombie counts as dead) -> crashed at once, so a ``kill -9`` is seen on the
       next read without waiting for the heartbeat to go stale.

    A live pid is never taken as proof of life on its own (rule 1 wins), so pid reuse
    can delay detection by at most ``stale_after`` seconds but never hide a crash.
    A process stopped for longer than ``stale_after`` (e.g. SIGSTOP) is reported
    crashed; its next heartbeat sets it back to running (``Store.heartbeat``).
    ``pidns`` is the namespace stored with the run (None: unknown, skip rule 2).
    """
    if run.status != "running":
        return False
    now = time.time() if now is None else now
    last = run.heartbeat if run.heartbeat is not None else run.created
    if now - last > stale_after:
        return True
    if run.pid is None or sys.platform == "win32":  # os.kill(pid, 0) is not a probe on Windows
        return False
    _, host, my_ns = process_identity()
    if run.host != host or pidns is None or pidns != my_ns:
        return False
    return not _pid_alive(run.pid)


# ------------------------------------------------------------------------ run names
_ADJECTIVES = (
    "amber", "azure", "bold", "brave", "bright", "calm", "clever", "cobalt", "crimson",
    "dusky", "eager", "fierce", "gentle", "gilded", "golden", "hidden", "hollow", "honest",
    "jade", "keen", "lively", "lucid", "lunar", "mellow", "misty", "nimble", "noble",
    "patient", "plucky", "quiet", "rapid", "rusty", "scarlet", "serene", "silent",
    "silver", "smoky", "solar", "steady", "stormy", "swift", "tidy", "vivid", "wild",
    "windy", "wise", "young", "zesty",
)
_NOUNS = (
    "alembic", "anvil", "ash", "bellows", "cauldron", "cinder", "cinnabar", "comet",
    "copper", "crane", "crucible", "dragon", "ember", "falcon", "fern", "flame", "forge",
    "furnace", "garnet", "heron", "kiln", "lantern", "lotus", "lynx", "mercury", "meteor",
    "moth", "oak", "otter", "pearl", "phoenix", "pine", "quartz", "raven", "river",
    "sage", "salt", "smelt", "spark", "sulphur", "tiger", "tin", "turtle", "vapor",
    "willow", "wolf", "wren", "zephyr",
)


def make_run_name(rng: random.Random | None = None) -> str:
    """A short human name, adjective-noun-NN (e.g. "amber-falcon-07"): 230,400 of them."""
    rng = rng or random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(100):02d}"


_RESERVED_NAMES = {"last"}

#: Kinds of run that train a model; "last" means the newest of these when there is one.
TRAINING_KINDS = ("train", "init")
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f]")


def check_run_name(name: str) -> str:
    """Validate a user-given run name; return it stripped, or raise StoreError saying why."""
    if not isinstance(name, str):
        raise StoreError(f"a run name must be a string, got {type(name).__name__} {name!r}")
    cleaned = name.strip()
    if not cleaned:
        raise StoreError("a run name cannot be empty; omit it to get a generated name")
    if cleaned.lower() in _RESERVED_NAMES:
        raise StoreError(f"{cleaned!r} cannot be a run name: it is a keyword for RUN (the newest run)")
    if len(cleaned) > 100 or _BAD_NAME.search(cleaned):
        raise StoreError(
            f"run name {cleaned[:40]!r} is not usable: names are at most 100 characters "
            "without control characters"
        )
    return cleaned


# ----------------------------------------------------------------------- interface
class Store(abc.ABC):
    """Abstract run store. ``danlu.store.open_store`` picks the implementation."""

    root: Path

    # ---------------------------------------------------------------- runs
    @abc.abstractmethod
    def create_run(
        self,
        *,
        name: str | None = None,
        kind: str = "train",
        recipe: str | None = None,
        config: dict[str, Any] | None = None,
        note: str = "",
        tags: Sequence[str] = (),
        command: str = "",
        parent: str | None = None,
    ) -> RunRecord:
        """Create a run with status "running" owned by this process; return it.

        The id is 8 random hex characters; ``name`` defaults to a generated
        adjective-noun-NN name; a name already used in the store is a StoreError.
        """

    @abc.abstractmethod
    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set fields among status, summary, repro, note, ended, heartbeat, config, name,
        pid, host, kind, recipe, command, parent. Setting ``pid`` takes the run over for
        the calling process (crash detection then watches this process)."""

    @abc.abstractmethod
    def set_tags(self, run_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add and remove tags; return the run's tags, sorted."""

    @abc.abstractmethod
    def get_run(self, ref: str) -> RunRecord:
        """Resolve "last" (the newest training run, else the newest run), an exact id, an exact name, or a unique id
        prefix, in that order; raise RunNotFound otherwise (ambiguous prefixes list the
        candidates)."""

    @abc.abstractmethod
    def list_runs(
        self,
        *,
        tags: Sequence[str] = (),
        status: str | None = None,
        recipe: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        with_repro: bool = False,
    ) -> list[RunRecord]:
        """Runs, newest first, filtered (``tags``: runs carrying all of them).

        ``repro`` is left empty unless ``with_repro`` (it holds package lists and git
        diffs; decoding it for thousands of runs would make listing slow). Use
        ``get_run`` for one run's full record.
        """

    @abc.abstractmethod
    def put_run(self, record: RunRecord) -> None:
        """Write a record as it is, id, name and times included (copying a run between stores):
        a run with that id is overwritten field by field and its tags set to the record's. A
        name another run holds is a StoreError."""

    def heartbeat(self, run_id: str, when: float | None = None) -> None:
        """Record that the run's process is alive. A run wrongly judged crashed (its
        process was only paused) goes back to "running"."""
        run = self.get_run(run_id)
        fields: dict[str, Any] = {"heartbeat": time.time() if when is None else when}
        if run.status == "crashed":
            fields.update(status="running", ended=None)
        self.update_run(run_id, **fields)

    # -------------------------------------------------------------- points
    @abc.abstractmethod
    def log_points(
        self, run_id: str, points: Sequence[tuple[str, int, float, float]], *, checked: bool = True
    ) -> None:
        """Write (series, step, value, wall_time) points synchronously, in one transaction.

        ``checked=False`` promises Python ints for steps and Python floats for values and
        times (BatchedWriter converts at log time), so per-point conversion is skipped.
        """

    def log_columns(self, run_id: str, columns: Mapping[str, tuple[Any, Any, Any]]) -> None:
        """Write points given per series, ``{name: (steps, values, walls)}`` of equal
        lengths (int64 / float64 / float64 arrays or sequences), in one transaction, with
        ``log_points``' semantics (within a series, later points of a step win).

        ``BatchedWriter`` hands its batches over this way: a backend that stores columns
        (SQLiteStore) skips making and unpacking one tuple per point. This default
        builds the tuples and calls ``log_points``.
        """
        points = [
            (name, int(step), float(value), float(wall))
            for name, (steps, values, walls) in columns.items()
            for step, value, wall in zip(steps, values, walls)
        ]
        self.log_points(run_id, points)

    @abc.abstractmethod
    def series_names(self, run_id: str) -> list[str]:
        """Names of the series logged for a run, sorted."""

    @abc.abstractmethod
    def read_series(self, run_id: str, name: str, start: int | None = None, end: int | None = None):
        """(steps, values) as numpy arrays (int64, float64), sorted by step; ``start`` and
        ``end`` bound the steps, both inclusive. An unknown series gives empty arrays."""

    def read_walls(self, run_id: str, name: str):
        """(steps, wall times) of a series as numpy arrays, like read_series; None when this
        store cannot give the wall times back (export then uses the run's start)."""
        return None

    # ------------------------------------------------------------- reports
    @abc.abstractmethod
    def save_report(self, run_id: str | None, kind: str, data: dict[str, Any]) -> int:
        """Store a report (Report.to_dict()); return its id."""

    @abc.abstractmethod
    def list_reports(self, run_id: str | None = None, kind: str | None = None) -> list[ReportRecord]:
        """Reports, newest first."""

    @abc.abstractmethod
    def get_report(self, report_id: int) -> ReportRecord:
        """One report by id; StoreError if there is none."""

    # ----------------------------------------------------------- artefacts
    def run_dir(self, run_id: str, create: bool = True) -> Path:
        """Folder for a run's artefacts: <root>/runs/<id>/."""
        path = self.root / "runs" / run_id
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    # ----------------------------------------------------------- where
    @property
    def location(self) -> str:
        """What ``open_store`` takes to open this store again (in another process, a study
        worker). It may hold credentials: show people ``display`` instead."""
        return str(self.root)

    @property
    def display(self) -> str:
        """Where the store is, for people: its folder, or its URL without the password."""
        return str(self.root)

    # ----------------------------------------------------------- lifetime
    def close(self) -> None:  # noqa: B027 - optional to override: a store without handles has nothing to release
        """Release connections and handles. The store may not be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
