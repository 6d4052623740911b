"""The `danlu` command. Each verb lives in its own module with a `register(subparsers)`.

Exit codes scripts can trust:
    0   success (and, for check/audit, nothing failed)
    1   the command ran and found a problem (a failing check, leakage, a failed run)
    2   bad usage or bad input (unknown flag, broken recipe, unknown RUN, corrupt store)
    130 interrupted (Ctrl-C); the run is kept and can be resumed
    141 the output was closed early (a pipe such as `danlu runs --json | head -1`)
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
    "danlu.cli.transfer",
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


def _unknown_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str],
                   argv: list[str]) -> str:
    """The usage error for arguments no verb knows; a flag named like a hyperparameter gets its k=v form."""
    if "overrides" in vars(args):
        from danlu.recipe import Recipe, load_recipe_class

        names = set(Recipe.fields())
        if getattr(args, "recipe", None):
            try:
                names |= set(load_recipe_class(args.recipe).fields())
            except Exception:  # a broken recipe is reported by the verb itself
                pass
        for token in extra:
            if not token.startswith("--"):
                continue
            name, _, value = token[2:].partition("=")
            key = name.replace("-", "_")
            if key in names:
                if not value:
                    at = argv.index(token) if token in argv else -1
                    value = argv[at + 1] if 0 <= at < len(argv) - 1 and not argv[at + 1].startswith("-") else "VALUE"
                return (f"{token} is not a flag: hyperparameters are set as k=v after the recipe; "
                        f"write it as {key}={value}")
    return f"unrecognized arguments: {' '.join(extra)} (see `danlu {args.command} --help`)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        from danlu.console import err_console, escape

        err_console.print(f"[bold red]error:[/] {escape(_unknown_flags(parser, args, extra, argv))}")
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.argv = argv              # the command line as given (`train --nproc` starts copies of it)
    from danlu.store import closing_stores_opened

    try:
        with closing_stores_opened():
            return int(args.func(args) or 0)
    except DanluError as exc:
        from danlu.console import err_console, escape

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return exc.exit_code
    except KeyboardInterrupt:
        from danlu.console import err_console

        err_console.print("[yellow]interrupted[/]")
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush does not raise again
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
