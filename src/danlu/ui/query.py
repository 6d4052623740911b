"""Filtering and sorting the runs table: a small query language (practice E2, H1).

The filter box of the runs table takes words separated by spaces; a run must match
every word:

==========================  ===================================================
``digits``                  text in the name, id, note, tags, recipe or diagnosis
``status:running``          status (``status:failed,crashed`` for either)
``tag:baseline``            has the tag
``lr:1e-4..1e-2``           hyperparameter or summary metric in a closed range
``lr>=1e-3`` ``acc>0.9``    comparisons ``< <= > >=`` (numbers), ``= !=`` (numbers or text)
``hidden:64``               the same as ``hidden=64``
``"two words"``             quotes keep spaces together
==========================  ===================================================

Names before an operator are looked up among the hyperparameters first, then among
the summary metrics (``best_val_loss<0.3``), also as ``config.lr`` / ``metrics.acc``.
A word that cannot be understood (``lr>abc``) is a :class:`QueryError` whose message
shows the accepted forms, never a silently empty table.
"""

from __future__ import annotations

import math
import operator
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from danlu.ui.rows import Row

__all__ = ["Query", "QueryError", "parse_query", "filter_rows", "sort_rows", "SORT_FIELDS"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "=": lambda a, b: a == b,
}
_COMPARISON = re.compile(r"^([A-Za-z_][\w./-]*?)(<=|>=|!=|<|>|=)(.+)$")
_RANGE = re.compile(r"^([A-Za-z_][\w./-]*?):(.*)\.\.(.*)$")

#: Row fields the table can sort by (besides ``config.<name>`` and ``metrics.<name>``).
SORT_FIELDS = ("name", "status", "created", "duration", "note", "kind", "recipe", "diagnosis", "id", "primary")


class QueryError(ValueError):
    """A filter word that is not part of the query language; the message says the forms."""


@dataclass
class Query:
    """A parsed filter: every condition must hold."""

    words: list[str] = field(default_factory=list)
    statuses: set[str] = field(default_factory=set)
    tags: list[str] = field(default_factory=list)
    conditions: list[tuple[str, str, Any]] = field(default_factory=list)  # (key, op, value)

    def matches(self, row: Row) -> bool:
        if self.statuses and row.status not in self.statuses:
            return False
        if any(t not in row.tags for t in self.tags):
            return False
        if self.words:
            diag = row.diagnosis or {}
            hay = " ".join(
                [row.name, row.id, row.note, row.recipe or "", " ".join(row.tags),
                 diag.get("label", ""), diag.get("summary", "")]
            ).lower()
            if any(w not in hay for w in self.words):
                return False
        return all(_holds(_lookup(row, key), op, value) for key, op, value in self.conditions)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _value(text: str) -> Any:
    num = _number(text)
    if num is not None:
        return num
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    return text


def _lookup(row: Row, key: str) -> Any:
    if key.startswith("config.") and key[7:] in row.config:
        return row.config[key[7:]]
    if key.startswith("metrics.") and key[8:] in row.metrics:
        return row.metrics[key[8:]]
    if key in row.config:
        return row.config[key]
    if key in row.metrics:
        return row.metrics[key]
    return _MISSING


_MISSING = object()


def _holds(actual: Any, op: str, expected: Any) -> bool:
    if actual is _MISSING:
        return op == "!="
    if op == "..":
        lo, hi = expected
        if not isinstance(actual, (int, float)) or isinstance(actual, bool) or math.isnan(actual):
            return False
        return (lo is None or actual >= lo) and (hi is None or actual <= hi)
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        if isinstance(actual, float) and math.isnan(actual):
            return op == "!="
        return _OPS[op](float(actual), expected)
    if op in ("=", "!="):
        same = str(actual).lower() == str(expected).lower() if not isinstance(expected, bool) else actual is expected
        return same if op == "=" else not same
    return False                           # an order between a number and text: no match


def parse_query(text: str = "", *, statuses: Sequence[str] = (), tags: Sequence[str] = ()) -> Query:
    """Parse the filter box (plus the status and tag pickers) into a :class:`Query`."""
    try:
        tokens = shlex.split(text or "")
    except ValueError as exc:
        raise QueryError(f"cannot read the filter {text!r}: {exc}; close the quotes") from exc
    query = Query(statuses={s for s in statuses if s}, tags=[t for t in tags if t])
    for token in tokens:
        low = token.lower()
        if low.startswith("status:"):
            query.statuses.update(s for s in low[7:].split(",") if s)
        elif low.startswith("tag:"):
            query.tags.append(token[4:])
        elif m := _RANGE.match(token):
            key, lo, hi = m.groups()
            nlo, nhi = (_number(lo) if lo else None), (_number(hi) if hi else None)
            if (lo and nlo is None) or (hi and nhi is None):
                raise QueryError(
                    f"range {token!r} needs numbers on both sides of '..', e.g. {key}:1e-4..1e-2"
                )
            query.conditions.append((key, "..", (nlo, nhi)))
        elif m := _COMPARISON.match(token):
            key, op, value = m.groups()
            parsed = _value(value)
            if op in ("<", ">", "<=", ">=") and not isinstance(parsed, float):
                raise QueryError(f"{token!r} needs a number after {op!r}; write e.g. {key}{op}0.001")
            query.conditions.append((key, op, parsed))
        elif (m := re.match(r"^([A-Za-z_][\w./-]*):([-+.\d][^:]*)$", token)) and _number(m.group(2)) is not None:
            query.conditions.append((m.group(1), "=", _number(m.group(2))))
        elif re.match(r"^[A-Za-z_][\w./-]*(<|>|!|=)", token):
            raise QueryError(
                f"cannot read {token!r}; write name=value, name<value, name>=value or name:low..high"
            )
        else:
            query.words.append(low)
    return query


def filter_rows(rows: Sequence[Row], query: Query) -> list[Row]:
    """The rows the query matches, in their order."""
    if not (query.words or query.statuses or query.tags or query.conditions):
        return list(rows)
    return [r for r in rows if query.matches(r)]


def _getter(key: str) -> Callable[[Row], Any]:
    if key == "diagnosis":
        return lambda row: (row.diagnosis or {}).get("label")
    if key == "primary":
        return lambda row: row.primary[1] if row.primary else None
    if key in SORT_FIELDS:
        return lambda row: getattr(row, key)
    section, name = key.split(".", 1)
    if section == "config":
        return lambda row: row.config.get(name)
    return lambda row: row.metrics.get(name)


def sort_rows(rows: Sequence[Row], sort: str = "-created") -> list[Row]:
    """Sort by a field (``-`` prefix: descending); runs without a value always come last.

    Numbers sort as numbers, then text as case-insensitive text; NaN counts as having
    no value (a diverged run's loss must not look like the best one). Ties keep the
    order they came in (newest first).
    """
    descending = sort.startswith("-")
    key = sort.lstrip("-+") or "created"
    if key not in SORT_FIELDS and not key.startswith(("config.", "metrics.")):
        raise QueryError(
            f"cannot sort by {key!r}; use one of {', '.join(SORT_FIELDS)}, config.NAME or metrics.NAME"
        )
    get = _getter(key)
    numbers: list[tuple[float, Row]] = []
    texts: list[tuple[str, Row]] = []
    absent: list[Row] = []
    for row in rows:
        value = get(row)
        kind = type(value)
        if kind is float or kind is int:
            if value != value:                      # NaN
                absent.append(row)
            else:
                numbers.append((value, row))
        elif value is None or value == "nan":
            absent.append(row)
        else:
            texts.append((str(value).lower(), row))
    first = operator.itemgetter(0)
    numbers.sort(key=first, reverse=descending)
    texts.sort(key=first, reverse=descending)
    return [r for _, r in numbers] + [r for _, r in texts] + absent
