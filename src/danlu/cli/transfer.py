"""Runs in and out: `danlu import FORMAT PATH` and `danlu export RUN... --format F --out DIR` (other
tools' logs), `danlu push RUN... --to URL` and `danlu pull RUN... --from URL` (between stores)."""

from __future__ import annotations

import argparse

from danlu.cli.options import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import console, escape

__all__ = ["register", "cmd_import", "cmd_export", "cmd_push", "cmd_pull"]


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

    for verb, other, direction in (("push", "--to", "from this store into"), ("pull", "--from", "into this store from")):
        c = sub.add_parser(
            verb,
            help=f"copy runs {direction} another store (e.g. the team's PostgreSQL store)",
            description=f"Copy runs {direction} another store: the record, every curve, the reports and the "
            "files of the run's folder. Runs keep their ids, so copying again only adds what changed: nothing "
            "is lost or duplicated. Runs still running are refused.",
            epilog="Examples:\n  danlu push last --to postgresql://alice@db.lab/team\n"
            "  danlu push run-a run-b --to /mnt/shared/danlu\n  danlu pull amber-falcon-07 --from "
            "postgresql://alice@db.lab/team",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        c.add_argument("runs", nargs="+", metavar="RUN", help="run ids, id prefixes, names, or 'last'")
        c.add_argument(other, dest="other", required=True, metavar="PATH|URL", help="the other store")
        add_store_arg(c)
        add_json_arg(c)
        c.set_defaults(func=cmd_push if verb == "push" else cmd_pull)


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


def cmd_push(args: argparse.Namespace) -> int:
    from danlu.store import open_store

    return _copy(args, open_store_from_args(args, create=False), open_store(args.other))


def cmd_pull(args: argparse.Namespace) -> int:
    from danlu.store import open_store

    return _copy(args, open_store(args.other, create=False), open_store_from_args(args))


def _copy(args: argparse.Namespace, source, target) -> int:
    from danlu.store.transfer import copy_runs

    copied = copy_runs(source, target, args.runs)
    if args.json:
        print_json([c.__dict__ for c in copied])
        return 0
    for c in copied:
        style = {"new": "green", "updated": "yellow", "unchanged": "dim"}[c.state]
        detail = f"{c.series} series ({c.points} points), {c.reports} reports, {c.files} files"
        renamed = f"; named {escape(c.name)} (the target has another {escape(c.renamed_from)})" if c.renamed_from else ""
        console.print(f"[{style}]{c.state:9}[/] {escape(c.name)} ({c.id}): {detail}{renamed}")
    console.print(f"[dim]{len(copied)} run(s) from {escape(source.display)} to {escape(target.display)}[/]")
    return 0
