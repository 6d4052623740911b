"""The Check interface and the registry every check registers in (compare optuna/pruners/_base.py).

A check is one small class: an ``id`` (the practice it runs, e.g. ``"S4"``), a short
``name``, the ``stage`` it belongs to (``data`` -> ``model`` -> ``step`` -> ``train``)
and one method, ``run(ctx) -> Finding``. Everything a check needs (datasets, loaders,
a fresh seeded model, a sample batch, the task) comes from the shared, lazy
:class:`~danlu.checks.doctor.context.Context`, so checks do not redo each other's work.

Contract for implementations:

- ``run`` returns a :class:`~danlu.report.Finding` with the numbers it measured in
  ``summary`` and ``evidence``, and ``cause`` and ``fix`` whenever it does not pass.
- A check that cannot apply raises :class:`SkipCheck` with the reason; it never
  passes silently. A crash inside the user's code may propagate: the runner turns it
  into a failing finding that names the last frame in the user's files.
- Thresholds are class attributes listed in ``settings``; users change them with
  ``danlu check ... --set S4.ratio_warn=2`` or a recipe's ``check_settings`` (see
  :func:`configure`). A check never mutates the context's cached objects: it asks for
  ``ctx.new_model()`` and copies of batches.
- The class docstring has the sections ``Detects:``, ``Why:``, ``How:``,
  ``Thresholds:`` and ``Fix:``; ``docs/checks.md`` is generated from them
  (``python -m danlu.checks.doctor.docs``) and a test fails when a section is missing.
"""

from __future__ import annotations

import abc
import importlib
import re
import sysconfig
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

from danlu.errors import DanluError
from danlu.report import Finding

if TYPE_CHECKING:  # pragma: no cover
    from danlu.checks.doctor.context import Context

__all__ = [
    "STAGES",
    "DOC_SECTIONS",
    "Check",
    "SkipCheck",
    "DependencyFailed",
    "register",
    "registered",
    "select",
    "configure",
    "parse_settings",
    "doc_sections",
    "user_frame",
]

#: The order checks run in: cheap data checks first, short trainings last.
STAGES = ("data", "model", "step", "train")

#: Sections every check's docstring must have (ruff's habit: the docs are the docstrings).
DOC_SECTIONS = ("Detects", "Why", "How", "Thresholds", "Fix")

#: The modules holding the built-in checks, one family each.
CHECK_MODULES = (
    "danlu.checks.doctor.data",
    "danlu.checks.doctor.model",
    "danlu.checks.doctor.loss",
    "danlu.checks.doctor.gradients",
    "danlu.checks.doctor.numerics",
    "danlu.checks.doctor.training",
    "danlu.checks.doctor.determinism",
    "danlu.checks.doctor.speed",
)


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


class Check(abc.ABC):
    """One preflight check: a practice ID, a name, a stage and ``run(ctx) -> Finding``."""

    id: ClassVar[str] = ""
    name: ClassVar[str] = ""
    stage: ClassVar[str] = "data"
    #: Names of class attributes users may change (thresholds, budgets).
    settings: ClassVar[tuple[str, ...]] = ()
    #: When this check fails, later crashes are reported as consequences (skipped), not new bugs.
    gates: ClassVar[bool] = False

    @abc.abstractmethod
    def run(self, ctx: "Context") -> Finding:
        """Measure, decide, and return one finding."""

    # ----------------------------------------------------------- finding helpers
    def finding(
        self,
        status: str,
        summary: str,
        *,
        evidence: Mapping[str, Any] | None = None,
        cause: str = "",
        fix: str = "",
        details: str = "",
    ) -> Finding:
        return Finding(
            id=self.id,
            name=self.name,
            status=status,  # type: ignore[arg-type]
            summary=summary,
            evidence=dict(evidence or {}),
            cause=cause,
            fix=fix,
            details=details,
        )

    def current_settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.settings}

    def __repr__(self) -> str:
        return f"<check {self.id} {self.name}>"


# ------------------------------------------------------------------ registry
_REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: add a check to the registry (IDs are unique; stages are known)."""
    if not cls.id or not cls.name:
        raise TypeError(f"{cls.__name__} needs a practice `id` and a short `name`.")
    if cls.stage not in STAGES:
        raise TypeError(f"{cls.__name__}.stage is {cls.stage!r}; use one of {', '.join(STAGES)}.")
    for setting in cls.settings:
        if not hasattr(cls, setting):
            raise TypeError(f"{cls.__name__} lists setting {setting!r} but has no such attribute.")
    existing = _REGISTRY.get(cls.id)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise TypeError(f"Check id {cls.id} is taken by {existing.__name__}.")
    _REGISTRY[cls.id] = cls
    return cls


def registered() -> list[type[Check]]:
    """Every registered check, in stage order (then registration order within a stage)."""
    for name in CHECK_MODULES:
        importlib.import_module(name)
    order = {stage: i for i, stage in enumerate(STAGES)}
    checks = list(_REGISTRY.values())
    return sorted(checks, key=lambda c: order[c.stage])  # sort is stable


def _split_ids(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip().upper() for item in items if item and item.strip()]


def select(only: str | Iterable[str] | None = None, skip: str | Iterable[str] | None = None) -> list[type[Check]]:
    """The checks to run: all, or those in ``only``, minus those in ``skip`` (IDs, any case)."""
    checks = registered()
    known = {c.id for c in checks}
    only_ids, skip_ids = _split_ids(only), _split_ids(skip)
    unknown = [i for i in only_ids + skip_ids if i not in known]
    if unknown:
        raise DanluError(
            f"Unknown check id {', '.join(unknown)}. Valid ids: {', '.join(c.id for c in checks)}."
        )
    if only_ids:
        checks = [c for c in checks if c.id in only_ids]
    return [c for c in checks if c.id not in skip_ids]


# ------------------------------------------------------------------ settings
def parse_settings(items: Iterable[str]) -> dict[str, str]:
    """Parse ``["S4.ratio_warn=2", ...]`` (the CLI's ``--set``) into ``{"S4.ratio_warn": "2"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise DanluError(f"Cannot read --set '{item}': write ID.setting=value, e.g. --set S4.ratio_warn=2.")
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

    Overrides for checks that are registered but not selected are validated and ignored.
    """
    settings = dict(settings or {})
    by_id = {c.id: c for c in registered()}
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


# ------------------------------------------------------------------ user frames
def _library_roots() -> list[str]:
    import torch

    import danlu

    roots = [str(Path(danlu.__file__).resolve().parent), str(Path(torch.__file__).resolve().parent)]
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.append(str(Path(path).resolve()))
    return roots


def is_user_file(filename: str, roots: list[str] | None = None) -> bool:
    """True for files that are neither danlu's, torch's, the standard library's nor installed packages'."""
    if not filename or filename.startswith("<"):
        return False
    try:
        path = str(Path(filename).resolve())
    except OSError:  # pragma: no cover
        return False
    return not any(path.startswith(root) for root in (roots or _library_roots()))


def user_frame(exc: BaseException) -> str:
    """'file:line in func' plus the code line, for the last traceback frame in the user's files.

    Falls back to the last frame outside torch when no user file is involved (e.g. a bad
    target in danlu's default loss), so the message always points somewhere useful.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    roots = _library_roots()
    chosen = next((f for f in reversed(frames) if is_user_file(f.filename, roots)), None)
    if chosen is None:
        import torch

        torch_root = str(Path(torch.__file__).resolve().parent)
        chosen = next((f for f in reversed(frames) if not f.filename.startswith(torch_root)), None)
    if chosen is None and frames:
        chosen = frames[-1]
    if chosen is None:
        return ""
    text = f"{chosen.filename}:{chosen.lineno} in {chosen.name}"
    if chosen.line:
        text += f"\n    {chosen.line.strip()}"
    return text


def error_text(exc: BaseException, limit: int = 300) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(message) > limit:
        message = message[: limit - 3] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def short_traceback(exc: BaseException, frames: int = 6) -> str:
    """The last few frames of a traceback, for a finding's details."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines)
    tail = text.strip().splitlines()
    return "\n".join(tail[-2 * frames - 1:])

