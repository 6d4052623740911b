"""The background batched writer: ``log`` costs well under 2 microseconds per scalar.

Logging every batch (practice T1) must not slow training, so ``BatchedWriter.log``
does no I/O: it converts the values to floats (so no tensor, and no autograd graph
behind it, is kept alive) and appends one tuple to a deque. A daemon thread wakes
every ``flush_interval`` seconds, turns everything queued into one array per series
(no per-point Python object: the values of the log calls that share the same keys
become one 2-D array in a single NumPy call), writes them in one ``log_columns`` call
(one transaction; SQLiteStore makes one chunk per series) and, every
``heartbeat_interval`` seconds, refreshes the run's heartbeat so readers can tell a
live run from a crashed one. Together, log() and the flush cost well under the 2 us
per scalar issue 2 allows (tests/store/test_store_speed.py measures it).

With the defaults a point is committed at most ~0.1 s (plus one write) after
``log`` returns, so a ``kill -9`` loses at most the last fraction of a second.

Thread safety: ``collections.deque.append`` and ``popleft`` are atomic, so ``log``
takes no lock; a lock only keeps the background thread and an explicit ``flush``
from writing the same batch twice or out of order.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import operator
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from itertools import chain, repeat
from typing import Any

import numpy as np

from danlu.errors import StoreError
from danlu.store.base import Store

__all__ = ["BatchedWriter"]

_log = logging.getLogger("danlu.store")


class BatchedWriter:
    """Buffer a run's points in memory; a daemon thread writes them in batches.

    >>> writer = BatchedWriter(store, run.id)          # doctest: +SKIP
    >>> writer.log({"train/loss": 0.7, "lr": 3e-4}, step=0)
    >>> writer.close()                                 # final flush; the thread ends

    ``flush()`` writes synchronously (before a checkpoint, in tests); ``close()`` is
    safe to call twice and also runs at interpreter exit for writers never closed.
    A write that fails in the background is kept and retried at the next flush; if
    it still fails, ``flush``/``close`` raise StoreError.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        flush_interval: float = 0.1,
        heartbeat_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_interval = float(flush_interval)
        self.heartbeat_interval = float(heartbeat_interval)
        self._queue: deque[tuple[int, float, tuple[str, ...], list[float]]] = deque()
        self._append = self._queue.append          # bound once: log() is one call deep
        self._io_lock = threading.Lock()
        self._retry: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._closed = False
        self._pid = os.getpid()
        self._last_beat = 0.0
        self._beat_failed = False
        self._unchecked = _accepts_checked(store)
        self._thread = threading.Thread(target=self._loop, name=f"danlu-writer-{run_id}", daemon=True)
        self._thread.start()
        self._at_exit = _closer(weakref.ref(self))
        atexit.register(self._at_exit)

    # ------------------------------------------------------------- hot path
    def log(self, values: Mapping[str, Any], step: int) -> None:
        """Queue ``values`` (name -> number) at ``step``. No I/O; microseconds."""
        try:
            self._append((operator.index(step), time.time(), tuple(values), list(map(float, values.values()))))
        except (TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise self._explain(values, step) from exc

    def _explain(self, values: Mapping[str, Any], step: Any) -> Exception:
        if self._closed:
            return StoreError(f"this writer for run {self.run_id} is closed; log before finishing the run")
        try:
            operator.index(step)
        except TypeError:
            return TypeError(f"step must be an integer, got {type(step).__name__} {step!r}")
        if not isinstance(values, Mapping):
            return TypeError(f"log() takes a dict of name -> number, got {type(values).__name__}")
        for key, value in values.items():
            try:
                float(value)
            except (TypeError, ValueError, RuntimeError):
                return TypeError(
                    f"logged value {key!r} at step {step} is {type(value).__name__} {value!r:.80}, not a "
                    "number; log Python numbers, NumPy scalars or one-element tensors"
                )
        return TypeError(f"cannot log {values!r:.200} at step {step}")

    # ------------------------------------------------------------ flushing
    def flush(self) -> None:
        """Write every point logged so far, now, in the calling thread."""
        self._drain()
        if self._error is not None:
            error, self._error = self._error, None
            raise StoreError(f"writing points of run {self.run_id} failed: {error}") from error

    def _drain(self) -> None:
        with self._io_lock:
            pop = self._queue.popleft
            entries = [pop() for _ in range(len(self._queue))]
            batch = _columns(entries) if entries else {}
            if self._retry:  # points of a failed write go first: they were logged first
                batch = _concat(self._retry, batch)
            self._retry = {}
            if not batch:
                return
            try:
                log_columns = getattr(self.store, "log_columns", None)
                if log_columns is not None:
                    log_columns(self.run_id, batch)
                else:  # a duck-typed store with only log_points
                    points = [point for name, (steps, values, walls) in batch.items()
                              for point in zip(repeat(name), steps.tolist(), values.tolist(), walls.tolist())]
                    if self._unchecked:  # ints and floats already
                        self.store.log_points(self.run_id, points, checked=False)
                    else:
                        self.store.log_points(self.run_id, points)
                self._error = None
            except Exception as exc:  # keep the points; the next flush retries them
                self._retry = batch
                if self._error is None:
                    _log.warning("danlu: writing %d points of run %s failed (will retry): %s",
                                 sum(len(c[0]) for c in batch.values()), self.run_id, exc)
                self._error = exc

    def _beat(self) -> None:
        self._last_beat = time.monotonic()
        try:
            self.store.heartbeat(self.run_id)
            self._beat_failed = False
        except Exception as exc:  # a missed heartbeat is not worth stopping training for
            if not self._beat_failed:
                _log.warning("danlu: heartbeat of run %s failed (will retry): %s", self.run_id, exc)
            self._beat_failed = True

    def _loop(self) -> None:
        self._beat()
        while True:
            stopping = self._stop.wait(self.flush_interval)
            self._drain()
            if not stopping and time.monotonic() - self._last_beat >= self.heartbeat_interval:
                self._beat()
            if stopping:
                return

    # ------------------------------------------------------------- closing
    def close(self) -> None:
        """Write what is queued, stop the thread. Safe to call twice."""
        if self._closed or os.getpid() != self._pid:  # a forked child owns no thread
            return
        self._closed = True
        self._append = _refuse
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        atexit.unregister(self._at_exit)
        self.flush()

    def __enter__(self) -> BatchedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Columns = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _columns(entries: list[tuple[int, float, tuple[Any, ...], list[float]]]) -> Columns:
    """Queued log calls -> {series: (steps int64, values float64, walls float64)}, each
    series' points in the order they were logged (so the last write of a step wins).

    Calls are grouped by their tuple of keys (a training loop logs the same keys every
    step: one group); a group's values are one (calls x keys) array made in one call.
    """
    steps_all, walls_all, keys_all, values_all = zip(*entries)
    steps = np.array(steps_all, dtype=np.int64)
    walls = np.array(walls_all, dtype=np.float64)
    first = keys_all[0]
    groups: dict[Any, np.ndarray | None]
    if keys_all.count(first) == len(keys_all):  # identity makes this fast for the same names
        groups = {first: None}
    else:
        positions: dict[tuple[Any, ...], list[int]] = {}
        for i, keys in enumerate(keys_all):
            positions.setdefault(keys, []).append(i)
        groups = {keys: np.array(where, dtype=np.intp) for keys, where in positions.items()}
    parts: dict[str, list[tuple[np.ndarray | None, np.ndarray]]] = {}
    for keys, where in groups.items():
        rows = values_all if where is None else [values_all[i] for i in where]
        # fromiter over the chained lists: ~30 ns per value, where np.array(rows) pays
        # per row (0.5 us per call when each call logs one key)
        matrix = np.fromiter(chain.from_iterable(rows), np.float64, len(rows) * len(keys))
        matrix = matrix.reshape(len(rows), len(keys))
        for j, key in enumerate(keys):
            name = key if type(key) is str else str(key)  # e.g. {0: loss}: series names are text
            parts.setdefault(name, []).append((where, matrix[:, j]))
    out: Columns = {}
    for name, pieces in parts.items():
        if len(pieces) == 1:
            where, values = pieces[0]
            if where is None:
                out[name] = (steps, np.ascontiguousarray(values), walls)
                continue
        else:  # the series is in several groups: back into call order (stable for equal keys)
            where = np.concatenate([w if w is not None else np.arange(len(steps)) for w, _ in pieces])
            values = np.concatenate([v for _, v in pieces])
            order = np.argsort(where, kind="stable")
            where, values = where[order], values[order]
        out[name] = (steps[where], np.ascontiguousarray(values), walls[where])
    return out


def _concat(first: Columns, second: Columns) -> Columns:
    out = dict(first)
    for name, columns in second.items():
        out[name] = (tuple(np.concatenate(pair) for pair in zip(out[name], columns))  # type: ignore[assignment]
                     if name in out else columns)
    return out


def _accepts_checked(store: object) -> bool:
    """Whether store.log_points takes ``checked=`` (stores written before it existed do not)."""
    try:
        return "checked" in inspect.signature(store.log_points).parameters  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return False


def _refuse(item: object) -> None:
    raise RuntimeError("writer closed")


def _closer(ref: weakref.ref[BatchedWriter]):
    def close_at_exit() -> None:
        writer = ref()
        if writer is not None:
            try:
                writer.close()
            except Exception as exc:  # pragma: no cover - exit path
                _log.warning("danlu: final flush of run %s failed: %s", writer.run_id, exc)

    return close_at_exit
