"""The doctor: preflight sanity checks that find training bugs before a long run.

    danlu check examples/digits.py                  # every check, one line each
    danlu check examples/digits.py --only S4,S7     # a selection
    danlu check recipe.py --set S1.max_params=5e6   # change a threshold

In Python:

    from danlu.doctor import run_checks
    report = run_checks(recipe)            # a danlu.report.Report of kind "check"

Each check is one small class (see :mod:`danlu.doctor.base`) registered under its
practice ID (S1-S13, D4, D7); the families live in data, model, loss, gradients,
numerics, training, determinism and speed. ``danlu.watch(model, optimizer)`` brings
the NaN localisation and gradient-norm logging to users' own training loops.
"""

from __future__ import annotations

from danlu.doctor.base import Check, SkipCheck, configure, register, registered, select
from danlu.doctor.context import Context
from danlu.doctor.runner import run_checks, save_report

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
        from danlu.doctor.watch import watch

        return watch
    raise AttributeError(f"module 'danlu.doctor' has no attribute {name!r}")
