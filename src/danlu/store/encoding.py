"""What every store backend shares about encoding: points kept as chunks of little-endian
NumPy bytes (one chunk per series per write; the last write of a step wins on reading),
records' JSON fields, tags. SQLiteStore and PostgresStore both store exactly these bytes,
so a run copied between them comes back bit for bit (NaN, +-Inf and -0.0 included)."""

from __future__ import annotations

import dataclasses
import gc
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from danlu.errors import StoreError
from danlu.store.base import RunRecord

__all__ = ["MAX_CHUNK", "SMALL_CHUNK", "COMPACT_AFTER", "STEP", "FLOAT", "chunk_rows", "last_wins", "dumps",
           "clean_tags", "group_points", "clean_columns", "decode", "Columns", "run_records", "TAG_SEP",
           "UPDATABLE", "JSON_FIELDS", "PUT_RUN", "put_row"]

STEP = np.dtype("<i8")
FLOAT = np.dtype("<f8")
#: {series: (steps int64, values float64, walls float64)}
Columns = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]

#: Most points in one chunk (merges and migrated series are split at this size).
MAX_CHUNK = 65_536
#: A chunk with fewer points than this is "small": trailing runs of them get merged.
SMALL_CHUNK = 512
#: Merge a series' trailing small chunks once there are more than this many.
COMPACT_AFTER = 64

def chunk_rows(series_id: int, steps: np.ndarray, vals: np.ndarray, walls: np.ndarray) -> list[tuple]:
    """Rows for the chunks table: the points in their given order, split at MAX_CHUNK."""
    rows = []
    for lo in range(0, len(steps), MAX_CHUNK):
        s = steps[lo : lo + MAX_CHUNK]
        rows.append((
            series_id, int(s.min()), int(s.max()), len(s),
            s.astype(STEP, copy=False).tobytes(),
            vals[lo : lo + MAX_CHUNK].astype(FLOAT, copy=False).tobytes(),
            walls[lo : lo + MAX_CHUNK].astype(FLOAT, copy=False).tobytes(),
        ))
    return rows


def last_wins(steps: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort by step keeping the LAST occurrence of each step (points in write order).

    Strictly increasing steps (the common case) are returned untouched. Otherwise a
    stable sort keeps equal steps in write order, so the last of each run of equal
    steps is the newest write (timsort: near-linear on the few sorted runs a resumed
    run produces).
    """
    if len(steps) < 2 or bool((steps[1:] > steps[:-1]).all()):
        return (steps, *columns)
    order = np.argsort(steps, kind="stable")
    ordered = steps[order]
    keep = np.empty(len(ordered), dtype=bool)
    keep[-1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[:-1])
    order = order[keep]
    return (ordered[keep], *(column[order] for column in columns))


def dumps(value: Any, what: str) -> str:
    from danlu.plain import jsonable

    if not isinstance(value, Mapping):
        raise StoreError(f"{what} must be a dict, got {type(value).__name__}")
    return json.dumps(jsonable(dict(value)), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def clean_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags:
        text = str(tag).strip()
        if not text:
            raise StoreError("a tag cannot be empty")
        if any(ord(ch) < 32 for ch in text):
            raise StoreError(f"tag {text!r} contains a control character; use plain text")
        if text not in out:
            out.append(text)
    return out




def group_points(points: Sequence[tuple[str, int, float, float]], checked: bool = True) -> Columns:
    """(series, step, value, wall) points -> columns per series, each series' points in the
    order they came (``checked=False``: the caller promises Python ints and floats)."""
    n = len(points)
    names, steps, values, walls = zip(*points)
    if checked:  # int() and float() accept numpy scalars, tensors, bools
        step_arr = np.fromiter(map(int, steps), np.int64, n)
        value_arr = np.fromiter(map(float, values), np.float64, n)
        wall_arr = np.fromiter(map(float, walls), np.float64, n)
    else:  # the caller guarantees Python ints and floats (BatchedWriter)
        step_arr = np.array(steps, dtype=np.int64)
        value_arr = np.array(values, dtype=np.float64)
        wall_arr = np.array(walls, dtype=np.float64)
    del steps, values, walls
    unique = set(names)
    if any(type(name) is not str for name in unique):  # e.g. {0: loss}: series names are text
        names = tuple(map(str, names))
        unique = set(names)
    groups: dict[str, np.ndarray | None]
    if len(unique) == 1:
        groups = {next(iter(unique)): None}
    else:  # stable grouping: each series keeps its points in the order they came
        order_names = sorted(unique)
        code = {name: i for i, name in enumerate(order_names)}
        dtype = np.uint8 if len(code) <= 256 else np.uint16 if len(code) <= 65_536 else np.intp
        codes = np.fromiter(map(code.__getitem__, names), dtype, n)
        order = np.argsort(codes, kind="stable")  # radix sort for small codes
        pieces = np.split(order, np.cumsum(np.bincount(codes, minlength=len(code)))[:-1])
        groups = dict(zip(order_names, pieces))
    del names
    return {
        name: (step_arr, value_arr, wall_arr) if index is None
        else (step_arr[index], value_arr[index], wall_arr[index])
        for name, index in groups.items()
    }


def clean_columns(columns: Mapping[str, tuple[Any, Any, Any]]) -> Columns:
    """``log_columns``' input as int64 / float64 arrays of equal lengths per series (text names;
    keys that name one series twice are joined in the given order; empty series dropped)."""
    clean: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, (steps, values, walls) in columns.items():
        s = np.asarray(steps, dtype=np.int64).reshape(-1)
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        w = np.asarray(walls, dtype=np.float64).reshape(-1)
        if not len(s) == len(v) == len(w):
            raise StoreError(f"log_columns: series {name!r} has {len(s)} steps, {len(v)} values and "
                             f"{len(w)} wall times; give one of each per point")
        name = name if type(name) is str else str(name)
        if name in clean:  # e.g. keys 0 and "0": one series, points in the given order
            old_s, old_v, old_w = clean[name]
            clean[name] = (np.concatenate([old_s, s]), np.concatenate([old_v, v]), np.concatenate([old_w, w]))
        elif len(s):
            clean[name] = (s, v, w)
    return clean


def decode(chunks: Sequence[tuple[bytes, bytes]], start: int | None = None, end: int | None = None):
    """(steps, values) from a series' (steps, column) chunk bytes in write order: last write
    of a step wins, sorted by step, cut to [start, end]."""
    if not chunks:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    # concatenate copies: the arrays handed out are writable and own their memory
    steps = np.concatenate([np.frombuffer(c[0], STEP) for c in chunks]).astype(np.int64, copy=False)
    values = np.concatenate([np.frombuffer(c[1], FLOAT) for c in chunks]).astype(np.float64, copy=False)
    steps, values = last_wins(steps, values)
    if start is not None or end is not None:
        lo = 0 if start is None else int(np.searchsorted(steps, start, side="left"))
        hi = len(steps) if end is None else int(np.searchsorted(steps, end, side="right"))
        if lo > 0 or hi < len(steps):
            steps, values = steps[lo:hi].copy(), values[lo:hi].copy()
    return steps, values


#: Tags of a run come back joined by this character (tags cannot contain control characters).
TAG_SEP = "\x1f"

# run_records builds RunRecord positionally (it is faster); keep this in step with base.RunRecord
RECORD_ORDER = ("id", "name", "kind", "status", "recipe", "note", "tags", "config", "summary", "repro",
                 "command", "parent", "created", "ended", "heartbeat", "pid", "host")
assert tuple(f.name for f in dataclasses.fields(RunRecord)) == RECORD_ORDER, "update run_records"

UPDATABLE = {
    "name", "kind", "status", "recipe", "note", "config", "summary", "repro",
    "command", "parent", "ended", "heartbeat", "pid", "host",
}
JSON_FIELDS = {"config", "summary", "repro"}



def run_records(rows: Sequence[tuple], with_repro: bool) -> list[RunRecord]:
    """Rows of (id, name, kind, status, recipe, note, command, parent, created, ended, heartbeat,
    pid, host, pidns, config, summary, repro, tags joined by TAG_SEP) -> records, fast enough
    to list 10,000 runs: config and summary of all rows are decoded in one json.loads each
    (per-call overhead dominated), records are built positionally, and the cyclic GC is
    paused while the many small dicts are made."""
    if not rows:
        return []
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        configs = json.loads("[" + ",".join(r[14] for r in rows) + "]")
        summaries = json.loads("[" + ",".join(r[15] for r in rows) + "]")
        return [
            RunRecord(
                run_id, name, kind, status, recipe, note,
                sorted(tags.split(TAG_SEP)) if tags else [],
                config, summary,
                json.loads(repro) if with_repro and repro else {},
                command, parent, created, ended, heartbeat, pid, host,
            )
            for (run_id, name, kind, status, recipe, note, command, parent, created, ended, heartbeat,
                 pid, host, _pidns, _, _, repro, tags), config, summary in zip(rows, configs, summaries)
        ]
    finally:
        if gc_was_on:
            gc.enable()


_PUT_COLUMNS = ("id", "name", "kind", "status", "recipe", "note", "command", "parent", "created", "ended",
                "heartbeat", "pid", "host", "config", "summary", "repro")
#: Insert a whole run record, or overwrite the run with its id (both backends; %s placeholders).
PUT_RUN = (f"INSERT INTO runs ({', '.join(_PUT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_PUT_COLUMNS))}) "
           "ON CONFLICT (id) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in _PUT_COLUMNS[1:]))


def put_row(record: RunRecord) -> tuple:
    """The values PUT_RUN writes for a record, its JSON fields encoded."""
    from danlu.store.base import check_run_name, redact_credentials

    check_run_name(record.name)
    return (record.id, record.name, record.kind, record.status, record.recipe, record.note,
            redact_credentials(record.command),
            record.parent, record.created, record.ended, record.heartbeat, record.pid, record.host,
            dumps(record.config, "config"), dumps(record.summary, "summary"), dumps(record.repro, "repro"))
