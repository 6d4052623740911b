"""Arguments and look-ups shared by several verbs (store location, --json output)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_store_arg", "add_json_arg", "open_store_from_args", "print_json"]


def add_store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH",
        default=None,
        help="store folder (default: $DANLU_HOME, else ./.danlu)",
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
