"""Run handles: tracking for the engine and for users' own training loops.

    with danlu.init(config={"lr": 1e-3}, name="baseline") as run:
        for step in range(1000):
            ...
            run.log({"train/loss": loss.item()}, step=step)

`run.log` only appends to an in-memory buffer; a background thread writes batches
to the store (see danlu.store.writer), so logging every batch (T1) costs microseconds.
"""

from __future__ import annotations

import atexit
import os
import shlex
import sys
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from danlu.report import Report
from danlu.store import open_store
from danlu.store.base import RunRecord, RunStatus, Store

__all__ = ["Run", "FollowerRun", "init", "open_run", "reopen_run", "current_run", "attach_report", "open_tool_run",
           "keep_report"]

_LIVE: weakref.WeakSet[Run] = weakref.WeakSet()


class Run:
    """A run being recorded: log points, save reports and artefacts, finish with a status."""

    def __init__(self, store: Store, record: RunRecord) -> None:
        from danlu.store.writer import BatchedWriter

        self.store = store
        self.record = record
        self._writer = BatchedWriter(store, record.id)
        self._auto_step = 0
        self._finished = False
        self._monitor: Any = None
        _LIVE.add(self)

    # ------------------------------------------------------------ identity
    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def dir(self) -> Path:
        """This run's artefact folder (checkpoints, code snapshot, report images)."""
        return self.store.run_dir(self.id)

    # ------------------------------------------------------------- logging
    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Record scalars at a step (default: one past the previous call's step)."""
        if step is None:
            step = self._auto_step
        self._auto_step = step + 1
        self._writer.log(values, step)

    def log_sample(self, values: Mapping[str, Any], step: int) -> None:
        """Record values at a step without moving the automatic step (background samplers)."""
        self._writer.log(values, step)

    @property
    def last_step(self) -> int:
        """The step of the latest `log` call (0 before any)."""
        return max(0, self._auto_step - 1)

    def monitor(self, interval: float | None = None, device: Any = None) -> None:
        """Record CPU, memory and GPU use every few seconds until the run finishes (danlu.monitor)."""
        from danlu.monitor import MONITOR_EVERY, ResourceMonitor

        if self._monitor is None:
            self._monitor = ResourceMonitor(self, lambda: self.last_step, device=device,
                                            interval=interval or MONITOR_EVERY).start()

    def flush(self) -> None:
        """Write buffered points now (before a checkpoint, or in tests)."""
        self._writer.flush()

    def save_report(self, report: Report) -> int:
        """Store a report with this run; return its id."""
        return self.store.save_report(self.id, report.kind, report.to_dict())

    def update_summary(self, **values: Any) -> None:
        """Merge values into the run's summary (best val loss, metrics, diagnosis, ...)."""
        self.record.summary.update(values)
        self.store.update_run(self.id, summary=self.record.summary)

    # ------------------------------------------------------------- closing
    def finish(self, status: RunStatus = "finished", summary: Mapping[str, Any] | None = None) -> None:
        """Flush every point, set the final status and summary. Safe to call twice."""
        if self._finished:
            return
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        self._finished = True
        self._writer.close()
        if summary:
            self.record.summary.update(summary)
        self.record.status = status
        self.store.update_run(self.id, status=status, summary=self.record.summary, ended=time.time())

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("stopped", {"stop_reason": "interrupted (Ctrl-C)"})
        else:
            self.finish("failed", {"error": f"{exc_type.__name__}: {exc}"})

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r})"


def open_run(
    *,
    store: Store | str | os.PathLike | None = None,
    kind: str = "init",
    name: str | None = None,
    note: str = "",
    tags: Iterable[str] = (),
    config: Mapping[str, Any] | None = None,
    recipe: str | None = None,
    command: str | None = None,
    parent: str | None = None,
) -> Run:
    """Create a run record in the store and return a live handle to it."""
    if not isinstance(store, Store):
        store = open_store(store)
    record = store.create_run(
        name=name,
        kind=kind,
        recipe=recipe,
        config=dict(config or {}),
        note=note,
        tags=list(tags),
        command=command if command is not None else shlex.join(sys.argv),
        parent=parent,
    )
    return Run(store, record)


def reopen_run(store: Store, record: RunRecord) -> Run:
    """Take over an existing run (resume): mark it running and owned by this process."""
    import socket

    store.update_run(record.id, status="running", ended=None, pid=os.getpid(),
                     host=socket.gethostname(), heartbeat=time.time())
    record = store.get_run(record.id)
    return Run(store, record)


def init(
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    note: str = "",
    tags: Iterable[str] = (),
    store: Store | str | os.PathLike | None = None,
    quiet: bool = False,
    monitor: bool = True,
) -> Run:
    """Start tracking a run from your own training loop (E1, T1); returns a Run.

    Records the config, the command line and the reproducibility record of the calling
    script (git commit and diff, environment); finish with run.finish() or use `with`.
    Says once, on stderr, where the run is kept and how to look at it (quiet=True: not).
    Records CPU, memory and GPU use every few seconds (monitor=False: not; danlu.monitor).
    """
    run = open_run(store=store, kind="init", name=name, note=note, tags=tags, config=config)
    if not quiet:
        from danlu.store.base import redact_credentials

        flag = "" if store is None else f" --store '{redact_credentials(run.store.location)}'"
        print(f"danlu: tracking run {run.name} ({run.id}) in {run.store.display}; look at it with "
              f"`danlu show {run.id}{flag}` or `danlu ui{flag}`", file=sys.stderr)
    try:
        from danlu.repro import capture

        script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] not in ("", "-c") else None
        record = capture(script if script and script.is_file() else None, argv=sys.argv,
                         hparams=dict(config or {}))
        run.store.update_run(run.id, repro=record)
    except Exception as exc:  # capture must never stop a user's training
        run.store.update_run(run.id, repro={"error": f"capture failed: {exc!r}"})
    if monitor:
        import torch

        run.monitor(device="cuda" if torch.cuda.is_available() else None)
    return run


def attach_report(store: Store, run_id: str, report: Report, image_root: str | os.PathLike | None = None) -> int:
    """Store a report with a run, copying its images and files (paths relative to image_root) into the run's folder."""
    import shutil

    folder = store.run_dir(run_id)
    if image_root is not None:
        for rel in [*report.images, *report.files]:
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(image_root) / rel, target)
    report.meta["run_id"] = run_id
    return store.save_report(run_id, report.kind, report.to_dict())


def open_tool_run(
    store: Store | str | os.PathLike | None,
    kind: str,
    recipe: Any = None,
    *,
    name: str | None = None,
    note: str = "",
    tags: Iterable[str] = (),
    data: Mapping[str, Any] | None = None,
) -> Run:
    """A run for a tool's work on a recipe (a check, an audit, an LR search): the recipe, its
    hyperparameters and the reproducibility record (E1), like a training run's."""
    from danlu.recipe import recipe_source, recipe_spec
    from danlu.repro import capture

    config = recipe.hparams() if recipe is not None else {}
    run = open_run(store=store, kind=kind, name=name, note=note, tags=tags, config=config,
                   recipe=recipe_spec(recipe) if recipe is not None else None)
    try:
        record = capture(recipe_source(recipe) if recipe is not None else None, argv=sys.argv, hparams=config,
                         seed=getattr(recipe, "seed", None))
        if data is not None:
            record["data"] = dict(data)
    except Exception as exc:  # a record must never stop the report from being kept
        record = {"error": f"capture failed: {exc!r}"}
    run.store.update_run(run.id, repro=record)
    return run


def keep_report(
    report: Report,
    *,
    store: Store | str | os.PathLike | None = None,
    run: Run | str | None = None,
    recipe: Any = None,
    image_root: str | os.PathLike | None = None,
    name: str | None = None,
    tags: Iterable[str] = (),
    summary: Mapping[str, Any] | None = None,
) -> str:
    """Keep a tool's report in the store; return the id of the run that holds it.

    - ``run=None``: a new run of the report's kind (:func:`open_tool_run`), finished with
      the report's status and counts as its summary (what run tables show);
    - ``run=<Run handle>``: the report goes to that open run, which is then finished;
    - ``run="<id>"``: the report is attached to an existing run (e.g. the training run
      whose data was audited, whose errors were studied or whose curves were read).

    Images listed in the report are copied from `image_root` into the run's folder.
    """
    if isinstance(run, str):
        if not isinstance(store, Store):
            store = open_store(store)
        attach_report(store, run, report, image_root)
        return run
    handle = run if run is not None else open_tool_run(store, report.kind, recipe, name=name, tags=tags,
                                                       data=report.meta.get("data"))
    attach_report(handle.store, handle.id, report, image_root)
    counts = {k: v for k, v in report.counts().items() if v}
    handle.finish("finished", dict(summary) if summary is not None else {report.kind: report.status, **counts})
    return handle.id


class FollowerRun:
    """The run as the other processes of a multi-process run see it (danlu.distributed): the same id,
    name and folder as rank 0's, and nothing written: rank 0 owns the record, curves and checkpoints."""

    def __init__(self, store: Store, record: RunRecord) -> None:
        self.store = store
        self.record = record

    id = property(lambda self: self.record.id)
    name = property(lambda self: self.record.name)
    dir = property(lambda self: self.store.run_dir(self.record.id, create=False))
    last_step = property(lambda self: 0)

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_sample(self, values: Mapping[str, Any], step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def save_report(self, report: Report) -> int:
        return 0

    def update_summary(self, **values: Any) -> None:
        self.record.summary.update(values)

    def finish(self, status: RunStatus = "finished", summary: Mapping[str, Any] | None = None) -> None:
        if summary:
            self.record.summary.update(summary)
        self.record.status = status


def current_run() -> Run | None:
    """The one unfinished run of this process, or None when there is none or several."""
    live = [r for r in list(_LIVE) if not r._finished]
    return live[0] if len(live) == 1 else None


@atexit.register
def _finish_forgotten_runs() -> None:
    # A user loop that never calls finish() still leaves a finished run, not a "crashed" one.
    for run in list(_LIVE):
        try:
            run.finish("finished")
        except Exception:
            pass
