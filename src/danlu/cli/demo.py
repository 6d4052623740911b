"""`danlu demo`: the main job on the bundled default data (examples/digits.py).

Walks the practices in order: know the data (audit), sanity checks (doctor), train
with tracking, read the curves (diagnosis), study the errors (cases), then says
where everything is and what to try next.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from danlu.cli.options import add_store_arg, open_store_from_args
from danlu.console import console, escape

__all__ = ["register", "demo_recipe_path"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the tour: audit, check, train, diagnose and study errors on digits",
                       description="Runs danlu's whole workflow on examples/digits.py "
                       "(scikit-learn's bundled digits; no download).")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--study", action="store_true",
                   help="also run a small tuning study on the demo recipe (a few minutes; H1-H4)")
    add_store_arg(p)
    p.set_defaults(func=cmd_demo)


def demo_recipe_path() -> Path:
    """examples/digits.py: shipped inside the wheel, or next to the source tree."""
    import danlu

    here = Path(danlu.__file__).resolve().parent
    for candidate in (here / "examples" / "digits.py", here.parents[1] / "examples" / "digits.py"):
        if candidate.exists():
            return candidate
    from danlu.errors import DanluError

    raise DanluError("The demo recipe examples/digits.py is missing from this installation; reinstall danlu.")


def _step(title: str) -> None:
    console.rule(f"[bold]{escape(title)}[/]")


def cmd_demo(args: argparse.Namespace) -> int:
    import danlu
    from danlu.cli.train import print_result
    from danlu.render import print_report

    store = open_store_from_args(args)
    path = demo_recipe_path()
    recipe = danlu.load_recipe(path)

    progress = not args.quiet

    _step("1. know the data: class balance, duplicates and leakage, invalid samples, scale (D1-D8)")
    print_report(danlu.audit(recipe, progress=progress, store=store))

    _step("2. sanity checks before the long run: overfit a batch, initial loss, gradients ... (S1-S13)")
    print_report(danlu.check(recipe, progress=progress, store=store))

    _step("3. train: per-batch loss, validation probes, checkpoints, reproducibility record (T1, T3, E1)")
    result = danlu.fit(recipe, store=store, note="danlu demo", tags=["demo"], device=args.device,
                       progress=progress)
    print_result(store, result)

    _step("4. read the curves: learning, overfitting, plateau, divergence ... (T2, T3, T4)")
    print_report(danlu.diagnose(result.run_id, store=store))

    _step("5. study the errors: per-class metrics, confusion matrix, worst cases, suspicious labels (C2, C3)")
    print_report(danlu.cases(result.run_id, device=args.device if args.device != "auto" else None,
                             progress=progress, store=store))

    if args.study:
        _step("6. tune with reason: quasi-random exploration, early kills, importance (H1-H5)")
        _demo_study(store, path)

    _step("what next")
    ref = result.name
    try:  # a path the user can type: relative when the recipe is under the working directory
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    store_flag = f" --store {args.store}" if args.store else ""
    print_next_steps([
        (f"danlu ui {ref}{store_flag}", "open the dashboard on this run (curves, reports, compare)"),
        (f"danlu runs{store_flag}", "the experiment table"),
        (f"danlu show {ref}{store_flag}", "hyperparameters, reproducibility record, curves, reports"),
        (f"danlu train {shown} lr=1e-3 -m 'lower lr'{store_flag}", "a second run to compare"),
        (f"danlu diff {ref} last{store_flag}", "what changed between two runs"),
        (f"danlu reproduce {ref}{store_flag}", "re-run from the code snapshot, compare point by point"),
    ])
    return 0 if result.status == "finished" else 1


def print_next_steps(rows: list[tuple[str, str]]) -> None:
    """Commands beside what each does; each command stays on one line so that it can be copied.
    When the longest would leave the description under 20 columns (a long absolute path to the
    recipe), each command gets a line of its own with its description below."""
    from rich.table import Table

    widest = max(len(command) for command, _ in rows)
    if widest + 3 + 20 <= console.width:
        table = Table.grid(padding=(0, 3))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(style="dim")
        for command, why in rows:
            table.add_row(escape(command), escape(why))
        console.print(table)
        return
    for command, why in rows:
        console.print(f"[bold]{escape(command)}[/]", soft_wrap=True)
        console.print(f"    [dim]{escape(why)}[/]")


#: Three hyperparameters of examples/digits.py: one that matters a lot (lr), two that matter less.
DEMO_VARY = ["lr=1e-4..3e-1:log", "hidden=16..128:log,int", "dropout=0..0.5"]
#: Shorter training so that 12 trials, some pruned, take a few minutes on a laptop CPU.
DEMO_FIX = {"epochs": "4", "probe_every": "10", "patience": "0"}


def _demo_study(store, recipe_path: Path, trials: int = 12) -> None:
    """Explore lr, hidden and dropout of the digits recipe with ASHA pruning (H1, H2, H4)."""
    from danlu.render import print_report
    from danlu.tuning.executors import get_executor
    from danlu.tuning.study import new_study

    study = new_study(store, str(recipe_path), DEMO_VARY, fixed=DEMO_FIX, trials=trials, mode="explore",
                      prune="asha", seed=0, command=f"danlu demo --study ({recipe_path})")
    console.print(f"study [bold]{escape(study.spec.name)}[/]: {trials} quasi-random trials of "
                  f"{escape(' '.join(DEMO_VARY))}, pruning hopeless ones after {study.spec.min_resource} steps")
    report = study.run(get_executor(1), 1, console=console)
    print_report(report, console)
    if report.meta.get("command"):
        console.print(f"reproduce the best trial: [bold]{escape(report.meta['command'])}[/]", soft_wrap=True)
    console.print(f"see it again: danlu study show {escape(study.spec.name)}")
