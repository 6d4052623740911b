"""D8's estimate lands within 2x of the real `danlu train` time (issue 11): on the demo recipe, whose
time is compute, and on a recipe whose loader sleeps in __getitem__ (time is loading). Both are
measured back to back in one process, so the machine's load affects both alike: this checks the
estimator, not a speed."""

from __future__ import annotations

from pathlib import Path

import pytest

import danlu
from danlu.checks import run_checks

ROOT = Path(__file__).resolve().parents[3]
SLOW = ROOT / "tests" / "checks" / "doctor" / "recipes" / "slow_getitem.py"


@pytest.mark.parametrize("spec, overrides", [
    (ROOT / "examples" / "digits.py", ["epochs=4"]),
    (SLOW, ["epochs=3"]),
], ids=["demo", "slow-loader"])
def test_estimate_is_within_2x_of_the_real_training_time(store, spec, overrides):
    estimate = run_checks(danlu.load_recipe(spec, overrides), "audit", only="D8").finding("D8").evidence
    result = danlu.fit(danlu.load_recipe(spec, overrides), store=store, progress=False)
    real = result.summary["seconds"]
    ratio = real / estimate["total_seconds"]
    assert 0.5 <= ratio <= 2.0, (f"estimated {estimate['total_seconds']:.2f} s, trained in {real:.2f} s "
                                 f"({ratio:.2f}x): {estimate}")
    if spec == SLOW:   # the slow part is the training loader, not the validation one
        assert estimate["load_seconds_per_sample"] > 10 * estimate["val_load_seconds_per_sample"]
