"""What logging costs the training loop: microseconds per logged scalar, danlu beside
the tools users would otherwise reach for, in one process run, same scalars for all.

    .venv/bin/python benchmarks/log_overhead.py                 # 10,000 steps x 10 keys
    .venv/bin/python benchmarks/log_overhead.py --only danlu --steps 2000

Each tool logs the same stream: ``--steps`` steps of ``--keys`` scalars, as a dict per
step where the tool takes one (danlu, W&B) and one call per scalar where it does not
(TensorBoard ``add_scalar``, MLflow ``log_metric``). Two numbers per tool:

- ``log``: wall time of the logging loop / scalars. What the training loop pays; for
  tools with a background writer (danlu, TensorBoard, W&B, MLflow async) the writer
  thread's share of the GIL during the loop is included, its I/O is not.
- ``log+close``: the same plus the final flush/close (every scalar persisted).

A tool slower than ``--budget`` seconds per pass stops early (and gets one pass); the
table says how many scalars it logged (MLflow async then still needs a minute or more
to close). Tools that are not installed, or fail (W&B offline set-up), are skipped
with the reason.

A second section measures danlu's amortized cost while its writer thread runs: steps
of ``--work-us`` of work, pure Python (holds the GIL) and torch (releases it), with and
without logging.

Nothing is written outside a temporary folder, and nothing to docs/:
docs/benchmarks.md is written by hand from this output. More sections (the engine's
step time) are added to SECTIONS at the bottom.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

Stream = list[dict[str, float]]
_TOTAL: int | None = None  # scalars in the stream of the section being measured


@dataclass
class Row:
    tool: str
    scalars: int = 0
    log_us: float | None = None        # per scalar, logging loop only
    total_us: float | None = None      # per scalar, loop + final flush/close
    note: str = ""


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ the stream
def make_stream(steps: int, keys: int) -> Stream:
    """Values prepared up front, so building them is no tool's cost."""
    names = [f"train/m{k}" for k in range(keys)]
    return [{name: 1.0 / (1 + step) + k for k, name in enumerate(names)} for step in range(steps)]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the tools' banners and progress output while they are measured."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def timed(stream: Stream, budget: float, log_step: Callable[[int, dict[str, float]], None],
          close: Callable[[], None]) -> tuple[int, float, float]:
    """Run the logging loop (stopping after ``budget`` s) then close; return
    (scalars logged, loop seconds, loop+close seconds)."""
    scalars = 0
    start = time.perf_counter()
    deadline = start + budget
    for step, values in enumerate(stream):
        log_step(step, values)
        scalars += len(values)
        if step % 64 == 63 and time.perf_counter() > deadline:
            break
    looped = time.perf_counter()
    close()
    done = time.perf_counter()
    return scalars, looped - start, done - start


def best_of(repeat: int, one_pass: Callable[[], tuple[int, float, float]], tool: str, note: str = "",
            total: int | None = None) -> Row:
    """Fastest of ``repeat`` passes (the least disturbed by the rest of the machine).
    A tool whose first pass ran out of budget gets no second one: it would only add minutes."""
    total = _TOTAL if total is None else total
    results = [one_pass()]
    while len(results) < repeat and (total is None or results[0][0] >= total):
        results.append(one_pass())
    scalars, loop_s, total_s = min(results, key=lambda r: r[1] / max(r[0], 1))
    return Row(tool, scalars, loop_s / scalars * 1e6, total_s / scalars * 1e6, note)


# ------------------------------------------------------------------- the tools
def bench_danlu_writer(stream: Stream, args: argparse.Namespace, tmp: Path) -> Row:
    from danlu.store import BatchedWriter, open_store

    store = open_store(tmp / "danlu-writer")

    def one_pass():
        run = store.create_run(kind="bench")
        writer = BatchedWriter(store, run.id)
        return timed(stream, args.budget, lambda step, values: writer.log(values, step), writer.close)

    row = best_of(args.repeat, one_pass, "danlu BatchedWriter.log", "dict per step; SQLite WAL, batched")
    store.close()
    return row


def bench_danlu_run(stream: Stream, args: argparse.Namespace, tmp: Path) -> Row:
    import danlu

    store_path = tmp / "danlu-run"

    def one_pass():
        with quiet():
            run = danlu.init(config={"bench": True}, store=store_path)
        return timed(stream, args.budget, lambda step, values: run.log(values, step=step), run.finish)

    return best_of(args.repeat, one_pass, "danlu run.log (danlu.init)", "the user-facing handle")


def bench_tensorboard(stream: Stream, args: argparse.Namespace, tmp: Path) -> Row:
    from torch.utils.tensorboard import SummaryWriter

    def one_pass():
        writer = SummaryWriter(str(tmp / f"tb-{time.monotonic_ns()}"))

        def log_step(step, values):
            for name, value in values.items():
                writer.add_scalar(name, value, step)

        return timed(stream, args.budget, log_step, writer.close)

    return best_of(args.repeat, one_pass, "TensorBoard SummaryWriter.add_scalar", "one call per scalar")


def bench_wandb(stream: Stream, args: argparse.Namespace, tmp: Path) -> Row:
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ.setdefault("WANDB_DIR", str(tmp))
    import wandb

    def one_pass():
        with quiet():
            run = wandb.init(project="danlu-bench", dir=str(tmp), mode="offline", reinit="finish_previous")

        def finish():
            with quiet():
                run.finish()

        return timed(stream, args.budget, lambda step, values: run.log(values, step=step), finish)

    return best_of(args.repeat, one_pass, "W&B wandb.log (offline)", "dict per step")


def bench_mlflow(stream: Stream, args: argparse.Namespace, tmp: Path, synchronous: bool) -> Row:
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    with quiet():
        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        mlflow.set_experiment("danlu-bench")

    def one_pass():
        with quiet():
            mlflow.start_run()

        def log_step(step, values):
            for name, value in values.items():
                mlflow.log_metric(name, value, step=step, synchronous=synchronous)

        def close():
            with quiet():
                if not synchronous:
                    mlflow.flush_async_logging()
                mlflow.end_run()

        return timed(stream, args.budget, log_step, close)

    mode = "sync" if synchronous else "async (synchronous=False)"
    return best_of(args.repeat, one_pass, f"MLflow log_metric {mode}", "sqlite tracking URI, one call per scalar")


# ---------------------------------------------------------------- the sections
LOGGERS: list[tuple[str, Callable[..., Row]]] = [
    ("danlu BatchedWriter.log", bench_danlu_writer),
    ("danlu run.log (danlu.init)", bench_danlu_run),
    ("TensorBoard SummaryWriter.add_scalar", bench_tensorboard),
    ("W&B wandb.log (offline)", bench_wandb),
    ("MLflow log_metric sync", lambda s, a, t: bench_mlflow(s, a, t, synchronous=True)),
    ("MLflow log_metric async", lambda s, a, t: bench_mlflow(s, a, t, synchronous=False)),
]


def logging_overhead(args: argparse.Namespace) -> Section:
    """Microseconds per logged scalar for each tool (target for danlu: <= 2 us)."""
    global _TOTAL
    stream = make_stream(args.steps, args.keys)
    _TOTAL = args.steps * args.keys
    section = Section(
        title=f"Logging overhead: {args.steps:,} steps x {args.keys} keys "
        f"= {args.steps * args.keys:,} scalars, best of {args.repeat}",
        columns=["tool", "scalars", "log (us/scalar)", "log+close (us/scalar)", "note"],
    )
    with tempfile.TemporaryDirectory(prefix="danlu-bench-") as folder:
        tmp = Path(folder)
        for name, bench in LOGGERS:
            if args.only and not any(word.lower() in name.lower() for word in args.only):
                continue
            try:
                row = bench(stream, args, tmp)
            except Exception as exc:  # a tool that cannot run here is reported, not fatal
                row = Row(name, note=f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            print(f"  measured {row.tool}", file=sys.stderr, flush=True)
            section.rows.append([
                row.tool,
                f"{row.scalars:,}" if row.scalars else "-",
                f"{row.log_us:.2f}" if row.log_us is not None else "-",
                f"{row.total_us:.2f}" if row.total_us is not None else "-",
                row.note + ("" if row.scalars in (0, args.steps * args.keys)
                            else f"; stopped after the {args.budget:g} s budget"),
            ])
    section.notes.append("log: the logging loop only (what training waits for); "
                         "log+close: until every scalar is persisted.")
    return section


def _calibrate(make_step: Callable[[int], Callable[[], object]], work_us: float) -> Callable[[], object]:
    """The step of size n (doubling n) whose run time is about ``work_us`` microseconds."""
    n = 1
    while True:
        step = make_step(n)
        step()
        start = time.perf_counter()
        for _ in range(20):
            step()
        per = (time.perf_counter() - start) / 20
        if per * 1e6 >= work_us or n > 1 << 24:
            return step
        n *= 2


def _python_step(n: int) -> Callable[[], object]:
    """Pure-Python work: holds the GIL throughout (the worst case for a writer thread)."""
    return lambda: sum(range(64 * n))


def _torch_step(n: int) -> Callable[[], object]:
    """A small matmul chain: torch releases the GIL while it computes, as training does."""
    import torch

    a = torch.randn(64, 64)
    return lambda: [a @ a for _ in range(n)]


def amortized_overhead(args: argparse.Namespace) -> Section:
    """danlu's cost per scalar while its writer thread runs: loops of ~``--work-us`` steps
    with and without logging; the difference over the scalars logged (target <= 2 us)."""
    from danlu.store import BatchedWriter, open_store

    stream = make_stream(args.steps, args.keys)
    scalars = args.steps * args.keys
    section = Section(
        title=f"Amortized cost with the writer thread running: {args.steps:,} steps of ~{args.work_us:g} us "
        f"work, {args.keys} scalars each ({scalars:,}), best of {args.repeat}",
        columns=["step", "no logging (s)", "with danlu log (s)", "extra us/scalar", "+ close: extra us/scalar"],
    )

    def loop(work: Callable[[], object], log: Callable[[dict[str, float], int], None]) -> float:
        start = time.perf_counter()
        for step, values in enumerate(stream):
            work()
            log(values, step)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="danlu-bench-") as folder:
        store = open_store(Path(folder) / "amortized")
        steps = (("pure Python (GIL held)", _python_step), ("torch matmul (GIL released)", _torch_step))
        for label, make_step in steps:
            work = _calibrate(make_step, args.work_us)
            plain, logged, closed = [], [], []
            for _ in range(args.repeat):
                plain.append(loop(work, lambda values, step: None))
                writer = BatchedWriter(store, store.create_run(kind="bench").id)
                looped = loop(work, writer.log)
                start = time.perf_counter()
                writer.close()
                logged.append(looped)
                closed.append(looped + time.perf_counter() - start)
            base = min(plain)
            section.rows.append([label, f"{base:.3f}", f"{min(logged):.3f}",
                                 f"{(min(logged) - base) / scalars * 1e6:.2f}",
                                 f"{(min(closed) - base) / scalars * 1e6:.2f}"])
        store.close()
    section.notes.append(
        "The writer thread persists every point (SQLite, a few us of CPU each) on whatever core is "
        "free; a step that holds the GIL also pays the thread's Python share. '+ close' adds the "
        "final flush of the last batch."
    )
    return section


def engine_step_overhead(args: argparse.Namespace) -> Section:
    """The engine's step time beside a plain PyTorch loop (target: at most 5% slower)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine_overhead import engine_step_overhead as measure

    rows = measure(epochs=6, device="cpu", repeats=3)
    section = Section("engine step time vs a plain loop (examples/digits.py, CPU; see engine_overhead.py)",
                      ["loop", "steps", "mean ms", "median ms", "mean +%", "median +%"])
    for label, r in rows.items():
        section.rows.append([label, str(r["steps"]), f"{r['mean_ms']:.3f}", f"{r['median_ms']:.3f}",
                             f"{r['mean_overhead_%']:.1f}", f"{r['median_overhead_%']:.1f}"])
    return section


#: Sections run in order; add one by appending a function (args) -> Section.
SECTIONS: list[Callable[[argparse.Namespace], Section]] = [logging_overhead, amortized_overhead,
                                                           engine_step_overhead]


# ------------------------------------------------------------------- reporting
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError, AttributeError):
        load = " | load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return (f"{dt.datetime.now().isoformat(timespec='minutes')} | {platform.node()} | {cpu} x "
            f"{os.cpu_count()} | Python {platform.python_version()} | {platform.platform()}{load}")


def versions() -> str:
    from importlib import metadata

    found = []
    for package in ("danlu", "torch", "tensorboard", "wandb", "mlflow-skinny", "mlflow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{package} {metadata.version(package)}")
    return ", ".join(found)


def render(section: Section) -> str:
    lines = [f"### {section.title}", "", "| " + " | ".join(section.columns) + " |",
             "|" + "|".join(" --- " for _ in section.columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in section.rows]
    lines += [""] + [f"_{note}_" for note in section.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="passes per tool; the fastest is kept")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per pass before a slow tool stops")
    parser.add_argument("--work-us", type=float, default=100.0,
                        help="simulated GIL-holding work per step for the amortized section")
    parser.add_argument("--only", nargs="*", default=None, help="run only tools whose name contains a word")
    args = parser.parse_args(argv)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {machine()}")
    print(f"versions: {versions()}\n")
    for make_section in SECTIONS:
        print(render(make_section(args)), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
