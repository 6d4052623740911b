"""Cost of danlu.watch per training step, beside torch.autograd.detect_anomaly (issue 3).

    .venv/bin/python benchmarks/watch_overhead.py [--segments 60] [--steps 10] [--threads N]

A small CNN (the digits example's shape: 1x8x8 inputs, two convs, a 64-unit head) is
trained on batches of 64 in four set-ups, each with its own model and optimizer:
plain, danlu.watch(model, optimizer) without a run, danlu.watch logging gradient
norms to a run every 50 steps, and the loop inside torch.autograd.detect_anomaly().
The set-ups take turns in short segments of `--steps` steps, so that bursts of load
on a shared machine hit all of them alike; the median segment is reported. The
watcher's own hooks are also timed directly (per step, on real gradients), which a
loaded machine does not blur. The target is at most 3% over plain for danlu.watch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

import danlu


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 16, 64), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(64, 10),
    )


def batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(n)]


def segment(model, optimizer, data, anomaly: bool = False) -> float:
    """Seconds per step over one segment of the training loop."""
    ctx = torch.autograd.detect_anomaly() if anomaly else None
    start = time.perf_counter()
    if ctx is not None:
        ctx.__enter__()
    try:
        for x, y in data:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    return (time.perf_counter() - start) / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=60, help="segments per set-up")
    parser.add_argument("--steps", type=int, default=10, help="training steps per segment")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*Anomaly Detection has been enabled.*")
    data = batches(args.steps)
    run = danlu.init(config={"bench": "watch_overhead"}, name="watch-bench",
                     store=tempfile.mkdtemp(prefix="danlu-watch-bench-"))

    setups = {}
    for kind in ("plain", "watch", "watch+run", "detect_anomaly"):
        torch.manual_seed(0)
        model = small_cnn().train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        if kind == "watch":
            danlu.watch(model, opt, run=None, every=50)
        elif kind == "watch+run":
            danlu.watch(model, opt, run=run, every=50)
        setups[kind] = (model, opt)
    for kind, (model, opt) in setups.items():  # warm-up
        segment(model, opt, data, anomaly=kind == "detect_anomaly")

    times: dict[str, list[float]] = {k: [] for k in setups}
    for _ in range(args.segments):
        for kind, (model, opt) in setups.items():
            times[kind].append(segment(model, opt, data, anomaly=kind == "detect_anomaly"))
    run.finish()

    # The watcher's own per-step work, timed directly (immune to machine load swings):
    # the forward pre-hook plus the optimizer pre-step check, on real gradients.
    model, opt = setups["watch"]
    watcher = danlu.watch(model, opt, run=None, every=50)
    x, y = data[0]
    F.cross_entropy(model(x), y).backward()
    reps = 2000
    start = time.perf_counter()
    for _ in range(reps):
        watcher._before_forward(model, (x,), {})
        watcher._before_step(opt, (), {})
    hook_us = (time.perf_counter() - start) / reps * 1e6
    watcher.remove()

    base = statistics.median(times["plain"])
    print(f"small CNN, batch 64, {args.segments} segments x {args.steps} steps per set-up, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'set-up':<16}{'ms/step (median)':>18}{'vs plain':>12}")
    for kind in setups:
        t = statistics.median(times[kind])
        print(f"{kind:<16}{t * 1e3:>18.3f}{(t / base - 1) * 100:>+11.1f}%")
    print(f"watch hooks, timed directly: {hook_us:.1f} us per step = {hook_us / (base * 1e6) * 100:.2f}% "
          "of a plain step")


if __name__ == "__main__":
    main()
