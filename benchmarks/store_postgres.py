"""The team store on PostgreSQL beside the embedded SQLite store (issue 15), one run:
what ``log`` costs the loop, persisted throughput of one writer and of 16 concurrent
writer processes, 16 writers killed with ``kill -9`` at random moments, and the database
restarted under load.

    export DANLU_TEST_POSTGRES_URL="$(bash .ci/start-postgres.sh)"
    .venv/bin/python benchmarks/store_postgres.py                  # all sections
    .venv/bin/python benchmarks/store_postgres.py --steps 20000 --skip restart

- ``log``: wall time of the logging loop / scalars (the writer thread's share of the GIL
  included, its I/O not): what training pays.
- ``persisted``: scalars / wall time from the first ``log`` to ``close()`` returning
  (every point committed), one writer; then 16 processes that start logging at the same
  moment, each ``--steps``/4 steps (total scalars / time until the last one closed).
- ``kill -9``: 16 processes log and, after each ``flush()`` returns (committed), write the
  last flushed step to a side file; each is killed at a random moment. Afterwards every
  acknowledged point must be in the store, every run must read back as "crashed" and
  whole (name, config, tags).
- ``restart`` (needs root and ``pg_ctlcluster``): 4 writers log for ``--restart-seconds``;
  PostgreSQL is restarted in the middle. Every writer must finish, and every point it
  logged must be there.

Writes only to temporary folders and fresh PostgreSQL schemas (dropped at the end);
docs/benchmarks.md is written by hand from the output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEYS = ("train/loss", "lr", "grad_norm", "throughput")


def _url(base: str, schema: str, folder: Path) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}schema={schema}&artifacts={folder}"


def _log_loop(store_location: str, steps: int, ack: str | None = None, flush_every: int = 0,
              pause: float = 0.0, start_at: float = 0.0) -> tuple[float, float, str]:
    from danlu.store import BatchedWriter, open_store

    store = open_store(store_location)
    run = store.create_run(config={"lr": 1e-3, "width": 64}, tags=["bench"])
    writer = BatchedWriter(store, run.id)
    values = dict.fromkeys(KEYS, 0.5)
    time.sleep(max(0.0, start_at - time.time()))     # concurrent writers start together
    start = time.perf_counter()
    logged = 0.0
    for step in range(steps):
        t = time.perf_counter()
        writer.log(values, step)
        logged += time.perf_counter() - t
        if flush_every and (step + 1) % flush_every == 0:
            writer.flush()                          # returned: committed
            if ack:
                tmp = ack + ".tmp"
                with open(tmp, "w") as fh:
                    fh.write(f"{run.id} {step}")
                os.replace(tmp, ack)
        if pause:
            time.sleep(pause)
    writer.close()
    total = time.perf_counter() - start
    store.update_run(run.id, status="finished", ended=time.time())
    store.close()
    return logged, (time.time() if start_at else total), run.id


def _worker(args: tuple) -> tuple[float, float, str]:
    return _log_loop(*args)


def section_speed(locations: dict[str, str], steps: int, procs: int) -> list[str]:
    lines = ["| store | log, us/scalar | persisted, 1 writer (scalars/s) | persisted, "
             f"{procs} processes (scalars/s) |", "|---|---|---|---|"]
    for name, location in locations.items():
        logged, total, _ = _log_loop(location, steps)
        scalars = steps * len(KEYS)
        ctx = mp.get_context("spawn")
        start_at = time.time() + 15.0            # after every process has imported danlu and opened the store
        with ctx.Pool(procs) as pool:
            ends = pool.map(_worker, [(location, steps // 4, None, 0, 0.0, start_at)] * procs)
        wall = max(end for _, end, _ in ends) - start_at
        lines.append(f"| {name} | {logged / scalars * 1e6:.2f} | {scalars / total:,.0f} | "
                     f"{procs * (steps // 4) * len(KEYS) / wall:,.0f} |")
    return lines


_KILLED = """
import sys
sys.path.insert(0, {bench!r})
from store_postgres import _log_loop
_log_loop({location!r}, 10**9, ack={ack!r}, flush_every=200, pause=0.0005)
"""


def section_kill(locations: dict[str, str], procs: int, folder: Path) -> list[str]:
    from danlu.store import open_store

    lines = ["| store | writers killed | runs made | read as crashed | whole records | acknowledged points | lost |",
             "|---|---|---|---|---|---|---|"]
    rng = random.Random(0)
    for name, location in locations.items():
        acks = [folder / f"{abs(hash(name))}-{i}.ack" for i in range(procs)]
        children = [subprocess.Popen([sys.executable, "-c", _KILLED.format(
            bench=str(Path(__file__).parent), location=location, ack=str(a))]) for a in acks]
        deadline = {c.pid: time.time() + rng.uniform(5.0, 12.0) for c in children}
        while any(c.poll() is None for c in children):
            for c in children:
                if c.poll() is None and time.time() >= deadline[c.pid]:
                    os.kill(c.pid, signal.SIGKILL)
            time.sleep(0.01)
        store = open_store(location)
        runs = store.list_runs(tags=["bench"])
        crashed = sum(r.status == "crashed" for r in runs)
        whole = sum(bool(r.name and r.config == {"lr": 1e-3, "width": 64} and r.tags == ["bench"]) for r in runs)
        acknowledged = lost = 0
        for a in acks:
            if not a.exists():
                continue
            run_id, last = a.read_text().split()
            for key in KEYS:
                steps, _ = store.read_series(run_id, key, end=int(last))
                acknowledged += int(last) + 1
                lost += int(last) + 1 - len(steps)
        store.close()
        lines.append(f"| {name} | {procs} | {len(runs)} | {crashed}/{len(runs)} | {whole}/{len(runs)} | "
                     f"{acknowledged:,} | {lost} |")
    return lines


def section_restart(location: str, seconds: float, procs: int = 4) -> list[str]:
    from danlu.store import open_store

    steps = int(seconds / 0.001)
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        pending = pool.map_async(_worker, [(location, steps, None, 0, 0.001)] * procs)
        time.sleep(seconds / 3)
        clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout.split()
        t0 = time.perf_counter()
        subprocess.run(["pg_ctlcluster", clusters[0], clusters[1], "restart"], check=True)
        down = time.perf_counter() - t0
        results = pending.get(timeout=600)
    store = open_store(location)
    missing = sum(steps - len(store.read_series(run_id, key)[0]) for _, _, run_id in results for key in KEYS)
    finished = sum(store.get_run(run_id).status == "finished" for _, _, run_id in results)
    store.close()
    return ["| writers | points logged | restart took (s) | writers finished | points missing |",
            "|---|---|---|---|---|",
            f"| {procs} | {procs * steps * len(KEYS):,} | {down:.1f} | {finished}/{procs} | {missing} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="steps of 4 scalars, one writer")
    parser.add_argument("--procs", type=int, default=16)
    parser.add_argument("--restart-seconds", type=float, default=9.0)
    parser.add_argument("--skip", action="append", default=[], choices=["speed", "kill", "restart"])
    args = parser.parse_args()
    base = os.environ.get("DANLU_TEST_POSTGRES_URL")
    if not base:
        sys.exit("set DANLU_TEST_POSTGRES_URL (bash .ci/start-postgres.sh prints it)")
    tag = f"bench{os.getpid()}"
    print(f"# store_postgres.py {dt.date.today()} on {platform.node()}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        locations = {"SQLite (one file)": str(folder / "sqlite"),
                     "PostgreSQL (local server)": _url(base, tag, folder / "pg-artifacts")}
        try:
            if "speed" not in args.skip:
                print("\n".join(section_speed(locations, args.steps, args.procs)) + "\n")
            if "kill" not in args.skip:
                killed = {"SQLite (one file)": str(folder / "sqlite-kill"),
                          "PostgreSQL (local server)": _url(base, tag + "k", folder / "pg-kill")}
                print("\n".join(section_kill(killed, args.procs, folder)) + "\n")
            if "restart" not in args.skip:
                print("\n".join(section_restart(_url(base, tag + "r", folder / "pg-restart"), args.restart_seconds))
                      + "\n")
        finally:
            import psycopg

            with psycopg.connect(base, autocommit=True) as conn:
                for schema in (tag, tag + "k", tag + "r"):
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
