"""Plain data: the one conversion of danlu's values to strict JSON, and dotted flattening.

Reports, reproducibility records, `--json` output, the store and the dashboard all go
through :func:`jsonable`, so a value prints, stores and serves the same way everywhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["jsonable", "scalar", "flatten"]


def jsonable(value: Any) -> Any:
    """A strict-JSON copy: containers recursed (sets sorted), numpy/torch scalars and arrays
    unwrapped, paths as text, non-finite floats as the strings 'nan', 'inf', '-inf',
    anything else as its str()."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [jsonable(v) for v in sorted(value, key=repr)]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return jsonable(tolist())
    return str(value)


def scalar(value: Any) -> Any:
    """A JSON scalar for one table cell: numbers and text as they are, non-finite floats as
    strings, anything structured as its canonical JSON text."""
    value = jsonable(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def flatten(data: Mapping[str, Any], prefix: str = "", depth: int = 3) -> dict[str, Any]:
    """Nested dicts to dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``), values as scalars."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and depth > 1 and value:
            out.update(flatten(value, name + ".", depth - 1))
        else:
            out[name] = scalar(value)
    return out
