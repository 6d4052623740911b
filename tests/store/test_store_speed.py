"""The SQLite store stays fast at scale: listing 10,000 runs, reading 1,000,000 points,
writing points in well under the 2 us per logged scalar that issue 2 allows.

The query-plan tests are fast and exact (the right index is used, no sort, no scan);
the timing tests are marked slow and take the best of a few tries, in CPU time, with
generous bounds (a shared machine must not fail them); the numbers themselves are
printed by running this file:

    .venv/bin/python tests/store/test_store_speed.py     # read / write timings, 1M points
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from danlu.store import BatchedWriter, SQLiteStore, open_store
from danlu.store.base import process_identity


def _plan(store: SQLiteStore, sql: str, params=()) -> str:
    rows = store._conn().execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return " | ".join(r[-1] for r in rows)


def test_list_runs_reads_in_index_order_without_sorting(tmp_path):
    with open_store(tmp_path / "s") as store:
        plan = _plan(store, "SELECT id FROM runs ORDER BY created DESC, rowid DESC")
        assert "runs_created" in plan and "TEMP B-TREE" not in plan, plan
        plan = _plan(store, "SELECT id FROM runs WHERE status = 'running'")
        assert "runs_status" in plan, plan


def test_read_series_uses_the_chunk_indexes(tmp_path):
    with open_store(tmp_path / "s") as store:
        plan = _plan(store, "SELECT steps, vals FROM chunks WHERE series_id = ? ORDER BY id", (1,))
        assert "SEARCH chunks USING" in plan and "TEMP B-TREE" not in plan, plan
        plan = _plan(store, "SELECT steps, vals FROM chunks WHERE series_id = ? AND last_step >= ? ORDER BY id",
                     (1, 0))
        assert "SEARCH chunks USING" in plan, plan
        plan = _plan(store, "SELECT id, n FROM chunks WHERE series_id = ? ORDER BY id DESC LIMIT 9", (1,))
        assert "SEARCH chunks USING" in plan and "TEMP B-TREE" not in plan, plan
        plan = _plan(store, "SELECT id FROM series WHERE run_id = ? AND name = ?", ("a", "b"))
        assert "SEARCH series USING" in plan, plan


def _best_of(n: int, fn) -> float:
    """Fastest of n calls, in CPU seconds of this process: on a shared machine wall time
    mostly measures the other processes (on a quiet one the two agree)."""
    best = float("inf")
    for _ in range(n):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.slow
def test_listing_ten_thousand_runs_is_well_under_300_ms(tmp_path):
    store = open_store(tmp_path / "s")
    pid, host, pidns = process_identity()
    now = time.time()
    config = json.dumps({f"h{i}": i * 0.1 for i in range(12)})
    summary = json.dumps({"best_val_loss": 0.1, "acc": 0.9, "epoch_of_best": 3})
    repro = json.dumps({"packages": {f"pkg{i}": "1.0" for i in range(300)}, "git_diff": "x" * 20_000})
    rows = [(f"{i:08x}", f"run-{i}", "train", "running" if i % 500 == 0 else "finished",
             "/p/digits.py:Digits", "", "danlu train", now - 10_000 + i, now, pid, host, pidns,
             config, summary, repro) for i in range(10_000)]

    def seed(conn):  # one transaction; create_run 10,000 times would only test patience
        conn.executemany(
            "INSERT INTO runs (id, name, kind, status, recipe, note, command, created, heartbeat, pid, "
            "host, pidns, config, summary, repro) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO tags VALUES (?, ?)", [(r[0], t) for r in rows for t in ("main", "cnn")])

    store._write(seed)
    listed = store.list_runs()
    assert len(listed) == 10_000 and listed[0].name == "run-9999" and listed[0].tags == ["cnn", "main"]
    assert _best_of(3, store.list_runs) < 0.3
    store.close()


N = 1_000_000


def _write_like_a_training_run(store, run_id: str, *, per_flush: int = 1000, keys: int = 1,
                               rewind_every: int = 0) -> tuple[float, np.ndarray]:
    """Log N points of series "loss" (plus ``keys - 1`` others, same steps) through a
    BatchedWriter, flushing every ``per_flush`` steps as its thread would. With
    ``rewind_every``, every that many steps the run "resumes" 10% further back and
    rewrites those steps. Returns (CPU seconds spent in flush per point logged, the
    expected "loss" values by step)."""
    writer = BatchedWriter(store, run_id, flush_interval=3600)  # we flush, not the thread
    values = np.random.default_rng(0).standard_normal(N)
    values[::1000] = np.nan
    final = np.empty(N)
    names = ["loss"] + [f"k{i}" for i in range(1, keys)]
    flush_cpu = 0.0
    step = logged = 0
    plain = values.tolist()
    while logged < N // keys:
        for _ in range(per_flush):
            if rewind_every and logged and logged % rewind_every == 0:
                step -= rewind_every // 10
            value = plain[logged]
            writer.log(dict.fromkeys(names, value), step)
            final[step] = value
            step += 1
            logged += 1
        started = time.thread_time()
        writer.flush()
        flush_cpu += time.thread_time() - started
    writer.close()
    return flush_cpu / (logged * keys), final[:step]


def _check_read(store, run_id, expected) -> float:
    elapsed = _best_of(3, lambda: store.read_series(run_id, "loss"))
    steps, got = store.read_series(run_id, "loss")
    assert np.array_equal(steps, np.arange(len(expected)))
    assert np.array_equal(got, expected, equal_nan=True)
    return elapsed


@pytest.mark.slow
def test_reading_a_million_points_written_by_the_writer(tmp_path):
    """Issue 5: the dashboard must get a 1M-point series to the browser in <= 100 ms."""
    store = open_store(tmp_path / "s")
    run = store.create_run()
    _, expected = _write_like_a_training_run(store, run.id)
    elapsed = _check_read(store, run.id, expected)
    assert elapsed < 0.1, f"reading 1M points took {elapsed * 1e3:.0f} ms"
    tail = _best_of(3, lambda: store.read_series(run.id, "loss", start=N - 100))
    assert tail < 0.01, f"reading the newest 100 of 1M points took {tail * 1e3:.1f} ms"
    store.close()


@pytest.mark.slow
def test_reading_a_million_points_with_rewritten_steps(tmp_path):
    store = open_store(tmp_path / "s")
    run = store.create_run()
    _, expected = _write_like_a_training_run(store, run.id, rewind_every=100_000)
    assert len(expected) < N  # steps were rewritten
    elapsed = _check_read(store, run.id, expected)
    assert elapsed < 0.2, f"reading 1M points with rewrites took {elapsed * 1e3:.0f} ms"
    store.close()


@pytest.mark.slow
def test_the_writer_costs_well_under_two_microseconds_per_point(tmp_path):
    """Issue 2: at most 2 us amortized per logged scalar, log() (~0.3 us) included."""
    store = open_store(tmp_path / "s")
    run = store.create_run()
    per_point, _ = _write_like_a_training_run(store, run.id, per_flush=100, keys=10)
    assert per_point < 1.5e-6, f"flushing cost {per_point * 1e6:.2f} us per point"
    store.close()


def main() -> None:  # pragma: no cover - prints the numbers the slow tests bound
    import tempfile
    from pathlib import Path

    print(f"{N:,} points per series; CPU time of this process (flush: of the flushing thread)")
    for label, kwargs in [
        ("1 key, 1,000 steps per flush", {"per_flush": 1000}),
        ("10 keys, 100 steps per flush (1,000 points)", {"per_flush": 100, "keys": 10}),
        ("1 key, 100 steps per flush", {"per_flush": 100}),
        ("1 key, 1,000 steps per flush, 10% rewritten every 100,000 steps", {"rewind_every": 100_000}),
    ]:
        with tempfile.TemporaryDirectory() as folder:
            store = open_store(Path(folder) / "s")
            run = store.create_run()
            per_point, expected = _write_like_a_training_run(store, run.id, **kwargs)
            read = _check_read(store, run.id, expected)
            tail = _best_of(5, lambda s=store, r=run, e=expected: s.read_series(r.id, "loss", start=len(e) - 100))
            chunks = store._conn().execute("SELECT count(*) FROM chunks").fetchone()[0]
            print(f"{label}:\n  writer flush {per_point * 1e6:.3f} us/point; read_series(loss) "
                  f"{read * 1e3:.1f} ms ({len(expected):,} points); newest 100 points {tail * 1e3:.2f} ms; "
                  f"{chunks} chunks")
            store.close()


if __name__ == "__main__":
    main()
