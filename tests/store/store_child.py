"""Code that runs in other processes for the store tests (importable by spawn children).

    python store_child.py crash STORE     log forever; print "step wall" after each log
"""

from __future__ import annotations

import os
import sys
import time


def crash_child(store_path: str) -> None:
    """Create run "victim", then log two series every ~2 ms until killed.

    After each ``log`` returns, "<step> <time.time()>" goes straight to the stdout pipe
    (os.write: no buffer to lose at kill -9), so the parent knows what was logged when.
    """
    from danlu.store import BatchedWriter, open_store

    store = open_store(store_path)
    run = store.create_run(name="victim")
    writer = BatchedWriter(store, run.id)
    os.write(1, f"ready {run.id}\n".encode())
    step = 0
    while True:
        writer.log({"a": step * 0.5, "b": -float(step)}, step)
        os.write(1, f"{step} {time.time()!r}\n".encode())
        step += 1
        time.sleep(0.002)


def concurrent_worker(store_path: str, index: int, steps: int, start, errors) -> None:
    """One of 8 processes sharing a store: its own run, points, reports, tags, summary."""
    try:
        from danlu.store import BatchedWriter, open_store

        start.wait(timeout=120)  # every process opens the (maybe new) store at once
        store = open_store(store_path)
        run = store.create_run(name=f"worker-{index}", tags=["concurrent"], config={"index": index})
        writer = BatchedWriter(store, run.id, flush_interval=0.02)
        for step in range(steps):
            writer.log({"loss": index + step / steps, "lr": float(step)}, step)
            if step % 500 == 0:
                store.save_report(run.id, "probe", {"step": step, "worker": index})
                store.set_tags(run.id, add=[f"at-{step}"])
                store.update_run(run.id, summary={"last": step})
                store.list_runs(limit=5)  # readers mixed in with the writers
            if step % 200 == 0:
                time.sleep(0.001)
        writer.close()
        store.update_run(run.id, status="finished")
        store.close()
    except BaseException as exc:  # reported to the parent, which fails the test
        import traceback

        errors.put(f"worker {index}: {exc!r}\n{traceback.format_exc()}")
        raise


if __name__ == "__main__":
    if sys.argv[1] == "crash":
        crash_child(sys.argv[2])
    else:  # pragma: no cover
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
