"""Fixtures for study tests: the synthetic recipe, and `danlu study ...` run in-process."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture
def synth_path() -> Path:
    return HERE / "recipes" / "synth.py"


def run_cli(*argv: str) -> int:
    """`danlu study ...` in this process: through danlu's own parser once the verb is
    registered there, else through a parser holding only this verb."""
    from danlu.cli import COMMANDS, main

    if "danlu.cli.study" in COMMANDS:
        return main(["study", *argv])
    from danlu.cli import study
    from danlu.errors import DanluError

    parser = argparse.ArgumentParser(prog="danlu")
    study.register(parser.add_subparsers())
    args = parser.parse_args(["study", *argv])
    try:
        return int(args.func(args) or 0)
    except DanluError as exc:
        from danlu.console import err_console

        err_console.print(f"error: {exc}")
        return exc.exit_code


@pytest.fixture
def cli():
    return run_cli
