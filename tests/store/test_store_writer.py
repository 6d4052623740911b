"""BatchedWriter: log() only queues, a daemon thread writes batches and heartbeats (T1:
logging every batch must not slow training). Run against every store backend."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import torch

from danlu.errors import StoreError
from danlu.store import BatchedWriter, Store


class CountingStore:
    """Wraps a store; counts log_points calls and can fail the first ``fail`` of them."""

    def __init__(self, inner: Store, fail: int = 0) -> None:
        self.inner, self.fail, self.calls, self.beats = inner, fail, [], 0

    def log_points(self, run_id, points, *, checked=True):
        self.calls.append(len(points))
        if self.fail > 0:
            self.fail -= 1
            raise StoreError("disk full (planted)")
        self.inner.log_points(run_id, points, checked=checked)

    def heartbeat(self, run_id, when=None):
        self.beats += 1
        self.inner.heartbeat(run_id, when)


def test_flush_writes_everything_logged(store: Store):
    run = store.create_run()
    writer = BatchedWriter(store, run.id, flush_interval=60)  # the thread will not get there first
    for step in range(500):
        writer.log({"train/loss": 1.0 / (step + 1), "lr": step * 1e-4}, step)
    writer.flush()
    steps, values = store.read_series(run.id, "train/loss")
    assert steps.tolist() == list(range(500))
    assert values.tolist() == [1.0 / (s + 1) for s in range(500)]
    assert store.read_series(run.id, "lr")[1][-1] == 499 * 1e-4
    writer.close()


def test_points_reach_the_store_without_flush(make_store, store: Store):
    run = store.create_run()
    reader = make_store()  # a second handle: what any other process would see
    writer = BatchedWriter(store, run.id)
    writer.log({"x": 1.5}, 0)
    logged = time.monotonic()
    while len(reader.read_series(run.id, "x")[0]) == 0:
        assert time.monotonic() - logged < 2.0, "point not written by the background thread"
        time.sleep(0.01)
    writer.close()


def test_background_writes_in_batches(store: Store):
    run = store.create_run()
    counting = CountingStore(store)
    writer = BatchedWriter(counting, run.id, flush_interval=0.1)
    start = time.monotonic()
    for step in range(5000):
        writer.log({"a": 1.0, "b": 2.0}, step)
    time.sleep(0.15)
    elapsed = time.monotonic() - start
    writer.close()
    assert sum(counting.calls) == 10_000
    assert len(counting.calls) <= elapsed / 0.1 + 2  # one write per interval at most (+ close)


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_non_finite_values_and_number_types(store: Store):
    run = store.create_run()
    with BatchedWriter(store, run.id) as writer:
        writer.log({"v": float("nan")}, 0)
        writer.log({"v": float("inf")}, 1)
        writer.log({"v": -math.inf}, 2)
        writer.log({"v": np.float32(0.25)}, 3)
        writer.log({"v": torch.tensor(0.5)}, 4)
        writer.log({"v": torch.tensor([7.0], requires_grad=True).sum()}, np.int64(5))
        writer.log({"v": 3}, torch.tensor(6))
        writer.log({"v": True}, 7)
    values = store.read_series(run.id, "v")[1]
    assert math.isnan(values[0])
    assert values[1:].tolist() == [math.inf, -math.inf, 0.25, 0.5, 7.0, 3.0, 1.0]


def test_non_text_keys_become_series_names(store: Store):
    run = store.create_run()
    with BatchedWriter(store, run.id) as writer:
        writer.log({0: 1.0, "1": 2.0}, 0)
        writer.log({0: 3.0}, 1)
    assert store.series_names(run.id) == ["0", "1"]
    assert store.read_series(run.id, "0")[1].tolist() == [1.0, 3.0]


def test_relogging_a_step_keeps_the_last_value(store: Store):
    run = store.create_run()
    with BatchedWriter(store, run.id) as writer:
        writer.log({"loss": 1.0}, 10)
        writer.flush()
        writer.log({"loss": 2.0}, 10)
        writer.log({"loss": 3.0}, 10)
    assert store.read_series(run.id, "loss")[1].tolist() == [3.0]


def test_values_are_copied_at_log_time(store: Store):
    run = store.create_run()
    values = {"loss": 1.0}
    with BatchedWriter(store, run.id, flush_interval=60) as writer:
        writer.log(values, 0)
        values["loss"] = 99.0  # a reused dict must not change what was logged
        values["new"] = 5.0
    assert store.read_series(run.id, "loss")[1].tolist() == [1.0]
    assert store.series_names(run.id) == ["loss"]


@pytest.mark.parametrize(
    "values, step, match",
    [
        ({"acc": "high"}, 0, r"'acc' at step 0 is str"),
        ({"w": torch.ones(3)}, 0, r"'w' at step 0 is Tensor"),
        ({"x": None}, 0, r"'x' at step 0 is NoneType"),
        ({"x": 1.0}, 1.5, r"step must be an integer"),
        ([("x", 1.0)], 0, r"takes a dict"),
    ],
)
def test_bad_values_fail_in_log_naming_the_key(store: Store, values, step, match):
    run = store.create_run()
    with BatchedWriter(store, run.id) as writer:
        with pytest.raises(TypeError, match=match):
            writer.log(values, step)
        writer.log({"ok": 1.0}, 0)  # the writer still works
    assert store.read_series(run.id, "ok")[1].tolist() == [1.0]


def test_log_after_close_is_refused(store: Store):
    run = store.create_run()
    writer = BatchedWriter(store, run.id)
    writer.close()
    writer.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        writer.log({"x": 1.0}, 0)


def test_failed_writes_are_retried_not_lost(store: Store, caplog):
    run = store.create_run()
    flaky = CountingStore(store, fail=2)
    writer = BatchedWriter(flaky, run.id, flush_interval=60)
    writer.log({"x": 1.0}, 0)
    with pytest.raises(StoreError, match="disk full"):
        writer.flush()
    writer.log({"x": 2.0}, 1)
    with pytest.raises(StoreError, match="disk full"):
        writer.flush()
    writer.log({"x": 3.0}, 2)
    writer.close()  # third attempt succeeds: every point arrives
    assert store.read_series(run.id, "x")[1].tolist() == [1.0, 2.0, 3.0]
    assert "will retry" in caplog.text


def test_heartbeat_is_kept_fresh(store: Store):
    run = store.create_run()
    store.update_run(run.id, heartbeat=run.created - 1000)
    counting = CountingStore(store)
    writer = BatchedWriter(counting, run.id, flush_interval=0.02, heartbeat_interval=0.05)
    time.sleep(0.4)
    writer.close()
    assert counting.beats >= 3
    assert store.get_run(run.id).heartbeat >= run.created


def test_log_from_several_threads(store: Store):
    run = store.create_run()
    writer = BatchedWriter(store, run.id)

    def work(name):
        for step in range(2000):
            writer.log({name: float(step)}, step)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    for i in range(4):
        assert store.read_series(run.id, f"t{i}")[1].tolist() == [float(s) for s in range(2000)]


def test_a_store_without_the_checked_keyword_still_works(store: Store):
    class Legacy:  # a backend written against the first log_points signature
        def __init__(self, inner):
            self.inner = inner

        def log_points(self, run_id, points):
            self.inner.log_points(run_id, points)

        def heartbeat(self, run_id, when=None):
            self.inner.heartbeat(run_id, when)

    run = store.create_run()
    with BatchedWriter(Legacy(store), run.id) as writer:
        writer.log({"x": np.float32(0.5)}, 0)
    assert store.read_series(run.id, "x")[1].tolist() == [0.5]
