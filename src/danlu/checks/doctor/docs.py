"""Generate docs/checks.md from the checks' docstrings (the docs are the code, as in ruff).

    python -m danlu.checks.doctor.docs            # print the page
    python -m danlu.checks.doctor.docs --write    # write docs/checks.md next to the package source

A test compares the committed page with this output, and fails when a check's
docstring lacks one of the sections in DOC_SECTIONS.
"""

from __future__ import annotations

import sys
from pathlib import Path

from danlu.checks.doctor.base import DOC_SECTIONS, STAGES, doc_sections, registered

__all__ = ["checks_markdown", "missing_sections", "default_path"]

_INTRO = """\
# The checks of `danlu check`

`danlu check RECIPE [k=v ...]` runs these checks in four stages (data, model, one
step, short training) and prints one line per check: its status (pass, warn, fail,
or skip with the reason), the practice ID (see the practices list), the numbers it
measured and, when it does not pass, the likely cause and the fix. The exit status
is 1 when any check fails.

    danlu check examples/digits.py
    danlu check recipe.py --only S4,S7          # a selection
    danlu check recipe.py --skip S12            # all but one
    danlu check recipe.py --json                # the report as JSON

## Changing a threshold

Every threshold and budget below is a setting named `ID.name`. Change it for one run
on the command line, or for good in the recipe:

    danlu check recipe.py --set S1.max_params=5e6 --set S4.ratio_warn=2

```python
class MyRecipe(danlu.Recipe):
    check_settings = {"S1.max_params": 5_000_000}   # not a hyperparameter: no annotation
```

`--set` wins over `check_settings`. In Python: `run_checks(recipe, settings={...})`.
An unknown ID or setting is an error that lists the valid ones.

This page is generated from the checks' docstrings by `python -m danlu.checks.doctor.docs
--write`; a test keeps it in sync.
"""


def _settings_table(cls) -> list[str]:
    if not cls.settings:
        return []
    rows = ["| setting | default |", "| --- | --- |"]
    for name in cls.settings:
        rows.append(f"| `{cls.id}.{name}` | `{getattr(cls, name)!r}` |")
    return rows


def checks_markdown() -> str:
    """The whole checks page, in stage order."""
    out = [_INTRO]
    checks = registered()
    out.append("## Overview\n")
    out.append("| ID | check | stage |")
    out.append("| --- | --- | --- |")
    for cls in checks:
        out.append(f"| [{cls.id}](#{cls.id.lower()}) | {cls.name} | {cls.stage} |")
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
    for cls in registered():
        sections = doc_sections(cls)
        lacking = [s for s in DOC_SECTIONS if not sections.get(s)]
        if lacking or not sections.get("title"):
            missing[cls.id] = lacking or ["title"]
    return missing


def default_path() -> Path:
    """docs/checks.md of the source tree this package lives in."""
    return Path(__file__).resolve().parents[4] / "docs" / "checks.md"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = checks_markdown()
    if "--write" in argv:
        path = default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
