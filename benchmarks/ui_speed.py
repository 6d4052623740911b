"""How fast the dashboard answers (issue 5), over real HTTP, on the real SQLite store.

Measures, each the median of ``--repeat`` requests (with the slowest too):

1. A series of ``--points`` (default 1,000,000) points to the browser: the first
   request (reads the store), then repeated full views (cached), and zoom windows
   (re-downsampled on the server). Target: <= 100 ms and <= ~2,000 points per chart.
2. The runs table with ``--runs`` (default 10,000) runs in the store, each with
   hyperparameters, a summary, a diagnosis and a reproducibility record: the first
   page, a filtered and sorted page. Target: <= 300 ms.
3. Start-up: from launching ``danlu ui`` (or ``serve()`` when the verb is not
   registered yet) to the printed URL and the first answer. Target: < 2 s.

    python benchmarks/ui_speed.py                     # the issue's sizes
    python benchmarks/ui_speed.py --points 100000 --runs 1000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _launch(store_root: Path) -> tuple[subprocess.Popen, str, float, float]:
    """Start the dashboard in its own process, as a user would; return it, its URL, and
    the seconds until it printed the URL and until it first answered."""
    import urllib.request

    from danlu.cli import COMMANDS

    if "danlu.cli.ui" in COMMANDS:
        cmd = [sys.executable, "-m", "danlu.cli", "ui", "--store", str(store_root), "--port", "0"]
    else:  # the verb is not registered yet: the same serve() it calls
        cmd = [sys.executable, "-c",
               "from danlu.store import open_store; from danlu.ui.server import serve; "
               f"serve(open_store({str(store_root)!r}, create=False), port=0)"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    printed = time.perf_counter() - t0
    if " on " not in line:
        proc.kill()
        raise SystemExit(f"the dashboard did not start: {line!r}")
    url = line.split(" on ", 1)[1].split()[0].rstrip("/")
    urllib.request.urlopen(url + "/api/info", timeout=30).read()
    return proc, url, printed, time.perf_counter() - t0


def _cpu_ms(res) -> float:
    """The server's CPU time for the answer, from its Server-Timing header."""
    for part in res.headers.get("server-timing", "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name == "cpu":
            return float(dur)
    return float("nan")


CPU: dict[str, float] = {}


def _time(client, url, params=None, repeat=5, label=None):
    """(median ms, max ms, last response) of ``repeat`` GETs; the median server CPU
    time goes to CPU[label] (wall time suffers from whatever else the machine runs)."""
    times, cpus, res = [], [], None
    for _ in range(repeat):
        t = time.perf_counter()
        res = client.get(url, params=params)
        res.raise_for_status()
        res.content  # noqa: B018 - the whole body is part of the answer
        times.append((time.perf_counter() - t) * 1000)
        cpus.append(_cpu_ms(res))
    if label:
        CPU[label] = statistics.median(cpus)
    return statistics.median(times), max(times), res


def fill_series(store, n: int) -> str:
    run = store.create_run(name="million", config={"lr": 1e-3})
    rng = np.random.default_rng(0)
    values = 2.3 * np.exp(-np.arange(n) / (n / 4)) + rng.normal(0, 0.05, n)
    values[n // 3] = 25.0                                                 # one spike that must show
    now = time.time()
    batch = 50_000
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        store.log_points(run.id, [("train/loss", i, float(values[i]), now) for i in range(lo, hi)])
    store.update_run(run.id, status="finished", ended=time.time(), heartbeat=time.time())
    return run.id


def fill_runs(store, n: int) -> None:
    rng = np.random.default_rng(1)
    repro = {
        "git": {"commit": "a" * 40, "branch": "main", "dirty": True,
                "diff": "diff --git a/x.py b/x.py\n" + "+line\n" * 40},
        "env": {"python": "3.11", "torch": "2.13.0", "packages": [f"pkg{i}==1.{i}" for i in range(150)]},
        "data": {"train": {"size": 1437, "sha256": "0" * 64}},
    }
    regimes = ["learning", "overfitting", "plateau", "diverging"]
    for i in range(n):
        cfg = {"lr": float(10 ** rng.uniform(-5, -1)), "batch_size": int(rng.choice([32, 64, 128])),
               "hidden": int(rng.choice([64, 128, 256])), "seed": i % 5, "epochs": 10, "weight_decay": 0.0}
        run = store.create_run(name=f"run-{i:05d}", config=cfg, note=f"sweep point {i}",
                               tags=["sweep"] + (["mainline"] if i % 50 == 0 else []))
        store.update_run(run.id, status="finished" if i % 7 else "failed", ended=time.time(),
                         summary={"best_val_loss": float(rng.uniform(0.1, 2)), "best_val_acc": float(rng.uniform(0.5, 1)),
                                  "best_epoch": int(rng.integers(10)), "diagnosis": regimes[i % 4]},
                         repro=repro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between start-up and the first request (default 2)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--store", help="keep the generated store here (default: a temporary folder)")
    args = parser.parse_args(argv)

    import httpx

    from danlu.store import open_store

    tmp = tempfile.TemporaryDirectory()
    root = Path(args.store or tmp.name) / "store"
    store = open_store(root)
    out: dict[str, object] = {"store": type(store).__name__, "points": args.points, "runs": args.runs}

    t = time.perf_counter()
    rid = fill_series(store, args.points)
    out["fill_points_s"] = time.perf_counter() - t
    t = time.perf_counter()
    store.read_series(rid, "train/loss")
    out["store_read_series_ms"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    fill_runs(store, args.runs)
    out["fill_runs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    store.list_runs()
    out["store_list_runs_ms"] = (time.perf_counter() - t) * 1000

    proc, url, printed, answered = _launch(root)
    out.update(printed_s=printed, first_answer_s=answered)
    time.sleep(args.settle)        # a user takes a moment to open the page; the server warms up meanwhile
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            q = {"s": f"{rid}:train/loss"}
            cold_ms, _, res = _time(client, "/api/chart", q, repeat=1, label="chart_cold")
            out["chart_cold_ms"] = cold_ms
            warm, warm_max, res = _time(client, "/api/chart", q, args.repeat, label="chart_warm")
            d = res.json()
            out.update(chart_warm_ms=warm, chart_warm_max_ms=warm_max, chart_points=len(d["x"]),
                       chart_bytes=len(res.content),
                       spike_kept=max(v for v in d["series"][0]["values"] if v is not None) == 25.0)
            n = args.points
            zoom, zoom_max, res = _time(client, "/api/chart", {**q, "start": n * 0.4, "end": n * 0.6}, args.repeat,
                                        label="chart_zoom")
            out.update(chart_zoom_ms=zoom, chart_zoom_max_ms=zoom_max, chart_zoom_points=len(res.json()["x"]))
            deep, _, res = _time(client, "/api/chart", {**q, "start": n // 2, "end": n // 2 + 999}, args.repeat,
                                 label="chart_zoom_1000")
            out.update(chart_zoom_1000_ms=deep, chart_zoom_1000_points=len(res.json()["x"]))

            # the first table view (the server warms its run list in the background at start)
            first, _, res = _time(client, "/api/runs", None, repeat=1, label="runs_first")
            out.update(runs_first_ms=first, runs_table_rows=len(res.json()["runs"]),
                       runs_table_total=res.json()["total"], runs_table_bytes=len(res.content))
            # questions not asked before: each filters and sorts all runs again
            queries = [{"sort": "name"}, {"sort": "-metrics.best_val_loss"}, {"sort": "config.lr"},
                       {"q": "lr:1e-4..1e-2"}, {"q": "lr:1e-4..1e-2 status:finished", "sort": "-metrics.best_val_acc"},
                       {"q": "sweep point 12"}, {"tag": "mainline"}, {"q": "hidden=128 batch_size>=64"}]
            times, cpus = [], []
            for params in queries:
                ms, _, res = _time(client, "/api/runs", params, repeat=1)
                times.append(ms)
                cpus.append(_cpu_ms(res))
            CPU["runs_new_query"] = statistics.median(cpus)
            out.update(runs_new_query_ms=statistics.median(times), runs_new_query_max_ms=max(times))
            # the page polling the same view
            again, again_max, _ = _time(client, "/api/runs", queries[-1], args.repeat, label="runs_repeat")
            out.update(runs_repeat_ms=again, runs_repeat_max_ms=again_max)
    finally:
        proc.terminate()
        proc.wait(10)
    store.close()
    out["server_cpu_ms"] = dict(CPU)
    out["load_average"] = os.getloadavg()

    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    ok = lambda good: "ok" if good else "OVER"  # noqa: E731
    rows = [
        ("store", out["store"], ""),
        (f"series of {args.points:,} points: first view (reads the store)", f"{out['chart_cold_ms']:.0f} ms", ""),
        ("  full view again (cached)", f"{out['chart_warm_ms']:.1f} ms (max {out['chart_warm_max_ms']:.1f})",
         ok(out["chart_warm_ms"] <= 100)),
        ("  points sent / spike kept", f"{out['chart_points']} / {out['spike_kept']}", ok(out["chart_points"] <= 2000)),
        ("  zoom to 20% of the run", f"{out['chart_zoom_ms']:.1f} ms, {out['chart_zoom_points']} points",
         ok(out["chart_zoom_ms"] <= 100)),
        ("  zoom to 1,000 steps", f"{out['chart_zoom_1000_ms']:.1f} ms, {out['chart_zoom_1000_points']} points", ""),
        ("  store.read_series alone", f"{out['store_read_series_ms']:.0f} ms", ""),
        (f"runs table, {out['runs_table_total']:,} runs: first view ({out['runs_table_rows']} rows)",
         f"{out['runs_first_ms']:.0f} ms", ok(out["runs_first_ms"] <= 300)),
        ("  a new filter or sort (median of 8)", f"{out['runs_new_query_ms']:.0f} ms (max {out['runs_new_query_max_ms']:.0f})",
         ok(out["runs_new_query_ms"] <= 300)),
        ("  the same view polled again", f"{out['runs_repeat_ms']:.1f} ms (max {out['runs_repeat_max_ms']:.1f})",
         ok(out["runs_repeat_ms"] <= 300)),
        ("  store.list_runs alone", f"{out['store_list_runs_ms']:.0f} ms", ""),
        ("start-up: URL printed / first answer",
         f"{out['printed_s']:.2f} s / {out['first_answer_s']:.2f} s", ok(out["first_answer_s"] < 2)),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':<{width}}  {'wall time':<34} target")
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value:<34} {verdict}")
    print("server CPU per answer (ms, median): "
          + ", ".join(f"{k} {v:.1f}" for k, v in out["server_cpu_ms"].items()))
    print("load average of the machine at the end: " + " ".join(f"{x:.1f}" for x in out["load_average"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
