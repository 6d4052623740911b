"""The one report model every producer writes and every renderer reads.

The doctor, the curve diagnosis, the LR finder, the data audit, the case study and
studies all produce a :class:`Report`: plain data, JSON-serialisable, stored in the
run store and drawn by the terminal and by the dashboard alike (DESIGN: "one report
model, many views").
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from danlu.plain import jsonable

__all__ = ["Finding", "Table", "Report", "STATUS_ORDER", "Status"]

Status = Literal["pass", "info", "skip", "warn", "fail"]

#: Severity order; a report's status is its worst finding's.
STATUS_ORDER: dict[str, int] = {"pass": 0, "info": 1, "skip": 2, "warn": 3, "fail": 4}


@dataclass
class Finding:
    """One result: which practice, how it came out, the numbers behind it, and the fix."""

    id: str                       # practice ID, e.g. "S4"
    name: str                     # short name, e.g. "initial loss"
    status: Status
    summary: str                  # one line in plain words, with the key numbers
    evidence: dict[str, Any] = field(default_factory=dict)
    cause: str = ""               # likely cause, when not passing
    fix: str = ""                 # what to do, when not passing
    details: str = ""             # longer text: a traceback's last user frame, a table
    seconds: float = 0.0          # time the check took

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass
class Table:
    """A small table for a report: column names and rows of plain values."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass
class Report:
    """A titled list of findings, tables and images (paths relative to the run's folder)."""

    kind: str                                  # "check", "diagnosis", "lr", "audit", "cases", "study"
    title: str
    findings: list[Finding] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    files: list[str] = field(default_factory=list)   # other artefacts (e.g. statistics to load), relative paths
    #: Where the images are on this machine (the run's folder), when known; not stored.
    folder: str | None = field(default=None, compare=False, repr=False)

    def _repr_html_(self) -> str:
        """In Jupyter: the findings, tables and pictures inline (danlu.report_html)."""
        from danlu.report_html import report_html

        return report_html(self)

    def __rich_console__(self, console, options):
        """`rich.print(report)` and the REPL under rich: the terminal view (danlu.render.print_report)."""
        import io

        from rich.console import Console
        from rich.text import Text

        from danlu.render import print_report

        buffer = io.StringIO()
        inner = Console(file=buffer, width=options.max_width, force_terminal=True,
                        color_system=console.color_system or None)
        from pathlib import Path

        print_report(self, inner, folder=Path(self.folder) if self.folder else None)
        yield Text.from_ansi(buffer.getvalue().rstrip("\n"))

    @property
    def status(self) -> str:
        """fail or warn when any finding says so; skip only when every finding was skipped
        (one skipped check does not make a report of passes look skipped); else pass."""
        present = {f.status for f in self.findings}
        for status in ("fail", "warn"):
            if status in present:
                return status
        if present and present <= {"skip"}:
            return "skip"
        return "pass"

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUS_ORDER, 0)
        for f in self.findings:
            out[f.status] = out.get(f.status, 0) + 1
        return out

    def finding(self, id: str) -> Finding | None:
        return next((f for f in self.findings if f.id == id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
            "tables": [t.to_dict() for t in self.tables],
            "images": list(self.images),
            "files": list(self.files),
            "meta": jsonable(self.meta),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(
            kind=data["kind"],
            title=data.get("title", data["kind"]),
            findings=[Finding(**{k: v for k, v in f.items() if k in Finding.__dataclass_fields__})
                      for f in data.get("findings", [])],
            tables=[Table(**t) for t in data.get("tables", [])],
            images=list(data.get("images", [])),
            meta=dict(data.get("meta", {})),
            created=data.get("created", time.time()),
            files=list(data.get("files", [])),
        )
