"""Healthy recipes stay quiet: no check warns or fails (false alarms count as much as misses).

One full run per recipe (cached for the module, about 2-4 s each), asserted check by
check so a regression names the check. Recipes: a digits-like CNN with dropout, one with batch-norm and dropout,
a regression MLP with [B] targets, and the project's examples/digits.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from doctor_helpers import RECIPES

from danlu.checks import checks_of, run_checks
from danlu.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[3]
CLEAN = {
    "clean": RECIPES / "clean.py",
    "clean_bn": RECIPES / "clean_bn.py",
    "clean_regression": RECIPES / "clean_regression.py",
    "digits": ROOT / "examples" / "digits.py",
}
IDS = [c.id for c in checks_of("doctor")]
ON_REQUEST = {"S14"}  # runs only when asked (--nproc 2): skipped otherwise, with the flag that runs it
_reports: dict = {}


def report_for(name: str):
    if name not in _reports:
        _reports[name] = run_checks(load_recipe(CLEAN[name]))
    return _reports[name]


@pytest.mark.parametrize("name", list(CLEAN))
@pytest.mark.parametrize("check_id", IDS)
def test_clean_recipe_is_quiet(name, check_id):
    found = [f for f in report_for(name).findings if f.id == check_id]
    assert found
    for f in found:
        quiet = ("pass", "info", "skip") if check_id in ON_REQUEST else ("pass", "info")
        assert f.status in quiet, f"{check_id} on {name}: {f.status}: {f.summary} | {f.cause}"


@pytest.mark.parametrize("name", list(CLEAN))
def test_clean_report_passes(name):
    report = report_for(name)
    assert report.status == "pass" and report.kind == "check"
    assert list(dict.fromkeys(f.id for f in report.findings)) == IDS
