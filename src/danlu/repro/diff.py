"""What differs between runs: the one difference model for `danlu diff` and the dashboard (E1, E4, H2).

Comparing two runs is only useful when one can see what was changed between them (one
factor at a time, H2) and what changed without anyone meaning to (a dirty working
tree, another torch version: E1). :func:`differences` lines the runs up key by key and
keeps the rows where they disagree, grouped in sections; long texts (an uncommitted
diff) are compared whole but shown as a short digest. :func:`diff_runs` adds, for two
runs, the unified diffs a reader needs: their code snapshots (E4) and their
uncommitted changes. The dashboard's compare view and `danlu diff` both read these.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from danlu.plain import flatten
from danlu.store.base import RunRecord

__all__ = ["Difference", "RunDiff", "differences", "diff_runs", "SECTIONS", "section_of", "digest"]

#: Sections of the difference table, in display order.
SECTIONS = ("hyperparameters", "code", "environment", "data", "outcome", "other")

_CODE = ("git", "code", "recipe", "command", "snapshot", "source", "commit", "diff", "branch", "dirty", "argv")
_ENV = ("env", "environment", "python", "torch", "cuda", "cudnn", "packages", "platform", "hardware",
        "cpu", "gpu", "device", "host", "os", "numpy", "pip")
_DATA = ("data", "fingerprint", "dataset")


@dataclass
class Difference:
    """One key on which the runs disagree: the value of each run, in the runs' order."""

    section: str
    key: str
    values: list[Any]
    full: bool = True            # False when values are digests of longer texts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def section_of(key: str) -> str:
    """The section a reproducibility-record key belongs to, from its first word."""
    head = key.split(".", 1)[0].lower()
    for name, words in (("code", _CODE), ("environment", _ENV), ("data", _DATA)):
        if any(head == w or head.startswith(w + "_") or head.endswith("_" + w) for w in words):
            return name
    return "other"


def digest(text: str) -> str:
    """A short stand-in for a long text: its line count and the start of its SHA-256."""
    lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    return f"{lines} lines, sha256 {hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _shown(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str) and (len(value) > 200 or "\n" in value):
        return digest(value), False
    return value, True


#: Record keys that differ between any two runs without meaning anything (or repeat the config, or the
#: run's own command line).
_IGNORED = ("hparams", "captured_at", "version", "command")


def _expand(value: Any) -> Any:
    """Lists of 'name==version' lines (installed packages) as {name: version}, so each
    package is its own row and only the packages that differ show up."""
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, str) and "==" in v for v in value):
        return dict(v.split("==", 1) for v in value)
    return value


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differences(runs: Sequence[RunRecord]) -> list[Difference]:
    """Keys whose value is not the same for every run, grouped by :data:`SECTIONS`."""
    views: list[dict[tuple[str, str], Any]] = []
    for run in runs:
        view: dict[tuple[str, str], Any] = {}
        for key, value in flatten(run.config or {}, depth=3).items():
            view[("hyperparameters", key)] = value
        view[("code", "recipe")] = run.recipe
        view[("code", "command")] = run.command
        repro = {k: v for k, v in (run.repro or {}).items() if k not in _IGNORED}
        for key, value in flatten(_expand(repro), depth=4).items():
            view[(section_of(key), key)] = value
        summary = {k: v for k, v in (run.summary or {}).items() if k != "diagnosis"}
        for key, value in flatten(summary, depth=2).items():
            view[("outcome", key)] = value
        views.append(view)
    keys: dict[tuple[str, str], None] = {}
    for view in views:
        keys.update(dict.fromkeys(view))
    out: list[Difference] = []
    missing = object()
    for section, key in keys:
        values = [view.get((section, key), missing) for view in views]
        if len({_canon(v) if v is not missing else "\0missing" for v in values}) <= 1:
            continue
        shown = [_shown(v) if v is not missing else (None, True) for v in values]
        out.append(Difference(section, key, [s for s, _ in shown], all(f for _, f in shown)))
    out.sort(key=lambda d: (SECTIONS.index(d.section), d.key))
    return out


@dataclass
class RunDiff:
    """Two runs side by side: the differing keys, and unified diffs of their code and changes."""

    a: RunRecord
    b: RunRecord
    rows: list[Difference]
    code: dict[str, str] = field(default_factory=dict)        # snapshot file -> unified diff
    uncommitted: str = ""                                      # unified diff of the two git diffs

    def section(self, name: str) -> list[Difference]:
        return [d for d in self.rows if d.section == name]

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a.id, "b": self.b.id, "differences": [d.to_dict() for d in self.rows],
                "code": self.code, "uncommitted": self.uncommitted}


def _code_files(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if folder.exists():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != "MANIFEST.json":
                try:
                    out[str(path.relative_to(folder))] = path.read_text(errors="replace")
                except OSError:
                    pass
    return out


def diff_runs(store, a: RunRecord, b: RunRecord) -> RunDiff:
    """The differences of two runs, with the unified diffs of their code snapshots and of
    their uncommitted changes (git diff plus untracked files)."""
    code_a = _code_files(store.run_dir(a.id, create=False) / "code")
    code_b = _code_files(store.run_dir(b.id, create=False) / "code")
    code = {}
    for path in sorted(set(code_a) | set(code_b)):
        ta, tb = code_a.get(path, ""), code_b.get(path, "")
        if ta != tb:
            code[path] = "".join(difflib.unified_diff(ta.splitlines(True), tb.splitlines(True),
                                                      f"{a.name}/{path}", f"{b.name}/{path}"))

    def changes(r: RunRecord) -> str:
        git = (r.repro or {}).get("git") or {}
        return (git.get("diff") or "") + (git.get("untracked_diff") or "")

    uncommitted = ""
    if changes(a) != changes(b):
        uncommitted = "".join(difflib.unified_diff(changes(a).splitlines(True), changes(b).splitlines(True),
                                                   f"{a.name}:uncommitted", f"{b.name}:uncommitted"))
    return RunDiff(a, b, differences([a, b]), code, uncommitted)
