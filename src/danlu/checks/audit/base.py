"""The audit's extension point: a Check reads the AuditContext and returns a CheckResult.

Contract for a check (compare optuna/pruners/_base.py):
- `run(ctx)` only reads the context (the split scans, the recipe, its datasets); it
  never modifies them, so checks can run in any order.
- It returns findings whose id is the practice it serves (D1 ... D8), with the numbers
  in the summary and evidence, and a fix whenever the status is warn or fail.
- Status "fail" is reserved for problems a CI pipeline must stop on (leakage,
  invalid samples); anything else that deserves attention is "warn".
- Images are written under `ctx.out_dir` (when set) and returned as paths relative
  to it. A check that cannot apply returns a "skip" finding that says why.

Adding a check is writing one class with `@register` and one test.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from torch.utils.data import Dataset

from danlu.checks.audit.scan import SplitScan
from danlu.recipe import Recipe
from danlu.report import Finding, Table

__all__ = ["AuditContext", "CheckResult", "Check", "register", "registered_checks"]


@dataclass
class AuditContext:
    """Everything a check may read: the recipe, its datasets, and one scan per split."""

    recipe: Recipe
    train: Dataset
    val: Dataset
    scans: dict[str, SplitScan]                  # "train", "val"
    task: str | None                             # "classification", "regression" or None (unknown)
    num_classes: int | None = None               # best known number of classes
    classes_source: str = ""                     # where num_classes came from
    class_notes: list[str] = field(default_factory=list)  # disagreements between the sources
    limit: int | None = None
    out_dir: Path | None = None                  # artefact folder for images
    progress: Callable[[str, int], Any] | None = None     # progress(description, total) -> advance(n)

    def advance(self, description: str, total: int) -> Callable[[int], None]:
        """A progress callback for a stage of `total` units (no-op without progress)."""
        if self.progress is None:
            return lambda n: None
        return self.progress(description, total)

    def image_path(self, name: str) -> tuple[Path, str] | None:
        """(absolute path, path relative to out_dir) for an image, or None without an out_dir."""
        if self.out_dir is None:
            return None
        rel = f"audit/{name}"
        path = Path(self.out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel


@dataclass
class CheckResult:
    """What a check adds to the report."""

    findings: list[Finding] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


class Check(abc.ABC):
    """One audit check. Subclasses set `id` (practice ID) and `name`, and implement run()."""

    id: ClassVar[str]
    name: ClassVar[str]

    @abc.abstractmethod
    def run(self, ctx: AuditContext) -> CheckResult:
        """Inspect the context and return findings, tables and images."""

    def skip(self, reason: str) -> CheckResult:
        """A result saying this check does not apply here, and why."""
        return CheckResult([Finding(self.id, self.name, "skip", reason)])


_REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: add a check to the audit, in registration order, under a unique key."""
    key = f"{cls.id}:{cls.name}"
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(f"An audit check named {key!r} is already registered ({_REGISTRY[key].__qualname__}).")
    _REGISTRY[key] = cls
    return cls


def registered_checks(only: list[str] | None = None) -> list[Check]:
    """Fresh instances of the registered checks in practice-ID order, optionally only the IDs listed."""
    import danlu.checks.audit.checks  # noqa: F401  (registers the built-in checks)

    wanted = {s.upper() for s in only} if only else None
    chosen = [cls for cls in _REGISTRY.values() if wanted is None or cls.id.upper() in wanted]
    return [cls() for cls in sorted(chosen, key=lambda c: c.id)]  # stable: D1, D2, ... then registration order
