"""Executors: where a study's trials run. One small interface, a registry, no scheduler.

Every executor runs copies of :func:`danlu.tuning.objective.run_worker` — a loop that
takes queued trials from the Optuna storage until none is left — and returns when they
have all returned. The storage does the coordination (an atomic pop per trial), so an
executor only starts workers:

- ``sequential``: one worker in this process (the default, and the reference result);
- ``processes``: N local processes (``--workers N``), each with cores/N torch threads so
  that N workers do not oversubscribe the machine (H4: many trials at once);
- ``ray``: N Ray tasks on a Ray cluster (``--ray ADDRESS``; the optional extra
  ``danlu[ray]``);
- RDB worker mode needs no executor: ``danlu study worker NAME --storage postgresql://...``
  runs ``run_worker`` on any machine that reaches the database (Optuna's RDB storage).

Contract (compare optuna/samplers/_base.py): ``run(job, workers)`` blocks until every
worker has returned; it may raise KeyboardInterrupt after the workers have stopped
(their trials are then re-queued by ``danlu study --resume``). Results do not depend on
the executor: trial k always gets point k and is pruned as in a sequential run.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from typing import ClassVar

from danlu.tuning.objective import WorkerJob, run_worker

__all__ = ["Executor", "Sequential", "LocalProcesses", "RayExecutor", "EXECUTORS",
           "get_executor", "threads_per_worker"]


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads for each of `workers` processes so that together they use the cores once."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, workers))


class Executor(abc.ABC):
    """Runs `workers` copies of `run_worker(job)` and waits for them."""

    name: ClassVar[str]

    @abc.abstractmethod
    def run(self, job: WorkerJob, workers: int) -> int:
        """Run the workers to completion; return the number of trials they ran."""

    def describe(self, workers: int) -> str:
        return f"{self.name} x{workers}"


class Sequential(Executor):
    """Trials one after another in this process."""

    name = "sequential"

    def run(self, job: WorkerJob, workers: int = 1) -> int:
        return run_worker(job)


#: Seconds a worker whose coordinator died waits for its trial to stop cleanly before it exits anyway.
ORPHAN_GRACE = 30.0


def _exit_with_parent(parent: int, poll: float = 1.0) -> None:
    """Watch the coordinator: when it is gone (killed with -9, say), stop this worker's trial as a
    Ctrl-C would (resumable checkpoint, trial re-queued by `danlu study --resume`), then exit."""
    import _thread
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        _thread.interrupt_main()
        time.sleep(ORPHAN_GRACE)
        os._exit(1)

    threading.Thread(target=watch, name="danlu-coordinator-watch", daemon=True).start()


def _spawned_worker(job: WorkerJob, parent: int | None = None) -> int:
    import signal

    # Ctrl-C reaches the whole process group; the engine's handler in each worker stops its
    # trial at the end of the current step with a resumable checkpoint.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if parent is not None:
        _exit_with_parent(parent)
    try:
        return run_worker(job)
    finally:
        if parent is not None and os.getppid() != parent:  # orphaned: the trial has stopped, nobody waits
            os._exit(1)


class LocalProcesses(Executor):
    """N worker processes on this machine (spawned: no state is shared with the parent)."""

    name = "processes"

    def run(self, job: WorkerJob, workers: int) -> int:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        job = dataclasses.replace(job, threads=job.threads or threads_per_worker(workers))
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_spawned_worker, job, os.getpid()) for _ in range(workers)]
            try:
                return sum(f.result() for f in futures)
            except KeyboardInterrupt:
                for f in futures:  # let the workers finish their current step and exit
                    try:
                        f.result(timeout=120)
                    except BaseException:
                        pass
                raise


class RayExecutor(Executor):
    """N Ray tasks; ``address`` is a Ray cluster address, or "local" to start one here."""

    name = "ray"

    def __init__(self, address: str = "local", cpus_per_worker: int = 1) -> None:
        self.address = address
        self.cpus_per_worker = cpus_per_worker

    def run(self, job: WorkerJob, workers: int) -> int:
        from danlu.errors import require

        ray = require("ray", "ray", "Running trials as Ray tasks")
        started_here = False
        if not ray.is_initialized():
            if self.address in ("local", ""):
                ray.init(num_cpus=max(workers * self.cpus_per_worker, 1), include_dashboard=False,
                         log_to_driver=False, ignore_reinit_error=True)
            else:
                ray.init(address=self.address, log_to_driver=False, ignore_reinit_error=True)
            started_here = True
        try:
            job = dataclasses.replace(job, threads=job.threads or self.cpus_per_worker)
            task = ray.remote(num_cpus=self.cpus_per_worker, max_retries=0)(run_worker)
            return sum(ray.get([task.remote(job) for _ in range(workers)]))
        finally:
            if started_here and self.address in ("local", ""):
                ray.shutdown()

    def describe(self, workers: int) -> str:
        return f"ray x{workers} at {self.address}"


#: Registry: the one place an executor name becomes an object.
EXECUTORS: dict[str, type[Executor]] = {
    Sequential.name: Sequential,
    LocalProcesses.name: LocalProcesses,
    RayExecutor.name: RayExecutor,
}


def get_executor(workers: int = 1, ray_address: str | None = None) -> Executor:
    """Pick the executor for the command-line options (--workers N, --ray ADDRESS)."""
    if ray_address is not None:
        return RayExecutor(ray_address)
    if workers <= 1:
        return Sequential()
    return LocalProcesses()
