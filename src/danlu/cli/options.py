"""Arguments and look-ups shared by several verbs (store location, --json output)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["print_kept_report", "add_store_arg", "add_json_arg", "open_store_from_args", "print_json"]


def add_store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH|URL",
        default=None,
        help="store folder or postgresql:// URL (default: $DANLU_STORE, else $DANLU_HOME, else ./.danlu)",
    )


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def open_store_from_args(args: argparse.Namespace, create: bool = True):
    from danlu.store import open_store

    return open_store(getattr(args, "store", None), create=create)


def print_json(data: Any) -> None:
    from danlu.plain import jsonable

    json.dump(jsonable(data), sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_kept_report(report, args: argparse.Namespace, verbose: bool = False) -> None:
    """A report as every command prints it: the report, its pictures under the run's folder, and
    (last, with the other "what next" lines) which run keeps it."""
    from danlu.console import console, escape
    from danlu.render import print_report

    run_id = report.meta.get("run_id") if not getattr(args, "no_save", False) else None
    folder = open_store_from_args(args, create=False).run_dir(run_id, create=False) if run_id else None
    print_report(report, console, verbose=verbose, folder=folder)
    if run_id:
        console.print(f"[dim]kept with run {escape(run_id)}: danlu show {escape(run_id)}[/]")
    elif report.images and getattr(args, "no_save", False):
        console.print("[dim]pictures were not kept (--no-save)[/]")
