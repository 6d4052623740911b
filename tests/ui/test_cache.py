"""The caches in front of the store: curves read once (and incrementally while a run
goes on), the run list served stale-while-revalidate, never losing the user's edit."""

from __future__ import annotations

import threading
import time

import numpy as np

from danlu.store.base import RunRecord
from danlu.ui.cache import RunsSnapshot, SeriesCache


class Reader:
    def __init__(self):
        self.calls = []
        self.data = {("r", "loss"): (np.arange(10), np.arange(10.0))}

    def __call__(self, run_id, name, start):
        self.calls.append(start)
        steps, values = self.data[(run_id, name)]
        keep = steps >= (start or 0)
        return steps[keep], values[keep]


def test_series_cache_reads_once_when_finished_and_incrementally_when_running():
    reader = Reader()
    cache = SeriesCache(reader)
    assert len(cache.get("r", "loss", "finished")[0]) == 10
    cache.get("r", "loss", "finished")
    assert reader.calls == [None]                                   # finished: read once
    reader.data[("r", "loss")] = (np.arange(15), np.arange(15.0))
    steps, _ = cache.get("r", "loss", "running")                     # status changed: full read
    assert len(steps) == 15 and reader.calls == [None, None]
    reader.data[("r", "loss")] = (np.arange(20), np.arange(20.0))
    steps, values = cache.get("r", "loss", "running")                # running: only the new points
    assert reader.calls[-1] == 15 and len(steps) == 20 and values[-1] == 19.0


def test_series_cache_evicts_beyond_its_budget():
    reader = Reader()
    for i in range(5):
        reader.data[(f"r{i}", "loss")] = (np.arange(1000), np.zeros(1000))
    cache = SeriesCache(reader, max_bytes=3 * 16_000)
    for i in range(5):
        cache.get(f"r{i}", "loss", "finished")
    cache.get("r4", "loss", "finished")
    cache.get("r0", "loss", "finished")
    assert reader.calls.count(None) == 6                             # r0 had been evicted, r4 had not


def records(*names):
    return [RunRecord(n, n) for n in names]


def test_runs_snapshot_serves_stale_then_fresh():
    state = {"runs": records("a"), "reads": 0}

    def read():
        state["reads"] += 1
        return list(state["runs"])

    snap = RunsSnapshot(read, max_age=60)
    assert [r.id for r in snap.get()] == ["a"]
    state["runs"] = records("b", "a")
    assert [r.id for r in snap.get()] == ["a"] and state["reads"] == 1   # young: no read at all
    snap.max_age = 1e-9
    assert [r.id for r in snap.get()] == ["a"]                       # stale: answered, re-read behind
    deadline = time.monotonic() + 2
    while [r.id for r in snap.get()] != ["b", "a"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert state["reads"] >= 2
    fresh = RunsSnapshot(read, max_age=0)                            # 0: always read
    state["runs"] = records("c")
    assert [r.id for r in fresh.get()] == ["c"]


def test_runs_snapshot_blocks_after_a_long_idle():
    state = {"runs": records("a")}
    snap = RunsSnapshot(lambda: list(state["runs"]), max_age=0.01, max_stale=0.02)
    snap.get()
    state["runs"] = records("b")
    time.sleep(0.03)
    assert [r.id for r in snap.get()] == ["b"]


def test_runs_snapshot_keeps_an_edit_made_during_a_read():
    gate = threading.Event()
    old = RunRecord("a", "a", note="old")

    def slow_read():
        gate.wait(2)
        return [RunRecord("a", "a", note="old")]                      # read before the edit landed

    snap = RunsSnapshot(lambda: [old], max_age=0.0)
    snap.get()
    snap._read, snap.max_age = slow_read, 1e-6
    time.sleep(0.01)
    snap.get()                                                        # starts the slow background read
    snap.replace(RunRecord("a", "a", note="new"))
    gate.set()
    time.sleep(0.1)
    assert snap._records[0].note == "new"
