"""`danlu demo --study`: a small exploration of the demo recipe in a few minutes (H1, H2, H4)."""

from __future__ import annotations

from pathlib import Path

from danlu.report import Report

__all__ = ["run_demo_study", "DEMO_VARY", "DEMO_FIX"]

#: Three hyperparameters of examples/digits.py: one that matters a lot (lr), two that matter less.
DEMO_VARY = ["lr=1e-4..3e-1:log", "hidden=16..128:log,int", "dropout=0..0.5"]
#: Shorter training so that 12 trials, some pruned, take a few minutes on a laptop CPU.
DEMO_FIX = {"epochs": "4", "probe_every": "10", "patience": "0"}


def run_demo_study(store, recipe_path: str | Path, console=None, trials: int = 12, workers: int = 1) -> Report:
    """Explore lr, hidden and dropout of the digits recipe with ASHA pruning; print and
    return the study report (also stored with the study run)."""
    from danlu.render import print_report
    from danlu.tuning.executors import get_executor
    from danlu.tuning.study import new_study

    study = new_study(store, str(recipe_path), DEMO_VARY, fixed=DEMO_FIX, trials=trials,
                      prune="asha", seed=0, command=f"danlu demo --study ({recipe_path})")
    if console is not None:
        console.print(f"study [bold]{study.spec.name}[/]: {trials} quasi-random trials of "
                      f"{' '.join(DEMO_VARY)}, pruning hopeless ones after {study.spec.min_resource} steps")
    report = study.run(get_executor(workers), workers, console=console)
    if console is not None:
        print_report(report, console)
        if report.meta.get("command"):
            console.print(f"reproduce the best trial: [bold]{report.meta['command']}[/]")
        console.print(f"see it again: danlu study show {study.spec.name}")
    return report
