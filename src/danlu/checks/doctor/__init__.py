"""The doctor: preflight sanity checks that find training bugs before a long run.

    danlu check examples/digits.py                  # every check, one line each
    danlu check examples/digits.py --only S4,S7     # a selection
    danlu check recipe.py --set S1.max_params=5e6   # change a threshold

In Python:

    from danlu.checks.doctor import run_checks
    report = run_checks(recipe)            # a danlu.report.Report of kind "check"

Each check is one small class (see :mod:`danlu.checks.doctor.base`) registered under its
practice ID (S1-S13, D4, D7); the families live in data, model, loss, gradients,
numerics, training, determinism and speed. ``danlu.watch(model, optimizer)`` brings
the NaN localisation and gradient-norm logging to users' own training loops.
"""

from __future__ import annotations

from danlu.checks.doctor.base import Check, SkipCheck, configure, register, registered, select
from danlu.checks.doctor.context import Context
from danlu.checks.doctor.runner import run_checks, save_report

__all__ = [
    "Check",
    "SkipCheck",
    "Context",
    "register",
    "registered",
    "select",
    "configure",
    "run_checks",
    "save_report",
    "watch",
]


def __getattr__(name: str):
    if name == "watch":
        from danlu.watcher import watch

        return watch
    raise AttributeError(f"module 'danlu.checks.doctor' has no attribute {name!r}")
