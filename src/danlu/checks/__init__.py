"""One check framework, two families: the doctor (`danlu check`) and the audit (`danlu audit`).

    from danlu.checks import run_checks
    report = run_checks(recipe)                      # the doctor: S1-S13, D4, D7
    report = run_checks(recipe, "audit")             # the data audit: D1-D8

- base.py     the Check interface, its registry, statuses, stages, families
- context.py  the lazy Context every check reads (recipe parts, batches, data scans)
- catalog.py  the built-in checks; choosing and configuring them (--only, --skip, --set)
- runner.py   running a family into one Report, each check isolated
- docs.py     docs/checks.md and docs/audit.md, generated from the checks' docstrings
- doctor/     one module per preflight check, named by its practice ID (s8_gradients.py)
- audit/      one module per data check (d5_duplicates.py) and the data scan they share

Each practice ID is implemented once; D4 and D7 belong to both families.
"""

from __future__ import annotations

from danlu.checks.base import FAMILIES, STAGES, Check, CheckResult, DependencyFailed, SkipCheck, register
from danlu.checks.catalog import checks_of, configure, parse_settings, select
from danlu.checks.context import Context
from danlu.checks.runner import run_checks

__all__ = [
    "FAMILIES",
    "STAGES",
    "Check",
    "CheckResult",
    "SkipCheck",
    "DependencyFailed",
    "Context",
    "register",
    "checks_of",
    "select",
    "configure",
    "parse_settings",
    "run_checks",
]
