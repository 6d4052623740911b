"""Caches in front of the store, so the dashboard answers faster than the store reads.

Curves (:class:`SeriesCache`): kept in memory so zooming never re-reads the store.

Zooming re-downsamples a window of a series (see :mod:`danlu.ui.downsample`); the
downsampling takes milliseconds, reading a million points out of SQLite does not.
:class:`SeriesCache` holds the full arrays of the series charts asked for, so each
zoom costs only the downsampling:

- A finished run's series never change: read once, kept until evicted.
- A running run's series grow: only the points after the last cached step are read
  (``read_series(start=last + 1)``), so live charts stay cheap.
- When a run's status changes (it finished, or was resumed and rewrites steps),
  the series is read again in full.

Entries are evicted least-recently-used beyond ``max_bytes``. Thread-safe.

The run list (:class:`RunsSnapshot`): reading 10,000 runs out of SQLite takes longer
than the runs table may take to answer, so the table is served from the last read
while a fresh one runs in the background (stale-while-revalidate): at most
``max_age`` seconds old plus one read, which the page's 2-second polling hides.
Reads are spaced by at least four times their duration, so a large store costs
at most a fifth of a core while someone watches the table. After a long idle
time (``max_stale``) the read is done before answering.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["SeriesCache", "RunsSnapshot"]

Reader = Callable[[str, str, "int | None"], "tuple[np.ndarray, np.ndarray]"]


@dataclass
class _Entry:
    status: str
    steps: np.ndarray
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.steps.nbytes + self.values.nbytes)


class SeriesCache:
    """Full (steps, values) arrays per (run, series), refreshed incrementally while running."""

    def __init__(self, read: Reader, max_bytes: int = 512 * 2**20) -> None:
        self._read = read            # (run_id, name, start) -> (steps, values)
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.max_bytes = max_bytes

    def get(self, run_id: str, name: str, status: str) -> tuple[np.ndarray, np.ndarray]:
        """The series as of now; ``status`` is the run's current status."""
        key = (run_id, name)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is not None and entry.status == status and status != "running":
            return entry.steps, entry.values
        if entry is not None and entry.status == status == "running" and len(entry.steps):
            new_steps, new_values = self._read(run_id, name, int(entry.steps[-1]) + 1)
            if len(new_steps):
                entry = _Entry(
                    status,
                    np.concatenate([entry.steps, np.asarray(new_steps, dtype=np.int64)]),
                    np.concatenate([entry.values, np.asarray(new_values, dtype=np.float64)]),
                )
        else:
            steps, values = self._read(run_id, name, None)
            entry = _Entry(status, np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64))
        self._put(key, entry)
        return entry.steps, entry.values

    def _put(self, key: tuple[str, str], entry: _Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            total = sum(e.nbytes for e in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _, old = self._entries.popitem(last=False)
                total -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class RunsSnapshot:
    """The store's run list, re-read in the background once older than ``max_age``."""

    def __init__(
        self,
        read: Callable[[], list],
        max_age: float = 1.0,
        max_stale: float = 30.0,
        prepare: Callable[[list], object] | None = None,
    ) -> None:
        self._read = read
        self._prepare = prepare        # runs on each fresh list before it is served (builds rows)
        self.max_age = max_age
        self.max_stale = max_stale
        self._records: list | None = None
        self._at = 0.0                # monotonic time the current records were read from
        self._generation = 0          # bumped by replace(): a read started before is outdated
        self._lock = threading.Lock()
        self._refreshing = False
        self._read_seconds = 0.0

    def get(self) -> list:
        """The runs, newest first; blocks only for the first read or after a long idle."""
        age = time.monotonic() - self._at
        if self._records is None or self.max_age <= 0 or age > self.max_stale:
            return self._refresh()
        records = self._records
        if age > max(self.max_age, 4 * self._read_seconds):
            self._refresh_in_background()
        return records

    def replace(self, record) -> None:
        """Show a run the dashboard itself just changed (a note, tags) at once."""
        with self._lock:
            self._generation += 1
            if self._records is not None:
                self._records = [record if r.id == record.id else r for r in self._records]

    def _refresh(self) -> list:
        with self._lock:
            generation = self._generation
        started = time.monotonic()
        records = self._read()
        if self._prepare is not None:
            self._prepare(records)
        self._read_seconds = time.monotonic() - started
        with self._lock:
            if generation == self._generation or self._records is None:
                self._records, self._at = records, started
            return self._records

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def work() -> None:
            try:
                self._refresh()
            except Exception:  # noqa: BLE001 - the next blocking read reports store errors
                self._at = 0.0
            finally:
                self._refreshing = False

        threading.Thread(target=work, name="danlu-ui-runs", daemon=True).start()
