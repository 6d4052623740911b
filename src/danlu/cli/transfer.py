"""`danlu import FORMAT PATH` and `danlu export RUN... --format F --out DIR`: other tools' logs in and out."""

from __future__ import annotations

import argparse

from danlu.cli.options import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import console, escape

__all__ = ["register", "cmd_import", "cmd_export"]


def register(sub: argparse._SubParsersAction) -> None:
    from danlu.integrations import EXPORT_FORMATS, IMPORT_FORMATS

    p = sub.add_parser(
        "import",
        help="read TensorBoard, Lightning CSV or JSON-lines logs into runs",
        description="Read logs written by other tools into the store: each folder of TensorBoard event files, "
        "each Lightning metrics.csv (with its hparams.yaml) or each .jsonl file becomes one finished run tagged "
        "source:FORMAT, so `danlu diagnose`, `danlu runs`, `danlu diff` and the dashboard work on it. "
        "Runs already imported are skipped.",
        epilog="Examples:\n  danlu import tensorboard runs/\n  danlu import csv lightning_logs/\n"
        "  danlu import jsonl train_log.jsonl --name baseline\nFormats: docs/integrations.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("format", choices=IMPORT_FORMATS, help="what the logs are")
    p.add_argument("path", help="a folder (searched recursively) or one file")
    p.add_argument("--name", default=None, help="the run's name when the path holds one run")
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="tag the imported runs (repeatable)")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_import)

    e = sub.add_parser(
        "export",
        help="write runs' curves as TensorBoard event files, CSV, JSON lines or Parquet",
        description="Write the curves and hyperparameters of runs for other viewers: a folder of TensorBoard "
        "event files, Lightning's CSV layout (metrics.csv + hparams.yaml), a .jsonl file or a .parquet file "
        "(needs pyarrow) per run, named after the run.",
        epilog="Examples:\n  danlu export last --format tensorboard --out tb/ && tensorboard --logdir tb/\n"
        "  danlu export run-a run-b --format csv --out exported/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("runs", nargs="+", metavar="RUN", help="run ids, id prefixes, names, or 'last'")
    e.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="what to write")
    e.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if missing)")
    add_store_arg(e)
    add_json_arg(e)
    e.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    from danlu.integrations import import_logs

    store = open_store_from_args(args)
    results = import_logs(store, args.path, args.format, name=args.name, tags=args.tag)
    if args.json:
        print_json([r.__dict__ for r in results])
        return 0
    for r in results:
        if r.skipped:
            console.print(f"[yellow]skipped[/] {escape(r.name)}: {escape(r.skipped)}")
        else:
            console.print(f"[green]imported[/] {escape(r.name)} ({r.run_id}): {r.series} series, {r.points} points")
    done = [r for r in results if not r.skipped]
    if done:
        console.print(f"[dim]next: danlu diagnose {escape(done[-1].name)}   danlu runs --kind all[/]")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from danlu.integrations import export_runs

    store = open_store_from_args(args, create=False)
    written = export_runs(store, args.runs, args.format, args.out)
    if args.json:
        print_json([str(p) for p in written])
        return 0
    for path in written:
        console.print(f"wrote {escape(str(path))}")
    return 0
