"""The `danlu` command. Each verb lives in its own module with a `register(subparsers)`.

Exit codes scripts can trust:
    0   success (and, for check/audit, nothing failed)
    1   the command ran and found a problem (a failing check, leakage, a failed run)
    2   bad usage or bad input (unknown flag, broken recipe, unknown RUN, corrupt store)
    130 interrupted (Ctrl-C); the run is kept and can be resumed
"""

from __future__ import annotations

import argparse
import importlib
import sys

from danlu.errors import DanluError

__all__ = ["main", "build_parser"]

#: Verb modules, in the order `danlu --help` lists them.
COMMANDS = [
    "danlu.cli.demo",
    "danlu.cli.check",
    "danlu.cli.train",
    "danlu.cli.runs",
    "danlu.cli.reproduce",
    "danlu.cli.diagnose",
    "danlu.cli.lr",
    "danlu.cli.audit",
    "danlu.cli.cases",
    "danlu.cli.study",
    "danlu.cli.ui",
]


def build_parser() -> argparse.ArgumentParser:
    from danlu import __version__

    parser = argparse.ArgumentParser(
        prog="danlu",
        description="danlu (丹炉): train PyTorch recipes with the practitioners' checks built in.",
        epilog="Run `danlu demo` for a tour, `danlu COMMAND --help` for one command.",
    )
    parser.add_argument("--version", action="version", version=f"danlu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DanluError as exc:
        from danlu.console import err_console, escape

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return exc.exit_code
    except KeyboardInterrupt:
        from danlu.console import err_console

        err_console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
