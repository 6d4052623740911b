"""The reproducibility record every run keeps (E1, E3): git state with the uncommitted diff,
the command line, the recipe's hash, seed and hyperparameters, the environment and the
data version.

Nothing in :func:`capture` may stop a run from training: git is called with timeouts
and every section that fails is recorded as ``{"error": ...}`` instead of raising.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from danlu.data_reuse import kept_fingerprint
from danlu.plain import jsonable
from danlu.repro.fingerprint import data_fingerprint

__all__ = ["RECORD_VERSION", "capture", "reusing_sections", "git_info", "git_root", "environment", "sha256_file",
           "normalise_package"]

#: Version of the record layout written by :func:`capture`; bump on incompatible change.
RECORD_VERSION = 1

#: Environment variables that change numerics or determinism, recorded with the environment.
_ENV_VARS = (
    "CUBLAS_WORKSPACE_CONFIG",
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_TF32_OVERRIDE",
)

_GIT_TIMEOUT_S = 10.0
_MAX_DIFF_BYTES = 10 * 2**20          # cap on the recorded `git diff HEAD` text
_MAX_UNTRACKED_FILE_BYTES = 100_000   # untracked text files below this are included in full
_MAX_UNTRACKED_TOTAL_BYTES = 2 * 2**20
_MAX_UNTRACKED_LISTED = 5_000


# ================================================================ capture (E1)
def capture(
    recipe_file: Path | str | None,
    train: Any = None,
    val: Any = None,
    argv: Sequence[str] | None = None,
    hparams: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """The reproducibility record of a run: plain, JSON-serialisable data (E1, E3).

    Sections: ``git`` (commit, branch, dirty flag, full uncommitted diff including
    untracked files, of the recipe's repository, or for ``recipe_file=None`` that of the
    script in ``argv[0]`` or the working directory; ``None`` outside a git work tree or
    without git), ``command``
    (``argv``, defaulting to ``sys.argv``, and the working directory), ``recipe`` (its
    path and sha256), ``seed``, ``hparams``, ``env`` (:func:`environment`) and ``data``
    (:func:`data_fingerprint`, when ``train`` or ``val`` is given). A section that
    fails is recorded as ``{"error": "..."}``: capturing never stops a run.
    """
    recipe_path = Path(recipe_file).expanduser().resolve() if recipe_file is not None else None
    from danlu.store.base import redact_credentials

    argv = [redact_credentials(str(a)) for a in (sys.argv if argv is None else argv)]
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "captured_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    folder = _code_folder(recipe_path, argv)
    record["git"] = _reused(("git", str(folder)), lambda: _guard(lambda: git_info(folder)))
    record["command"] = {"argv": argv, "line": shlex.join(argv), "cwd": os.getcwd()}
    record["recipe"] = _guard(lambda: _recipe_info(recipe_path)) if recipe_path else None
    record["seed"] = seed
    record["hparams"] = jsonable(dict(hparams or {}))
    record["env"] = _reused(("env",), lambda: _guard(environment))
    record["data"] = (
        _guard(lambda: kept_fingerprint(train, val, data_fingerprint)) if train is not None or val is not None else None
    )
    return record


#: Sections kept for reuse inside `reusing_sections()`; None outside one.
_reuse: dict[tuple[str, ...], Any] | None = None


@contextmanager
def reusing_sections() -> Iterator[None]:
    """Inside, every capture takes the git state and the environment once (per code folder)
    and reuses them: the runs of one study worker share both, and asking git and every
    installed package again cost a tiny trial most of its time (0.3 s of 0.4 s). The
    recipe's hash, hyperparameters, seed and data fingerprint are still taken per run."""
    global _reuse
    outer = _reuse
    _reuse = {} if outer is None else outer
    try:
        yield
    finally:
        _reuse = outer


def _reused(key: tuple[str, ...], make) -> Any:
    import copy

    if _reuse is None:
        return make()
    if key not in _reuse:
        _reuse[key] = make()
    return copy.deepcopy(_reuse[key])


def _code_folder(recipe_path: Path | None, argv: list[str]) -> Path:
    """Where the run's code lives: the recipe's folder, else the script's, else the cwd."""
    if recipe_path is not None:
        return recipe_path.parent
    if argv and argv[0].endswith(".py") and Path(argv[0]).is_file():
        return Path(argv[0]).resolve().parent
    return Path.cwd()


def _guard(fn) -> Any:
    """Run one capture section; a failure becomes {"error": ...} instead of an exception."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a record must never stop training
        return {"error": f"{type(exc).__name__}: {exc}"}


def _recipe_info(path: Path) -> dict[str, Any]:
    return {"path": str(path), "name": path.name, "sha256": sha256_file(path)}


# ------------------------------------------------------------------------ git
def git_root(folder: Path | str) -> Path | None:
    """The root of the git work tree containing ``folder``; ``None`` outside one (or without git)."""
    folder = Path(folder)
    if not folder.is_dir():
        folder = folder.parent

    def ask() -> Path | None:
        top = _git(["rev-parse", "--show-toplevel"], folder)
        return Path(top.strip()) if top is not None and top.strip() else None

    return _reused(("git_root", str(folder)), ask)


def git_info(folder: Path | str) -> dict[str, Any] | None:
    """Git state of the work tree containing ``folder``; ``None`` when there is none.

    Returns root, commit (``None`` before the first commit), branch (``None`` when
    detached), dirty flag, ``diff`` (``git diff HEAD``: staged and unstaged changes to
    tracked files), ``untracked`` (files not ignored) and ``untracked_diff`` (small
    untracked text files as new-file patch sections, so ``git apply`` of ``diff`` then
    ``untracked_diff`` onto ``commit`` rebuilds the work tree), and the ``origin``
    remote without credentials. Every git call has a timeout; a missing git, a folder
    outside any repository, or a repository git refuses to read all give ``None``.
    """
    root = git_root(folder)
    if root is None:
        return None
    commit = _git(["rev-parse", "--verify", "-q", "HEAD"], root)
    commit = commit.strip() if commit else None
    branch = _git(["symbolic-ref", "--short", "-q", "HEAD"], root)
    branch = branch.strip() if branch else None
    if commit:
        diff = _git(["diff", "HEAD", "--no-ext-diff", "--no-color"], root) or ""
    else:  # no commit yet: everything staged plus unstaged edits on top
        diff = (_git(["diff", "--cached", "--no-ext-diff", "--no-color"], root) or "") + (
            _git(["diff", "--no-ext-diff", "--no-color"], root) or ""
        )
    untracked_raw = _git(["ls-files", "--others", "--exclude-standard", "-z"], root) or ""
    untracked = sorted(p for p in untracked_raw.split("\0") if p)
    status = _git(["status", "--porcelain", "--untracked-files=normal"], root)
    dirty = bool(status.strip()) if status is not None else bool(diff or untracked)
    diff_truncated = len(diff.encode("utf-8", "surrogateescape")) > _MAX_DIFF_BYTES
    if diff_truncated:
        diff = diff.encode("utf-8", "surrogateescape")[:_MAX_DIFF_BYTES].decode("utf-8", "replace")
    untracked_diff, omitted = _untracked_patch(root, untracked)
    remote = _git(["remote", "get-url", "origin"], root)
    return {
        "root": str(root),
        "commit": commit,
        "branch": branch,
        "dirty": dirty,
        "diff": diff,
        "diff_truncated": diff_truncated,
        "untracked": untracked[:_MAX_UNTRACKED_LISTED],
        "untracked_count": len(untracked),
        "untracked_diff": untracked_diff,
        "untracked_omitted": omitted,
        "remote": _strip_credentials(remote.strip()) if remote else None,
    }


def _git(args: list[str], cwd: Path) -> str | None:
    """Output of one git command, or None if git is missing, fails or times out."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        proc = subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=cwd, env=env, capture_output=True, timeout=_GIT_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "surrogateescape")


def _untracked_patch(root: Path, paths: list[str]) -> tuple[str, list[str]]:
    """New-file patch sections for small untracked text files; names of the ones left out."""
    parts: list[str] = []
    omitted: list[str] = []
    budget = _MAX_UNTRACKED_TOTAL_BYTES
    for rel in paths:
        path = root / rel
        try:
            if path.is_symlink() or not path.is_file():
                omitted.append(rel)
                continue
            size = path.stat().st_size
            if size >= _MAX_UNTRACKED_FILE_BYTES or size > budget:
                omitted.append(rel)
                continue
            data = path.read_bytes()
        except OSError:
            omitted.append(rel)
            continue
        if b"\0" in data[:8192]:
            omitted.append(rel)
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            omitted.append(rel)
            continue
        budget -= size
        lines = text.splitlines(keepends=True)
        mode = "100755" if os.access(path, os.X_OK) else "100644"
        section = [f"diff --git a/{rel} b/{rel}\n", f"new file mode {mode}\n"]
        if lines:
            section += ["--- /dev/null\n", f"+++ b/{rel}\n", f"@@ -0,0 +1,{len(lines)} @@\n"]
            section += ["+" + line for line in lines]
            if not lines[-1].endswith("\n"):
                section[-1] += "\n"
                section.append("\\ No newline at end of file\n")
        parts.append("".join(section))
    return "".join(parts), omitted


def _strip_credentials(url: str) -> str:
    return re.sub(r"^(\w+://)[^/@]*@", r"\1", url)


# ---------------------------------------------------------------- environment
def environment() -> dict[str, Any]:
    """Python, platform, torch/CUDA/cuDNN versions, GPUs, CPU model, cores and packages."""
    cuda_available = torch.cuda.is_available()
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # noqa: BLE001
        cudnn = None
    gpus = []
    if cuda_available:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {"name": props.name, "capability": f"{props.major}.{props.minor}",
                 "memory_gb": round(props.total_memory / 2**30, 1)}
            )
    try:
        available_cores = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        available_cores = os.cpu_count()
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "gpus": gpus,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_available": available_cores,
        "torch_threads": torch.get_num_threads(),
        "env_vars": {k: os.environ[k] for k in _ENV_VARS if k in os.environ},
        "packages": _packages(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


#: The last package list, with the sys.path folders (and their modification times) it was read from.
_packages_seen: tuple[tuple[tuple[str, int], ...], list[str]] | None = None


def _packages() -> list[str]:
    """Installed distributions as sorted 'name==version' lines (first on sys.path wins).

    Reading every distribution's metadata takes a tenth of a second, paid by every run of a
    notebook or a study; the list is kept while no folder on sys.path changed (installing,
    upgrading or removing a package writes into its folder, which changes its mtime)."""
    global _packages_seen
    key = tuple((p, _mtime(p)) for p in sys.path)
    if _packages_seen is None or _packages_seen[0] != key:
        _packages_seen = (key, _read_packages())
    return list(_packages_seen[1])


def _mtime(path: str) -> int:
    try:
        return os.stat(path or ".").st_mtime_ns
    except OSError:
        return -1


def _read_packages() -> list[str]:
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        try:
            name, version = _name_version(dist)
        except Exception:  # noqa: BLE001 - broken metadata must not break capture
            continue
        if not name:
            continue
        key = normalise_package(name)
        if key not in seen:
            seen[key] = f"{name}=={version}"
    return sorted(seen.values(), key=str.lower)


def _name_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """Name and Version from the metadata file's header lines: a ninth of the time of parsing the
    whole file as email (`dist.metadata`), which a run's first capture would wait for."""
    name = version = None
    for line in (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").splitlines():
        if not line:
            break  # the headers end at the first blank line; the long description follows
        if name is None and line.startswith("Name:"):
            name = line[5:].strip()
        elif version is None and line.startswith("Version:"):
            version = line[8:].strip()
    if name is None or version is None:
        name, version = dist.metadata["Name"], dist.version
    return name, version


def normalise_package(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------- data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
