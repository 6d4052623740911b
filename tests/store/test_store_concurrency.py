"""Eight processes write to one store at once (they even create it together): no point
lost, no "database is locked" (issue 2; BEGIN IMMEDIATE + busy timeout + back-off)."""

from __future__ import annotations

import multiprocessing
import queue

from store_child import concurrent_worker

from danlu.store import open_store

WORKERS = 8
STEPS = 2000  # x 2 series = 4,000 points per process


def test_eight_writer_processes_lose_nothing(tmp_path):
    folder = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WORKERS)
    errors = ctx.Queue()
    procs = [ctx.Process(target=concurrent_worker, args=(folder, i, STEPS, start, errors))
             for i in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    problems = []
    while True:
        try:
            problems.append(errors.get(timeout=0.5))
        except queue.Empty:
            break
    assert not problems, "\n".join(problems)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    with open_store(folder) as store:
        runs = {r.name: r for r in store.list_runs(tags=["concurrent"])}
        assert sorted(runs) == sorted(f"worker-{i}" for i in range(WORKERS))
        n_reports = len(range(0, STEPS, 500))
        for i in range(WORKERS):
            run = store.get_run(f"worker-{i}")
            assert run.status == "finished" and run.config == {"index": i}
            assert run.summary == {"last": (STEPS - 1) // 500 * 500}
            assert set(run.tags) == {"concurrent"} | {f"at-{s}" for s in range(0, STEPS, 500)}
            steps, loss = store.read_series(run.id, "loss")
            assert steps.tolist() == list(range(STEPS))
            assert loss.tolist() == [i + s / STEPS for s in range(STEPS)]
            assert store.read_series(run.id, "lr")[1].tolist() == [float(s) for s in range(STEPS)]
            reports = store.list_reports(run_id=run.id)
            assert sorted(r.data["step"] for r in reports) == list(range(0, STEPS, 500))
            assert len(reports) == n_reports
