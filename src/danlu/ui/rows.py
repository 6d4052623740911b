"""A run as the dashboard's runs table sees it: one flat, JSON-ready row (practice E2).

The experiment table the practices ask for (E2: strategy name, what changed, the
outcome) needs, per run, the note, the tags, the hyperparameters, the best validation
loss and metrics, and the diagnosis. The store's :class:`~danlu.store.base.RunRecord`
holds all of that and more (the reproducibility record can carry a whole diff); a
:class:`Row` keeps only what the table shows, so 10,000 runs stay a small answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from danlu.plain import flatten
from danlu.store.base import RunRecord

__all__ = ["Row", "RowCache", "to_row", "diagnosis_of", "diagnosis_from_report", "metrics_of", "varying_keys",
           "primary_of", "group_of"]


@dataclass
class Row:
    """What the runs table shows of one run."""

    id: str
    name: str
    status: str
    kind: str
    recipe: str | None
    note: str
    tags: list[str]
    config: dict[str, Any]              # hyperparameters, flattened to scalars
    metrics: dict[str, float]           # best val loss and metrics from the summary
    diagnosis: dict[str, str] | None    # {"label": ..., "summary": ..., "status": ...}
    created: float
    ended: float | None
    duration: float | None
    parent: str | None = None
    primary: list[Any] | None = None     # [metric name, best value]: the outcome the table leads with
    group: str | None = None             # the study a trial belongs to (its "study:NAME" tag)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _FIELDS}

    def to_json(self) -> str:
        """The row as strict JSON (non-finite floats as text)."""
        try:
            return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)
        except ValueError:
            from danlu.plain import jsonable

            return json.dumps(jsonable(self.to_dict()), separators=(",", ":"), allow_nan=False)


_FIELDS = tuple(Row.__dataclass_fields__)


class RowCache:
    """Rows (and their JSON) of the runs seen last time, rebuilt only for runs that changed.

    Turning 10,000 records into rows and JSON on every poll of the runs table would cost
    more than reading them; a run whose fields are unchanged reuses its row. Comparing
    the config and summary dicts is done in C and costs a microsecond.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, dict, dict, Row, str]] = {}
        self._last: tuple[object, list[tuple[Row, str]]] | None = None
        self._index: tuple | None = None
        self._totals: tuple | None = None

    def rows(self, records: Sequence[RunRecord]) -> list[tuple[Row, str]]:
        """(row, row JSON) per record; the very same list again returns the last answer."""
        last = self._last
        if last is not None and last[0] is records:
            return last[1]
        old, fresh, out = self._entries, {}, []
        for rec in records:
            key = (rec.name, rec.status, rec.note, tuple(rec.tags or ()), rec.ended, rec.heartbeat,
                   rec.kind, rec.recipe, rec.parent, rec.created)
            hit = old.get(rec.id)
            if hit is not None and hit[0] == key and hit[1] == rec.config and hit[2] == rec.summary:
                entry = hit
            else:
                row = to_row(rec)
                entry = (key, rec.config, rec.summary, row, row.to_json())
            fresh[rec.id] = entry
            out.append((entry[3], entry[4]))
        self._entries = fresh
        self._last = (records, out)
        self._index = self._totals = None
        return out

    def index(self, records: Sequence[RunRecord]) -> tuple[list[Row], dict[int, str]]:
        """The rows, and each row's JSON by ``id(row)``, of this record list (memoised)."""
        pairs = self.rows(records)
        index = self._index
        if index is None or index[0] is not pairs:
            index = self._index = (pairs, [r for r, _ in pairs], {id(r): text for r, text in pairs})
        return index[1], index[2]

    def totals(self, records: Sequence[RunRecord]) -> dict[str, Any]:
        """Every tag and the count of runs by status, over all runs (memoised)."""
        rows, _ = self.index(records)
        totals = self._totals
        if totals is None or totals[0] is not rows:
            statuses: dict[str, int] = {}
            for r in rows:
                statuses[r.status] = statuses.get(r.status, 0) + 1
            totals = self._totals = (rows, {"total": len(rows), "tags": sorted({t for r in rows for t in r.tags}),
                                            "statuses": statuses})
        return totals[1]


_DIAG_LABEL_KEYS = ("label", "regime", "verdict", "name", "title", "status")
_DIAG_TEXT_KEYS = ("summary", "message", "text", "advice", "detail")


def diagnosis_of(summary: dict[str, Any]) -> dict[str, str] | None:
    """The curve diagnosis stored in ``summary["diagnosis"]`` as {label, summary, status}.

    Accepts the shapes a diagnosis may take: a plain string, a dict with a label and a
    summary, or a whole report (``Report.to_dict()``), whose worst finding is shown.
    """
    diag = summary.get("diagnosis") if isinstance(summary, dict) else None
    if diag is None or diag == "" or diag == {}:
        return None
    if isinstance(diag, str):
        from danlu.curves.diagnosis import regime_title

        return {"label": regime_title(diag), "summary": "", "status": "", "regime": diag}
    if not isinstance(diag, dict):
        return {"label": str(diag), "summary": "", "status": ""}
    findings = diag.get("findings")
    if isinstance(findings, list) and findings:
        from danlu.report import STATUS_ORDER

        worst = max(
            (f for f in findings if isinstance(f, dict)),
            key=lambda f: STATUS_ORDER.get(str(f.get("status")), 0),
            default={},
        )
        return {
            "label": str(worst.get("name") or worst.get("id") or diag.get("title") or "diagnosis"),
            "summary": str(worst.get("summary", "")),
            "status": str(worst.get("status", diag.get("status", ""))),
        }
    label = next((str(diag[k]) for k in _DIAG_LABEL_KEYS if diag.get(k) not in (None, "")), "diagnosis")
    text = next((str(diag[k]) for k in _DIAG_TEXT_KEYS if diag.get(k) not in (None, "")), "")
    status = str(diag.get("status", "")) if "status" in diag and label != diag.get("status") else ""
    return {"label": label, "summary": text, "status": status}


def diagnosis_from_report(report: dict[str, Any], label: str | None = None) -> dict[str, Any] | None:
    """The finding of a stored diagnosis report that explains ``label`` (the regime in the
    run's summary), else its worst finding, with cause and fix for the run page."""
    findings = [f for f in report.get("findings", []) if isinstance(f, dict)]
    if not findings:
        return None
    from danlu.report import STATUS_ORDER

    match = next((f for f in findings if label and label in (f.get("name"), f.get("id"))), None)
    best = match or max(findings, key=lambda f: STATUS_ORDER.get(str(f.get("status")), 0))
    return {
        "label": str(label or best.get("name") or best.get("id") or "diagnosis"),
        "summary": str(best.get("summary", "")),
        "status": str(best.get("status", "")),
        "cause": str(best.get("cause", "")),
        "fix": str(best.get("fix", "")),
        "id": str(best.get("id", "")),
    }


def metrics_of(summary: dict[str, Any]) -> dict[str, float]:
    """Numeric outcomes in the summary (best val loss, metrics, epoch of best), dotted names."""
    out: dict[str, float] = {}
    for key, value in flatten({k: v for k, v in summary.items() if k != "diagnosis"}, depth=2).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
        elif isinstance(value, str) and value in ("nan", "inf", "-inf"):
            out[key] = value  # type: ignore[assignment]  # shown as text, sorted last
    return out


def primary_of(summary: dict[str, Any]) -> list[Any] | None:
    """The run's headline outcome: its first best validation metric, else its best validation loss."""
    for key, value in summary.items():
        if key.startswith("best_val_") and key != "best_val_loss" and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            return [key[len("best_val_"):], value]
    value = summary.get("best_val_loss")
    return ["loss", value] if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def group_of(tags: Iterable[str]) -> str | None:
    """The study a run belongs to, from its "study:NAME" tag."""
    return next((t[len("study:"):] for t in tags if t.startswith("study:")), None)


def to_row(run: RunRecord) -> Row:
    """The table row of one run (no reproducibility record, no command line)."""
    summary = run.summary if isinstance(run.summary, dict) else {}
    return Row(
        id=run.id,
        name=run.name,
        status=run.status,
        kind=run.kind,
        recipe=run.recipe,
        note=run.note or "",
        tags=list(run.tags or []),
        config=flatten(run.config or {}, depth=2),
        metrics=metrics_of(summary),
        diagnosis=diagnosis_of(summary),
        created=run.created,
        ended=run.ended,
        duration=run.duration,
        primary=primary_of(summary),
        group=group_of(run.tags or ()),
        parent=run.parent,
    )


def varying_keys(dicts: Iterable[dict[str, Any]]) -> list[str]:
    """Keys whose value is not the same in every dict (a missing key counts as a value).

    These are the hyperparameters worth a column: the ones that changed between the
    shown runs ("what changed", E2); a constant column says nothing. A single run
    has nothing to differ from, so all its keys are returned.
    """
    dicts = list(dicts)
    if len(dicts) < 2:
        return sorted({k for d in dicts for k in d}) if dicts else []
    missing = object()
    first = dicts[0]
    keys = set(first)
    same = dict(first)                     # keys equal in every dict so far; shrinks fast
    for d in dicts[1:]:
        if d.keys() != first.keys():
            keys.update(d)
        for key, value in tuple(same.items()):
            if d.get(key, missing) != value:
                del same[key]
    return sorted(keys - same.keys())
