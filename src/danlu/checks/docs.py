"""Generate docs/checks.md (the doctor) and docs/audit.md (the audit) from the checks' docstrings.

    python -m danlu.checks.docs            # print both pages
    python -m danlu.checks.docs --write    # write them into docs/ next to the package source

The docs are the code, as in ruff: a test compares the committed pages with this output,
and fails when a check's docstring lacks one of the sections in DOC_SECTIONS.
"""

from __future__ import annotations

import sys
from pathlib import Path

from danlu.checks.base import DOC_SECTIONS, STAGES, Family, doc_sections
from danlu.checks.catalog import checks_of

__all__ = ["page_markdown", "missing_sections", "page_path", "PAGES"]

#: The page each family is documented on.
PAGES: dict[Family, str] = {"doctor": "checks.md", "audit": "audit.md"}

_SETTINGS = """\
## Changing a threshold

Every threshold and budget below is a setting named `ID.name`. Change it for one run
on the command line, or for good in the recipe:

    danlu {verb} recipe.py --set {example}

```python
class MyRecipe(danlu.Recipe):
    check_settings = {{"{example_key}": {example_value}}}   # not a hyperparameter: no annotation
```

`--set` wins over `check_settings`. In Python: `danlu.{verb}(recipe, settings={{...}})`.
An unknown ID or setting is an error that lists the valid ones.
"""

_INTRO: dict[Family, str] = {
    "doctor": """\
# The checks of `danlu check`

`danlu check RECIPE [k=v ...]` runs these checks in four stages (data, model, one
step, short training) and prints one line per check: its status (pass, warn, fail,
or skip with the reason), the practice ID (see [practices.md](practices.md)), the
numbers it measured and, when it does not pass, the likely cause and the fix. The exit
status is 1 when any check fails. Every check that trains takes the recipe's own
training step (danlu.step: its optimizer, schedule and gradient clipping), the one
`danlu train` takes.

    danlu check examples/digits.py
    danlu check recipe.py --only S4,S7          # a selection
    danlu check recipe.py --skip S12            # all but one
    danlu check recipe.py --json                # the report as JSON

D4 and D7 are data checks shared with `danlu audit` ([audit.md](audit.md)): one
implementation, one verdict in both.

""" + _SETTINGS.format(verb="check", example="S1.max_params=5e6 --set S4.ratio_warn=2",
                      example_key="S1.max_params", example_value="5_000_000"),
    "audit": """\
# The checks of `danlu audit`

`danlu audit RECIPE [k=v ...]` reads the recipe's training and validation data once
(every item, or a seeded sample with `--limit N`) and runs these checks on what it read:
one line per finding, tables of the numbers, and a grid of samples as the model sees
them. The exit status is 1 when a check fails (train/validation leakage, invalid
samples, an augmented validation set): a gate for CI.

    danlu audit examples/digits.py
    danlu audit recipe.py --limit 20000 --only D5,D6
    danlu audit --run last                      # the data of a training run, kept with it

D4 and D7 are shown by `danlu check` too ([checks.md](checks.md)): one implementation,
one verdict in both.

""" + _SETTINGS.format(verb="audit", example="D4.mean_far=5", example_key="D4.mean_far", example_value="5.0"),
}


def _settings_table(cls) -> list[str]:
    if not cls.settings:
        return []
    rows = ["| setting | default |", "| --- | --- |"]
    for name in cls.settings:
        rows.append(f"| `{cls.id}.{name}` | `{getattr(cls, name)!r}` |")
    return rows


def page_markdown(family: Family) -> str:
    """The whole page of one family, in running order."""
    out = [_INTRO[family] + "\nThis page is generated from the checks' docstrings by "
           "`python -m danlu.checks.docs --write`; a test keeps it in sync.\n"]
    checks = checks_of(family)
    out.append("## Overview\n")
    out.append("| ID | check | stage | also in |")
    out.append("| --- | --- | --- | --- |")
    for cls in checks:
        others = ", ".join(f"`danlu {'check' if f == 'doctor' else 'audit'}`" for f in cls.families if f != family)
        out.append(f"| [{cls.id}](#{cls.id.lower()}) | {cls.name} | {cls.stage} | {others or '-'} |")
    out.append("")
    for stage in STAGES:
        for cls in [c for c in checks if c.stage == stage]:
            sections = doc_sections(cls)
            out.append(f"## {cls.id}\n")
            out.append(f"**{cls.name}** (stage: {cls.stage}). {sections.get('title', '')}\n")
            for section in DOC_SECTIONS:
                text = sections.get(section, "")
                out.append(f"**{section}.** {text[:1].upper() + text[1:]}\n")
            table = _settings_table(cls)
            if table:
                out.extend(table)
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def missing_sections() -> dict[str, list[str]]:
    """Check id -> docstring sections it lacks (empty when every check is documented)."""
    missing = {}
    for cls in checks_of(None):
        sections = doc_sections(cls)
        lacking = [s for s in DOC_SECTIONS if not sections.get(s)]
        if lacking or not sections.get("title"):
            missing[cls.id] = lacking or ["title"]
    return missing


def page_path(family: Family) -> Path:
    """The family's page in the docs/ folder of the source tree this package lives in."""
    return Path(__file__).resolve().parents[3] / "docs" / PAGES[family]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for family in PAGES:
        text = page_markdown(family)
        if "--write" in argv:
            path = page_path(family)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
