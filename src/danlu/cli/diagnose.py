"""`danlu diagnose RUN`: read a run's curves into named regimes, with evidence and the fix (T2-T4)."""

from __future__ import annotations

import argparse

from danlu.cli.options import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import console, escape

__all__ = ["register", "cmd_diagnose", "print_curve"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        help="diagnose a run's loss curves: learning, overfitting, plateau, diverging, ...",
        description="Diagnose a run's training and validation curves into named regimes (learning "
        "normally, overfitting, still improving, data problem, plateau, diverging, NaN, noisy, "
        "flat only because the LR decayed), each with its evidence and the practitioners' fix. "
        "Works for `danlu train` runs and for `danlu.init` runs from your own loop (series named "
        "train/loss or loss, val/loss or val_loss). The diagnosis is stored with the run. "
        "Exit status 1 when a regime needs attention (warn or fail).",
        epilog="Examples:\n  danlu diagnose last\n  danlu diagnose 3f2a --json\n"
        "  danlu diagnose my-run --baseline 2.3026\nThresholds: docs/diagnosis.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", nargs="?", default="last", help="run id, id prefix, name, or 'last' (default)")
    p.add_argument("--baseline", type=float, default=None, metavar="LOSS",
                   help="majority-class baseline loss (default: the run summary's baseline_loss)")
    p.add_argument("--no-save", action="store_true", help="do not store the report with the run")
    p.add_argument("--no-plot", action="store_true", help="do not write diagnosis.png in the run's folder")
    p.add_argument("-v", "--verbose", action="store_true", help="show cause and fix for every finding")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_diagnose)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from danlu.curves.diagnosis import curves_from_store, diagnose_run

    store = open_store_from_args(args, create=False)
    report = diagnose_run(store, args.run, baseline_loss=args.baseline, save=not args.no_save,
                          plot=not args.no_plot)
    if args.json:
        print_json(report.to_dict())
    else:
        from danlu.render import print_report

        run_id = report.meta["run_id"]
        console.print(f"[bold]{escape(report.meta.get('run_name', run_id))}[/] ({run_id})")
        print_curve(curves_from_store(store, run_id), report)
        print_report(report, console, verbose=args.verbose, folder=store.run_dir(run_id, create=False))
    return 1 if report.status in ("warn", "fail") else 0


def print_curve(curves, report, con=None) -> None:
    """A braille plot of the training loss (log10 when it spans decades), the regime's start marked."""
    import numpy as np

    from danlu.render import terminal_plot

    con = con or console
    t = curves.train.finite()
    if len(t) < 2:
        return
    y, label = t.values, "training loss"
    if (y > 0).all() and y.max() / y.min() > 30:
        y, label = np.log10(y), "log10 training loss"
    from danlu.curves.diagnosis import HEALTHY, regime_title

    since = report.meta.get("since_step")
    regime = report.meta["regime"]
    marks = {regime_title(regime): since} if since is not None and regime not in HEALTHY else None
    con.print(escape(terminal_plot(t.steps, y, width=60, height=8, marks=marks, xlabel=f"step ({label})")))
