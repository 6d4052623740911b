"""The built-in audit checks: importing this module registers them (the report orders them by ID)."""

from __future__ import annotations

from danlu.checks.audit import augment, classes, duplicates, samples, sizes, stats, timing, validity  # noqa: F401
