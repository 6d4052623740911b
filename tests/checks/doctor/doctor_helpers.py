"""Helpers for the doctor's tests: load a planted-bug recipe and run a selection of checks."""

from __future__ import annotations

from pathlib import Path

from danlu.checks import run_checks
from danlu.recipe import load_recipe

RECIPES = Path(__file__).resolve().parent / "recipes"


def recipe_path(name: str) -> Path:
    return RECIPES / f"{name}.py"


def check(name: str, only: str | None = None, overrides: list[str] | None = None, settings=None):
    """Run checks on tests/checks/doctor/recipes/<name>.py; returns the Report."""
    return run_checks(load_recipe(recipe_path(name), overrides or []), only=only, settings=settings)


def finding(report, id):
    f = report.finding(id)
    assert f is not None, f"{id} missing from {[x.id for x in report.findings]}"
    return f


def by_name(report, name):
    """The finding called `name` (a check with several findings, e.g. D7's "shuffling")."""
    found = [f for f in report.findings if f.name == name]
    assert found, f"no finding {name!r} in {[f.name for f in report.findings]}"
    return found[0]
