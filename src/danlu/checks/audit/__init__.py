"""The data audit (practices D1-D8): `audit(recipe)` reads the data once and runs every check.

    from danlu.checks.audit import audit
    report = audit(Digits(), limit=10_000)     # a danlu.Report of kind "audit"

Checks are small classes registered with `@register` (see danlu.checks.audit.base); each
reads the per-split scans (danlu.checks.audit.scan) and returns findings, tables and images.
"""

from __future__ import annotations

from danlu.checks.audit.base import AuditContext, Check, CheckResult, register, registered_checks
from danlu.checks.audit.runner import audit
from danlu.checks.audit.scan import SplitScan, scan_split

__all__ = [
    "audit",
    "AuditContext",
    "Check",
    "CheckResult",
    "register",
    "registered_checks",
    "SplitScan",
    "scan_split",
]
