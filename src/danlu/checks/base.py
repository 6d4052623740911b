"""The one Check interface and its registry (compare optuna/pruners/_base.py).

A check is one small class: an ``id`` (the practice it runs, e.g. ``"S4"``), a short
``name``, the ``families`` that show it (``"doctor"`` for `danlu check`, ``"audit"``
for `danlu audit`; D4 and D7 belong to both), the ``stage`` it runs in (``data`` ->
``model`` -> ``step`` -> ``train``), and one method, ``run(ctx)``. Everything a check
needs (datasets, loaders, a fresh seeded model, sample batches, the task, per-split
scans of the data) comes from the shared, lazy :class:`~danlu.checks.context.Context`,
so checks do not redo each other's work.

Contract for implementations:

- ``run`` returns a :class:`~danlu.report.Finding` (or a :class:`CheckResult` when it
  adds several findings, tables or images) with the numbers it measured in ``summary``
  and ``evidence``, and ``cause`` and ``fix`` whenever it does not pass.
- A check that cannot apply raises :class:`SkipCheck` with the reason; it never passes
  silently. A crash inside the user's code may propagate: the runner turns it into a
  failing finding that names the last frame in the user's files.
- Thresholds and budgets are class attributes listed in ``settings``; users change them
  with ``--set S4.ratio_warn=2`` or a recipe's ``check_settings`` (see
  :func:`danlu.checks.catalog.configure`). A check never mutates the context's cached
  objects: it asks for ``ctx.new_model()`` and copies of batches.
- The class docstring has a title line and the sections ``Detects:``, ``Why:``,
  ``How:``, ``Thresholds:`` and ``Fix:``; ``docs/checks.md`` and ``docs/audit.md`` are
  generated from them (``python -m danlu.checks.docs --write``) and a test fails when a
  section is missing.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from danlu.report import Finding, Status, Table

if TYPE_CHECKING:  # pragma: no cover
    from danlu.checks.context import Context

__all__ = [
    "Family",
    "Stage",
    "FAMILIES",
    "STAGES",
    "DOC_SECTIONS",
    "Check",
    "CheckResult",
    "Problems",
    "SkipCheck",
    "DependencyFailed",
    "register",
    "registered",
    "doc_sections",
]

Family = Literal["doctor", "audit"]
Stage = Literal["data", "model", "step", "train"]

#: `danlu check` runs the doctor's checks, `danlu audit` the audit's.
FAMILIES: tuple[Family, ...] = ("doctor", "audit")
#: The order checks run in: cheap data checks first, short trainings last.
STAGES: tuple[Stage, ...] = ("data", "model", "step", "train")
#: Sections every check's docstring must have (ruff's habit: the docs are the docstrings).
DOC_SECTIONS = ("Detects", "Why", "How", "Thresholds", "Fix", "Cannot see")


class SkipCheck(Exception):
    """Raised inside a check that cannot apply; the message is the reason shown to the user."""


class DependencyFailed(Exception):
    """A part of the recipe the check needs (data(), model(), the task) could not be built.

    The first check that meets it reports the crash as a failure (with the user's frame);
    every later check that needs the same part is skipped and points to that one.
    """

    def __init__(self, part: str, error: BaseException, where: str = "") -> None:
        self.part = part
        self.error = error
        self.where = where
        super().__init__(f"{part} failed: {type(error).__name__}: {error}")


@dataclass
class CheckResult:
    """What a check adds to its report when one finding is not enough."""

    findings: list[Finding] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


_SEVERITY = {"pass": 0, "info": 1, "warn": 2, "fail": 3}


@dataclass
class Problems:
    """Problems found by one check, gathered into one finding: each has a status, a phrase,
    a cause and a fix; the finding has the worst status and joins the rest."""

    items: list[tuple[Status, str, str, str]] = field(default_factory=list)

    def add(self, status: Status, summary: str, cause: str = "", fix: str = "") -> None:
        self.items.append((status, summary, cause, fix))

    def status(self) -> Status:
        return max((s for s, *_ in self.items), key=_SEVERITY.__getitem__, default="pass")

    def finding(self, check: Check, ok_summary: str, evidence: dict, details: str = "",
                name: str | None = None) -> Finding:
        bad = [p for p in self.items if p[0] in ("warn", "fail")]
        if not bad:
            notes = "; ".join(s for st, s, *_ in self.items if st == "info")
            return check.finding("pass", ok_summary + (f" ({notes})" if notes else ""), evidence=evidence,
                                 name=name)
        return check.finding(self.status(), "; ".join(s for _, s, _, _ in bad), evidence=evidence,
                             cause=" ".join(c for *_, c, _ in bad if c), fix=" ".join(f for *_, f in bad if f),
                             details=details, name=name)


class Check(abc.ABC):
    """One check: a practice ID, a name, its families and stage, and ``run(ctx)``."""

    id: ClassVar[str] = ""
    name: ClassVar[str] = ""
    families: ClassVar[tuple[Family, ...]] = ("doctor",)
    stage: ClassVar[Stage] = "data"
    #: Names of class attributes users may change (thresholds, budgets).
    settings: ClassVar[tuple[str, ...]] = ()
    #: When this check fails, later crashes are reported as consequences (skipped), not new bugs.
    gates: ClassVar[bool] = False

    @abc.abstractmethod
    def run(self, ctx: Context) -> Finding | CheckResult:
        """Measure, decide, and return what was found."""

    # ----------------------------------------------------------- finding helpers
    def finding(
        self,
        status: Status,
        summary: str,
        *,
        evidence: Mapping[str, Any] | None = None,
        cause: str = "",
        fix: str = "",
        details: str = "",
        name: str | None = None,
    ) -> Finding:
        """A finding under this check's id (and name, unless a sub-check names itself)."""
        return Finding(id=self.id, name=name or self.name, status=status, summary=summary,
                       evidence=dict(evidence or {}), cause=cause, fix=fix, details=details)

    def current_settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.settings}

    def __repr__(self) -> str:
        return f"<check {self.id} {self.name}>"


# ------------------------------------------------------------------ registry
_REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: add a check to the registry (IDs are unique; stages and families known)."""
    if not cls.id or not cls.name:
        raise TypeError(f"{cls.__name__} needs a practice `id` and a short `name`.")
    if cls.stage not in STAGES:
        raise TypeError(f"{cls.__name__}.stage is {cls.stage!r}; use one of {', '.join(STAGES)}.")
    unknown = [f for f in cls.families if f not in FAMILIES]
    if unknown or not cls.families:
        raise TypeError(f"{cls.__name__}.families is {cls.families!r}; use some of {', '.join(FAMILIES)}.")
    for setting in cls.settings:
        if not hasattr(cls, setting):
            raise TypeError(f"{cls.__name__} lists setting {setting!r} but has no such attribute.")
    existing = _REGISTRY.get(cls.id)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise TypeError(f"Check id {cls.id} is taken by {existing.__name__}.")
    _REGISTRY[cls.id] = cls
    return cls


def _natural(check_id: str) -> tuple[str, int]:
    letters = check_id.rstrip("0123456789")
    digits = check_id[len(letters):]
    return letters, int(digits) if digits else 0


def registered(family: Family | None = None) -> list[type[Check]]:
    """The registered checks (of one family), in running order: by stage, gates first, then by ID.

    Only checks whose modules were imported are registered; `danlu.checks.catalog`
    imports the built-in ones.
    """
    order = {stage: i for i, stage in enumerate(STAGES)}
    checks = [c for c in _REGISTRY.values() if family is None or family in c.families]
    return sorted(checks, key=lambda c: (order[c.stage], not c.gates, _natural(c.id)))


# ------------------------------------------------------------------ docstrings
_SECTION = re.compile(r"^\s*(" + "|".join(DOC_SECTIONS) + r"):\s*(.*)$")


def doc_sections(cls: type) -> dict[str, str]:
    """Split a check's docstring into its title and the DOC_SECTIONS paragraphs."""
    doc = (cls.__doc__ or "").strip("\n")
    lines = doc.splitlines()
    out: dict[str, str] = {"title": lines[0].strip() if lines else ""}
    current = None
    buf: list[str] = []
    for line in lines[1:]:
        match = _SECTION.match(line)
        if match:
            if current:
                out[current] = " ".join(buf).strip()
            current, buf = match.group(1), [match.group(2)]
        elif current:
            buf.append(line.strip())
    if current:
        out[current] = " ".join(buf).strip()
    return out
