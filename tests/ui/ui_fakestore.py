"""An in-memory :class:`danlu.store.base.Store` for the dashboard tests.

It implements the whole interface (so the API cannot rely on anything else) and
keeps artefacts on disk under ``root/runs/<id>/`` like the real store. The tests run
against it and, when ``danlu.store.open_store`` exists, against the SQLite store too.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from danlu.errors import RunNotFound
from danlu.store.base import ReportRecord, RunRecord, Store


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class MemoryStore(Store):
    """Thread-safe like the contract asks: one lock around every method."""

    def __init__(self, root: Path) -> None:
        self._lock = threading.RLock()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.runs: dict[str, RunRecord] = {}
        self.points: dict[tuple[str, str], dict[int, float]] = {}
        self.reports: list[ReportRecord] = []
        self._ids = itertools.count(1)
        self.writes: list[tuple[str, str]] = []   # (method, run_id): what the dashboard wrote

    @_locked
    def create_run(self, *, name=None, kind="train", recipe=None, config=None, note="", tags=(),
                   command="", parent=None) -> RunRecord:
        run_id = uuid.uuid4().hex[:12]
        rec = RunRecord(id=run_id, name=name or f"run-{len(self.runs) + 1}", kind=kind, recipe=recipe,
                        note=note, tags=list(tags), config=dict(config or {}), command=command,
                        parent=parent, created=time.time())
        self.runs[run_id] = rec
        return rec

    @_locked
    def put_run(self, record: RunRecord) -> None:
        self.writes.append(("put_run", record.id))
        self.runs[record.id] = replace(record, tags=sorted(record.tags))

    @_locked
    def update_run(self, run_id: str, **fields: Any) -> None:
        self.writes.append(("update_run", run_id))
        rec = self.runs[run_id]
        for key, value in fields.items():
            if key not in {"status", "summary", "repro", "note", "ended", "heartbeat", "config", "name",
                           "pid", "host", "created"}:
                raise ValueError(key)
            setattr(rec, key, value)

    @_locked
    def set_tags(self, run_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        self.writes.append(("set_tags", run_id))
        rec = self.runs[run_id]
        tags = [t for t in rec.tags if t not in set(remove)]
        tags += [t for t in add if t not in tags]
        rec.tags = tags
        return list(tags)

    @_locked
    def get_run(self, ref: str) -> RunRecord:
        if ref == "last" and self.runs:
            return max(self.runs.values(), key=lambda r: r.created)
        if ref in self.runs:
            return self.runs[ref]
        hits = [r for r in self.runs.values() if r.id.startswith(ref) or r.name == ref]
        if len(hits) == 1:
            return hits[0]
        raise RunNotFound(f"no run {ref!r}; `danlu runs` lists them")

    @_locked
    def list_runs(self, *, tags: Sequence[str] = (), status=None, recipe=None, kind=None, limit=None):
        out = [r for r in self.runs.values()
               if all(t in r.tags for t in tags) and (status is None or r.status == status)
               and (recipe is None or r.recipe == recipe) and (kind is None or r.kind == kind)]
        out.sort(key=lambda r: r.created, reverse=True)
        return out[:limit] if limit else out

    @_locked
    def log_points(self, run_id: str, points) -> None:
        for series, step, value, _wall in points:
            self.points.setdefault((run_id, series), {})[int(step)] = float(value)

    @_locked
    def series_names(self, run_id: str) -> list[str]:
        return sorted(name for rid, name in self.points if rid == run_id)

    @_locked
    def read_series(self, run_id: str, name: str, start=None, end=None):
        data = self.points.get((run_id, name), {})
        steps = np.array(sorted(data), dtype=np.int64)
        values = np.array([data[s] for s in steps.tolist()], dtype=np.float64)
        keep = np.ones(len(steps), bool)
        if start is not None:
            keep &= steps >= start
        if end is not None:
            keep &= steps <= end
        return steps[keep], values[keep]

    @_locked
    def save_report(self, run_id, kind, data) -> int:
        rec = ReportRecord(id=next(self._ids), run_id=run_id, kind=kind, created=time.time(), data=data)
        self.reports.append(rec)
        return rec.id

    @_locked
    def list_reports(self, run_id=None, kind=None):
        out = [r for r in self.reports if (run_id is None or r.run_id == run_id) and (kind is None or r.kind == kind)]
        return sorted(out, key=lambda r: r.id, reverse=True)

    @_locked
    def get_report(self, report_id: int) -> ReportRecord:
        for r in self.reports:
            if r.id == report_id:
                return r
        raise KeyError(report_id)
