"""docs/diagnosis.md stays true: its examples run, and its threshold table matches the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import danlu.curves.analysis as analysis
import danlu.curves.diagnosis as diagnosis
import danlu.curves.rules as rules
import danlu.curves.series as curves

DOC = Path(__file__).resolve().parents[2] / "docs" / "diagnosis.md"


def test_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:  # later blocks reuse earlier names, as a reader would
        exec(compile(block, str(DOC), "exec"), namespace)


@pytest.mark.parametrize("module", [curves, analysis, rules, diagnosis])
def test_every_threshold_is_documented_with_its_value(module):
    table = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", DOC.read_text(), flags=re.M))
    for name in module.__all__:
        value = getattr(module, name)
        if not name.isupper() or not isinstance(value, (int, float)):
            continue
        assert name in table, f"{name} is missing from the threshold table of {DOC.name}"
        assert float(table[name]) == float(value), f"{name}: docs say {table[name].strip()}, code says {value}"


def test_every_regime_says_what_it_cannot_see():
    """Each regime (and the verdicts given when none fires) has its entry under "What the curves cannot tell"."""
    text = DOC.read_text()
    section = text[text.index("## What the curves cannot tell"):]
    section = section[: section.index("\n## ", 3)] if "\n## " in section[3:] else section
    for regime in [*rules.REGIMES, "too_short", "learning_little"]:
        assert f"- **`{regime}`**" in section, f"{regime} has no 'cannot tell' entry in {DOC.name}"
