"""The built-in checks, and choosing and configuring the ones to run.

Importing a check module registers its checks (`danlu.checks.base.register`); this
module imports the built-in ones, so that `select("doctor")` and `select("audit")`
see them all. The check modules import only `danlu.checks.base`, never this module.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from danlu.checks.base import Check, Family, registered
from danlu.errors import DanluError

__all__ = ["BUILTIN", "checks_of", "select", "configure", "parse_settings"]

#: Modules holding the built-in checks, one check (or one pair) per module, named by ID.
BUILTIN = (
    "danlu.checks.audit.d1_classes",
    "danlu.checks.audit.d2_sizes",
    "danlu.checks.audit.d3_samples",
    "danlu.checks.audit.d4_normalisation",
    "danlu.checks.audit.d5_duplicates",
    "danlu.checks.audit.d6_validity",
    "danlu.checks.audit.d7_augmentation",
    "danlu.checks.audit.d8_time_estimate",
    "danlu.checks.doctor.s1_model_size",
    "danlu.checks.doctor.s2_s3_overfit",
    "danlu.checks.doctor.s4_initial_loss",
    "danlu.checks.doctor.s5_input_dependence",
    "danlu.checks.doctor.s6_train_eval_mode",
    "danlu.checks.doctor.s7_outputs_fit_loss",
    "danlu.checks.doctor.s8_gradients",
    "danlu.checks.doctor.s9_nonfinite",
    "danlu.checks.doctor.s10_batch_independence",
    "danlu.checks.doctor.s11_determinism",
    "danlu.checks.doctor.s12_speed",
    "danlu.checks.doctor.s13_data_interface",
    "danlu.checks.doctor.s14_multi_device",
)


def checks_of(family: Family | None = None) -> list[type[Check]]:
    """Every built-in (and otherwise registered) check of a family, in running order."""
    for name in BUILTIN:
        importlib.import_module(name)
    return registered(family)


def _split_ids(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip().upper() for item in items if item and item.strip()]


def select(family: Family, only: str | Iterable[str] | None = None,
           skip: str | Iterable[str] | None = None) -> list[type[Check]]:
    """The checks of `family` to run: all, or those in `only`, minus those in `skip` (IDs, any case)."""
    checks = checks_of(family)
    known = {c.id for c in checks}
    only_ids, skip_ids = _split_ids(only), _split_ids(skip)
    unknown = [i for i in only_ids + skip_ids if i not in known]
    if unknown:
        raise DanluError(f"Unknown check id {', '.join(unknown)}. Valid ids: {', '.join(c.id for c in checks)}.")
    if only_ids:
        checks = [c for c in checks if c.id in only_ids]
    return [c for c in checks if c.id not in skip_ids]


def parse_settings(items: Iterable[str]) -> dict[str, str]:
    """Parse ``["S4.ratio_warn=2", ...]`` into ``{"S4.ratio_warn": "2"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise DanluError(f"Cannot read the setting '{item}': write ID.setting=value, e.g. S4.ratio_warn=2.")
        out[key.strip()] = value.strip()
    return out


def _coerce(default: Any, value: Any, key: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise DanluError(
            f"Setting {key} expects a {type(default).__name__} (default {default!r}); got '{value}'."
        ) from None
    return value


def configure(checks: Iterable[type[Check]], settings: Mapping[str, Any] | None = None) -> list[Check]:
    """Instantiate checks and apply ``{"ID.setting": value}`` overrides (strings are coerced).

    Overrides for known checks that are not selected (or of the other family) are validated
    and ignored, so one `check_settings` dict can serve `danlu check` and `danlu audit`.
    """
    settings = dict(settings or {})
    by_id = {c.id: c for c in checks_of(None)}
    for key, value in settings.items():
        check_id, _, attr = key.partition(".")
        cls = by_id.get(check_id.upper())
        if cls is None:
            raise DanluError(f"Setting {key}: no check {check_id}. Valid ids: {', '.join(by_id)}.")
        if attr not in cls.settings:
            valid = ", ".join(f"{cls.id}.{s}" for s in cls.settings) or "none"
            raise DanluError(f"Setting {key}: {cls.id} has no setting '{attr}'. Its settings: {valid}.")
        _coerce(getattr(cls, attr), value, key)  # a bad value is an error even for an unselected check
    instances = []
    for cls in checks:
        check = cls()
        for key, value in settings.items():
            check_id, _, attr = key.partition(".")
            if check_id.upper() == cls.id:
                setattr(check, attr, _coerce(getattr(cls, attr), value, key))
        instances.append(check)
    return instances
