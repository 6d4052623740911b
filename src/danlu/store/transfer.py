"""Copy runs between stores: `danlu push RUN... --to URL`, `danlu pull RUN... --from URL`.

A run made offline on a laptop joins the team store later, with nothing lost and nothing
twice: the run keeps its id (so copying again updates the same run), each series is
written only when the target's differs (the last write of a step wins, so a rewrite is
exact), a report is added only when the target has no identical one, and a file of the
run's folder is copied when it is missing or differs in size or time. Paths inside the
record that point into the source's run folder are rewritten to the target's.
A run that is still running is refused: its points are still coming.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from danlu.errors import RunNotFound, StoreError
from danlu.store.base import RunRecord, Store

__all__ = ["Copied", "copy_runs"]


@dataclass
class Copied:
    """What copying one run did."""

    id: str
    name: str
    state: str          # "new", "updated" or "unchanged"
    series: int = 0     # series written (their points differed or were missing)
    points: int = 0     # points in those series
    reports: int = 0    # reports added
    files: int = 0      # files copied into the target's run folder
    renamed_from: str | None = None


def copy_runs(source: Store, target: Store, refs: Iterable[str]) -> list[Copied]:
    """Copy each run `refs` names (id, prefix, name, 'last') from `source` into `target`."""
    out = []
    for ref in refs:
        record = source.get_run(ref)
        if record.status == "running":
            raise StoreError(f"run {record.name} ({record.id}) is still running in {source.display}; copy it once "
                             "it has ended (its points are still coming)")
        out.append(_copy_one(source, target, record))
    return out


def _copy_one(source: Store, target: Store, record: RunRecord) -> Copied:
    existing: RunRecord | None = None
    try:
        found = target.get_run(record.id)
        existing = found if found.id == record.id else None   # not a run whose name is this id
    except RunNotFound:
        pass
    name, renamed = record.name, None
    if existing is None and _name_taken(target, record.name, record.id):
        name, renamed = f"{record.name}-{record.id[:4]}", record.name
    elif existing is not None:
        name = existing.name        # a run renamed in the target keeps its new name
    src_dir, dst_dir = source.run_dir(record.id, create=False), target.run_dir(record.id, create=False)
    moved = _moved(replace(record, name=name), str(src_dir), str(dst_dir))
    state = "new" if existing is None else ("unchanged" if _same(existing, moved) else "updated")
    if state != "unchanged":
        target.put_run(moved)
    result = Copied(record.id, name, state, renamed_from=renamed)
    for series in source.series_names(record.id):
        steps, values = source.read_series(record.id, series)
        if existing is not None:
            have_steps, have_values = target.read_series(record.id, series)
            if np.array_equal(have_steps, steps) and np.array_equal(have_values, values, equal_nan=True):
                continue
        walls = source.read_walls(record.id, series)
        wall = walls[1] if walls is not None and len(walls[1]) == len(steps) else np.full(len(steps), record.created)
        target.log_columns(record.id, {series: (steps, values, wall)})
        result.series += 1
        result.points += len(steps)
    have = {_report_key(r.kind, r.data) for r in target.list_reports(run_id=record.id)}
    for report in reversed(source.list_reports(run_id=record.id)):   # oldest first, as they were made
        data = _moved_value(report.data, str(src_dir), str(dst_dir))
        key = _report_key(report.kind, data)
        if key not in have:
            target.save_report(record.id, report.kind, data)
            have.add(key)
            result.reports += 1
    result.files = _copy_files(src_dir, dst_dir)
    if result.state == "unchanged" and (result.series or result.reports or result.files):
        result.state = "updated"
    return result


def _name_taken(store: Store, name: str, run_id: str) -> bool:
    try:
        return store.get_run(name).id != run_id
    except RunNotFound:
        return False


def _same(a: RunRecord, b: RunRecord) -> bool:
    fields = ("name", "kind", "status", "recipe", "note", "config", "summary", "repro", "command", "parent",
              "created", "ended")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and sorted(a.tags) == sorted(b.tags)


def _report_key(kind: str, data: Any) -> str:
    return kind + "\0" + json.dumps(data, sort_keys=True, default=str)


def _moved(record: RunRecord, old: str, new: str) -> RunRecord:
    return replace(record, summary=_moved_value(record.summary, old, new), repro=_moved_value(record.repro, old, new))


def _moved_value(value: Any, old: str, new: str) -> Any:
    """Strings that are paths into the source's run folder point into the target's."""
    if old == new:
        return value
    if isinstance(value, str):
        return new + value[len(old):] if value == old or value.startswith(old + "/") else value
    if isinstance(value, dict):
        return {k: _moved_value(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved_value(v, old, new) for v in value]
    return value


def _copy_files(src: Path, dst: Path) -> int:
    if not src.is_dir() or src.resolve() == dst.resolve():
        return 0
    copied = 0
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        to = dst / path.relative_to(src)
        stat = path.stat()
        if to.is_file():
            have = to.stat()
            if have.st_size == stat.st_size and int(have.st_mtime) == int(stat.st_mtime):
                continue
        to.parent.mkdir(parents=True, exist_ok=True)
        tmp = to.with_name(to.name + ".danlu-part")
        shutil.copy2(path, tmp)
        tmp.replace(to)   # a copy cut short never looks complete
        copied += 1
    return copied
