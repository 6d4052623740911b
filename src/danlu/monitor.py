"""Live resource use while a run trains (T1, S12): CPU, memory, GPU, and the share of time
spent waiting for data, recorded as curves every few seconds by a background thread.

Series (absent when there is nothing to measure, e.g. no GPU):

- ``sys/cpu_percent``: the process's CPU time over wall time (100 = one core busy);
- ``sys/rss_mb``: the process's resident memory;
- ``sys/gpu_util`` and ``sys/gpu_mem_mb``: the device's utilisation and memory in use
  (NVIDIA's management library, ``pynvml``, when installed), else ``sys/gpu_mem_mb``
  from torch's allocator;
- ``sys/data_wait``: the share of the interval the training loop spent waiting for the
  next batch (the engine measures it; a ``danlu.init`` loop has none).

The thread only reads counters and calls ``run.log`` (a deque append), so it costs the
training loop nothing; it never raises into it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ResourceMonitor", "DataWait", "MONITOR_EVERY", "SERIES", "RESOURCE_PREFIX"]

#: Seconds between two samples.
MONITOR_EVERY = 5.0
#: Every resource series starts with this (they describe the machine, not the model).
RESOURCE_PREFIX = "sys/"
SERIES = ("sys/cpu_percent", "sys/rss_mb", "sys/gpu_util", "sys/gpu_mem_mb", "sys/data_wait")


class DataWait:
    """Seconds the training loop has spent waiting for batches, the current wait included (the
    engine marks each wait's start and end, so a sample in the middle of a slow batch counts it)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.since: float | None = None     # time.perf_counter() when the current wait began

    def total(self) -> float:
        since = self.since
        return self.seconds + (time.perf_counter() - since if since is not None else 0.0)


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # peak, KB on Linux, bytes on macOS
        return peak / (2**20 if os.uname().sysname == "Darwin" else 2**10)
    except Exception:
        return None


def _gpu_reader(device: Any) -> Callable[[], dict[str, float]] | None:
    """A function returning the GPU's numbers, or None without a CUDA device."""
    try:
        import torch

        if device is None or torch.device(device).type != "cuda" or not torch.cuda.is_available():
            return None
        index = torch.device(device).index or 0
    except Exception:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)

        def nvml() -> dict[str, float]:
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            return {"sys/gpu_util": float(util.gpu), "sys/gpu_mem_mb": mem.used / 2**20}

        return nvml
    except Exception:
        def allocator() -> dict[str, float]:
            return {"sys/gpu_mem_mb": torch.cuda.memory_allocated(index) / 2**20}

        return allocator


class ResourceMonitor:
    """Samples resource use every `interval` seconds into `run` at the step `step()` returns."""

    def __init__(self, run: Any, step: Callable[[], int], *, data_wait: DataWait | None = None,
                 device: Any = None, interval: float | None = None,
                 record: Callable[[str, int, float], None] | None = None) -> None:
        self.run = run
        self.record = record
        self.step = step
        self.data_wait = data_wait
        self.interval = interval if interval is not None else MONITOR_EVERY
        self.gpu = _gpu_reader(device)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="danlu-monitor", daemon=True)
        self._last = (time.perf_counter(), self._cpu_seconds(), data_wait.total() if data_wait else 0.0)

    @staticmethod
    def _cpu_seconds() -> float:
        t = os.times()
        return t.user + t.system

    def start(self) -> ResourceMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample (short runs get at least one) and end the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> dict[str, float]:
        """One sample of every series, logged at the current step (also returned)."""
        now, cpu, wait = time.perf_counter(), self._cpu_seconds(), self.data_wait.total() if self.data_wait else 0.0
        then, cpu0, wait0 = self._last
        self._last = (now, cpu, wait)
        elapsed = max(now - then, 1e-9)
        values: dict[str, float] = {"sys/cpu_percent": 100.0 * (cpu - cpu0) / elapsed}
        rss = _rss_mb()
        if rss is not None:
            values["sys/rss_mb"] = rss
        if self.data_wait is not None:
            values["sys/data_wait"] = min(1.0, max(0.0, (wait - wait0) / elapsed))
        if self.gpu is not None:
            try:
                values.update(self.gpu())
            except Exception:
                self.gpu = None
        step = int(self.step())
        if self.record is not None:
            for name, value in values.items():
                self.record(name, step, value)
        try:
            self.run.log_sample(values, step)
        except Exception:  # a closed run at the very end: the sample is simply not kept
            pass
        return values
