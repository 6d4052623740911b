"""Reproducibility: seeding and determinism, RNG state, and the record every run keeps.

Practices: S11 (same seed, same result), E1 (every run records its settings, code
version with the uncommitted diff, environment and data version), E3 (any run
reproducible later), E4 (keep a copy of the code per run).

What lives here, one small function per job:

- :func:`seed_everything` seeds Python, NumPy and torch (CPU and CUDA) and, by default,
  switches torch to deterministic algorithms.
- :func:`rng_state` / :func:`set_rng_state` capture and restore every global RNG, for
  checkpoints; the state holds only tensors and plain Python values, so it survives
  ``torch.save`` / ``torch.load`` even with ``weights_only=True``.
- :func:`capture` builds the reproducibility record (plain, JSON-serialisable data):
  git commit/branch/dirty flag/full diff incl. untracked files, command line, seed,
  hyperparameters, environment, data fingerprint.
- :func:`data_fingerprint` hashes a deterministic sample of a train/val pair.
- :func:`snapshot_code` copies the recipe and the local modules it imports into a
  run's folder; :func:`load_snapshot` loads the recipe back from that copy.
- :func:`diff_records` and :func:`diff_snapshots` say what differs between two runs,
  for ``danlu diff``.

Nothing in :func:`capture` may stop a run from training: git is called with timeouts
and every section that fails is recorded as ``{"error": ...}`` instead of raising.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import difflib
import hashlib
import importlib.machinery
import importlib.metadata
import json
import os
import platform
import random
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "RECORD_VERSION",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "capture",
    "git_info",
    "environment",
    "data_fingerprint",
    "snapshot_code",
    "load_snapshot",
    "diff_records",
    "diff_snapshots",
]

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
_FINGERPRINT_SAMPLES = 64


# ============================================================== seeding (S11)
def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device).

    With ``deterministic=True`` (the default) also ask torch for deterministic kernels
    (``use_deterministic_algorithms(True, warn_only=True)``: an op with no deterministic
    implementation warns instead of failing), turn cuDNN's deterministic mode on and its
    benchmark autotuner off, and set ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when unset (cuBLAS
    needs it for reproducible matmuls; it only takes effect if set before CUDA starts, so
    call this early). ``deterministic=False`` switches the deterministic flags back off.
    DataLoader workers are seeded by the recipe's loaders (``torch.initial_seed()`` based).
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too (lazily)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    # torch's CPU kernels are deterministic already; the global flag only matters for CUDA,
    # and setting it imports torch._inductor (about 7 s on a small CPU), so leave it alone there.
    accelerated = torch.cuda.is_available()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if accelerated:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        if accelerated or torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every global RNG's state (Python, NumPy, torch CPU, torch CUDA), for a checkpoint.

    Pass ``generators`` (e.g. ``{"train_loader": gen}``) to include explicit
    ``torch.Generator`` objects such as a DataLoader's shuffling generator; the global
    states do not cover them. The result holds only tensors, ints, floats, strings,
    tuples and lists, so ``torch.load(..., weights_only=True)`` can read it back.
    NumPy ``Generator`` objects made with ``np.random.default_rng`` are not global and
    are not captured.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if generators:
        state["generators"] = {key: gen.get_state() for key, gen in generators.items()}
    return state


def set_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Restore what :func:`rng_state` captured; drawing afterwards repeats exactly.

    CUDA states are restored for as many devices as both the saved state and this machine
    have (a CPU checkpoint resumed on a GPU leaves the GPU generators as seeded). Named
    ``generators`` are restored from the state's entries of the same name.
    """
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    npst = state["numpy"]
    keys = npst["keys"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state(
        (npst["bit_generator"], keys.astype(np.uint32), int(npst["pos"]),
         int(npst["has_gauss"]), float(npst["cached_gaussian"]))
    )
    torch.set_rng_state(_byte_tensor(state["torch"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        count = min(len(cuda), torch.cuda.device_count())
        for index in range(count):
            torch.cuda.set_rng_state(_byte_tensor(cuda[index]), index)
    if generators:
        saved = state.get("generators") or {}
        missing = sorted(set(generators) - set(saved))
        if missing:
            raise KeyError(
                f"The RNG state has no generator named {', '.join(missing)}; it has "
                f"{', '.join(sorted(saved)) or 'none'}. Capture it with rng_state(generators=...)."
            )
        for key, gen in generators.items():
            gen.set_state(_byte_tensor(saved[key]))


def _byte_tensor(value: Any) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return tensor.detach().to("cpu", torch.uint8)


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
    argv = list(sys.argv if argv is None else argv)
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "captured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record["git"] = _guard(lambda: git_info(_code_folder(recipe_path, argv)))
    record["command"] = {"argv": argv, "line": shlex.join(argv), "cwd": os.getcwd()}
    record["recipe"] = _guard(lambda: _recipe_info(recipe_path)) if recipe_path else None
    record["seed"] = seed
    record["hparams"] = _jsonable(dict(hparams or {}))
    record["env"] = _guard(environment)
    record["data"] = (
        _guard(lambda: data_fingerprint(train, val)) if train is not None or val is not None else None
    )
    return record


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
    return {"path": str(path), "name": path.name, "sha256": _sha256_file(path)}


# ------------------------------------------------------------------------ git
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
    folder = Path(folder)
    if not folder.is_dir():
        folder = folder.parent
    top = _git(["rev-parse", "--show-toplevel"], folder)
    if top is None or not top.strip():
        return None
    root = Path(top.strip())
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


def _packages() -> list[str]:
    """Installed distributions as sorted 'name==version' lines (first on sys.path wins)."""
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:  # noqa: BLE001 - broken metadata must not break capture
            name = None
        if not name:
            continue
        key = _normalise_package(name)
        if key not in seen:
            seen[key] = f"{name}=={dist.version}"
    return sorted(seen.values(), key=str.lower)


def _normalise_package(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------- data
def data_fingerprint(train: Any, val: Any) -> dict[str, Any]:
    """Sizes plus sha256 of a deterministic sample of each split (E1 "data version").

    Up to 64 evenly spaced items per split are hashed: tensors and arrays by dtype,
    shape and bytes; numbers and strings by type and repr; tuples, lists, dicts and
    dataclasses recursively. Equal data gives equal hashes in any process; changing a
    sampled item, the size, or an item's dtype changes them. Items between the sampled
    indices are not read, so the cost does not grow with the dataset.
    """
    splits = {"train": _split_fingerprint(train), "val": _split_fingerprint(val)}
    combined = hashlib.sha256()
    for name, info in splits.items():
        combined.update(f"{name}:{info['size']}:{info['sha256']};".encode())
    return {**splits, "sha256": combined.hexdigest()}


def _split_fingerprint(dataset: Any) -> dict[str, Any]:
    if dataset is None:
        return {"size": None, "sampled": 0, "sha256": None, "type": None}
    kind = type(dataset).__name__
    try:
        size = len(dataset)
    except TypeError:
        return {"size": None, "sampled": 0, "sha256": None, "type": kind,
                "note": "dataset has no len(); not fingerprinted"}
    indices = _sample_indices(size, _FINGERPRINT_SAMPLES)
    digest = hashlib.sha256(f"size={size};".encode())
    for index in indices:
        digest.update(f"[{index}]".encode())
        _hash_value(digest, dataset[index])
    return {"size": size, "sampled": len(indices), "sha256": digest.hexdigest(), "type": kind}


def _sample_indices(size: int, count: int) -> list[int]:
    if size <= 0:
        return []
    if size <= count:
        return list(range(size))
    return sorted({round(i * (size - 1) / (count - 1)) for i in range(count)})


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _hash_value(digest: "hashlib._Hash", value: Any) -> None:
    """Feed a canonical, type-tagged encoding of ``value`` into ``digest``."""
    update = digest.update
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        tensor = tensor.cpu().resolve_conj().resolve_neg().contiguous()
        update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.numel():
            update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            update(f"O{value.shape}".encode())
            for item in value.ravel().tolist():
                _hash_value(digest, item)
        else:
            update(f"A{value.dtype.str}{value.shape}".encode())
            update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, np.generic):
        update(f"G{value.dtype.str}".encode())
        update(value.tobytes())
    elif value is None or isinstance(value, (bool, int, float, complex, str)):
        update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        update(f"B{len(data)}:".encode())
        update(data)
    elif isinstance(value, Mapping):
        update(f"D{len(value)}(".encode())
        for key in sorted(value, key=repr):
            _hash_value(digest, key)
            _hash_value(digest, value[key])
        update(b")")
    elif isinstance(value, (tuple, list)):
        update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}(".encode())
        for item in value:
            _hash_value(digest, item)
        update(b")")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        update(f"C{type(value).__name__}(".encode())
        for f in dataclasses.fields(value):
            update(f.name.encode())
            _hash_value(digest, getattr(value, f.name))
        update(b")")
    elif hasattr(value, "tobytes") and hasattr(value, "mode") and hasattr(value, "size"):
        update(f"I{value.mode}{value.size}".encode())  # PIL images
        update(value.tobytes())
    else:
        update(f"R{type(value).__name__}:{_ADDRESS.sub('', repr(value))};".encode())


# ========================================================== code snapshot (E4)
_MANIFEST = "MANIFEST.json"


def snapshot_code(recipe_file: Path | str, dest: Path | str) -> list[str]:
    """Copy the recipe file and the project's local modules it imports into ``dest`` (E4).

    The base folder is the git work tree's root when the recipe is in one, else the
    recipe's folder; files keep their paths relative to it, so
    ``load_recipe_class(dest / <recipe path>)`` loads the copy. Imports are followed
    statically (``import x``, ``from x import y``, relative imports, also inside
    functions), transitively; each name resolves to the module already in
    ``sys.modules`` or else to what the recipe's folder and ``sys.path`` would give.
    Modules are copied when their file is under the base folder and not in the
    standard library, site-packages, the active virtual environment or danlu itself;
    packages bring their ``__init__.py``. Imports made by name at run time
    (``importlib.import_module("x")``) are not seen.

    Writes ``dest/MANIFEST.json`` (the recipe's path, each file's sha256, each module's
    name, and the folders to put on ``sys.path``; see :func:`load_snapshot`) and returns
    the copied paths, relative to ``dest``, recipe first.
    """
    recipe = Path(recipe_file).expanduser().resolve()
    if not recipe.is_file():
        raise FileNotFoundError(f"Recipe file '{recipe}' does not exist; cannot snapshot its code.")
    dest = Path(dest)
    git = git_info(recipe.parent)
    base = Path(git["root"]).resolve() if git else recipe.parent
    modules = _local_imports(recipe, base)

    files: dict[str, str] = {}
    module_names: dict[str, str] = {}
    roots: set[str] = {recipe.parent.relative_to(base).as_posix()}
    order = [recipe] + sorted((p for p in modules if p != recipe), key=lambda p: p.relative_to(base).as_posix())
    for path in order:
        rel = path.relative_to(base)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        files[rel.as_posix()] = _sha256_file(target)
        name = modules.get(path)
        if name:
            module_names[rel.as_posix()] = name
            root = _import_root(path, name)
            if root is not None and _is_under(root, base):
                roots.add(root.relative_to(base).as_posix())
    manifest = {
        "version": RECORD_VERSION,
        "recipe": recipe.relative_to(base).as_posix(),
        "source_root": str(base),
        "base": "git" if git else "folder",
        "files": files,
        "modules": module_names,
        "sys_path": sorted(roots),
    }
    (dest / _MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return list(files)


def load_snapshot(dest: Path | str, class_name: str | None = None):
    """Load the recipe class from a snapshot written by :func:`snapshot_code`.

    Puts the snapshot's import folders first on ``sys.path`` and drops cached copies of
    the snapshot's modules from ``sys.modules`` whose files lie elsewhere, so the
    recipe and its local modules run exactly the recorded code, not today's files.
    """
    from danlu.recipe import load_recipe_class

    dest = Path(dest).resolve()
    manifest_path = dest / _MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"'{dest}' has no {_MANIFEST}; it is not a code snapshot written by snapshot_code()."
        )
    manifest = json.loads(manifest_path.read_text())
    for rel in reversed(manifest.get("sys_path", [])):
        folder = str((dest / rel).resolve())
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    for name in manifest.get("modules", {}).values():
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None) if module is not None else None
        if module is not None and not (file and _is_under(Path(file).resolve(), dest)):
            del sys.modules[name]
    spec = str(dest / manifest["recipe"])
    return load_recipe_class(f"{spec}:{class_name}" if class_name else spec)


def _local_imports(recipe: Path, base: Path) -> dict[Path, str]:
    """Local module files the recipe imports, transitively: {file: module name}."""
    search = [str(recipe.parent)] + [p for p in sys.path if isinstance(p, str)]
    excluded = _excluded_roots(base)
    found: dict[Path, str] = {}
    queue: list[tuple[Path, str | None, bool]] = [(recipe, None, False)]
    seen: set[Path] = set()
    while queue:
        path, name, is_package = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for target in _imported_names(path, name, is_package):
            for file, mod_name, pkg in _resolve_module(target, search):
                if file in found or not _is_under(file, base) or _is_excluded(file, excluded):
                    continue
                found[file] = mod_name
                queue.append((file, mod_name, pkg))
    return found


def _imported_names(path: Path, module_name: str | None, is_package: bool) -> list[str]:
    """Dotted module names a source file imports (candidates; unresolvable ones are dropped)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return []
    package = ""
    if module_name:
        package = module_name if is_package else module_name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not package:
                    continue
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    continue
                anchor = ".".join(parts[: len(parts) - (node.level - 1)])
                base_name = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base_name = node.module or ""
            if not base_name:
                continue
            names.append(base_name)
            names += [f"{base_name}.{alias.name}" for alias in node.names if alias.name != "*"]
    return names


def _resolve_module(dotted: str, search: list[str]) -> list[tuple[Path, str, bool]]:
    """Files that importing ``dotted`` executes (each package level, then the module)."""
    out: list[tuple[Path, str, bool]] = []
    parts = dotted.split(".")
    locations: list[str] | None = search
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None) if module is not None else None
        sub = getattr(module, "__path__", None) if module is not None else None
        if module is None:
            if locations is None:
                return out
            try:
                spec = importlib.machinery.PathFinder.find_spec(name, list(locations))
            except (ImportError, ValueError, AttributeError):
                spec = None
            if spec is None:
                return out
            file = spec.origin if spec.has_location else None
            sub = spec.submodule_search_locations
        is_package = sub is not None
        if file and file.endswith(".py"):
            out.append((Path(file).resolve(), name, is_package))
        if not is_package:
            return out
        locations = [str(p) for p in sub]
    return out


def _import_root(file: Path, module_name: str) -> Path | None:
    """The sys.path folder from which ``module_name`` resolves to ``file``."""
    depth = module_name.count(".")
    folder = file.parent.parent if file.name == "__init__.py" else file.parent
    for _ in range(depth):
        folder = folder.parent
    return folder


def _excluded_roots(base: Path) -> list[Path]:
    """danlu itself, the standard library, site-packages, and the interpreter prefixes.

    A prefix that contains the project (a system Python at /usr with the project under
    /usr/src) is not excluded wholesale; its stdlib and site-packages still are.
    """
    import danlu

    roots = {Path(danlu.__file__).resolve().parent}
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        path = Path(prefix).resolve()
        if not _is_under(base, path):
            roots.add(path)
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(Path(path).resolve())
    return sorted(roots)


def _is_excluded(file: Path, excluded: list[Path]) -> bool:
    if any(part in ("site-packages", "dist-packages", "__pycache__") for part in file.parts):
        return True
    return any(_is_under(file, root) for root in excluded)


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ================================================================ differences
def diff_records(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """What differs between two :func:`capture` records, as plain data for ``danlu diff``.

    Only sections that differ appear; an empty dict means the records agree. Sections:
    ``hparams`` and ``env.packages`` as {"changed": {k: [a, b]}, "added": {k: b},
    "removed": {k: a}}; ``seed``, ``command``, ``recipe`` and ``data`` as [a, b] pairs
    or per-split pairs; ``git`` with changed commit/branch/dirty pairs, and
    ``diff_changed`` plus ``diff_delta`` (a unified diff between the two uncommitted
    diffs) when the uncommitted changes differ; ``env`` with changed scalar fields.
    """
    out: dict[str, Any] = {}
    hp = _dict_delta(a.get("hparams") or {}, b.get("hparams") or {})
    if hp:
        out["hparams"] = hp
    if a.get("seed") != b.get("seed"):
        out["seed"] = [a.get("seed"), b.get("seed")]
    line_a = (a.get("command") or {}).get("line")
    line_b = (b.get("command") or {}).get("line")
    if line_a != line_b:
        out["command"] = [line_a, line_b]
    sha_a = (a.get("recipe") or {}).get("sha256")
    sha_b = (b.get("recipe") or {}).get("sha256")
    if sha_a != sha_b:
        out["recipe"] = {"sha256": [sha_a, sha_b]}
    git = _git_delta(a.get("git"), b.get("git"))
    if git:
        out["git"] = git
    env = _env_delta(a.get("env") or {}, b.get("env") or {})
    if env:
        out["env"] = env
    data = _data_delta(a.get("data"), b.get("data"))
    if data:
        out["data"] = data
    return out


def _dict_delta(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    changed = {k: [a[k], b[k]] for k in a.keys() & b.keys() if a[k] != b[k]}
    added = {k: b[k] for k in b.keys() - a.keys()}
    removed = {k: a[k] for k in a.keys() - b.keys()}
    delta = {"changed": dict(sorted(changed.items())), "added": dict(sorted(added.items())),
             "removed": dict(sorted(removed.items()))}
    return {k: v for k, v in delta.items() if v}


def _git_delta(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any]:
    if a is None and b is None:
        return {}
    if a is None or b is None:
        return {"in_repo": [a is not None, b is not None]}
    if "error" in a or "error" in b:
        return {} if a == b else {"error": [a.get("error"), b.get("error")]}
    out: dict[str, Any] = {}
    for key in ("root", "commit", "branch", "dirty"):
        if a.get(key) != b.get(key):
            out[key] = [a.get(key), b.get(key)]
    full_a = (a.get("diff") or "") + (a.get("untracked_diff") or "")
    full_b = (b.get("diff") or "") + (b.get("untracked_diff") or "")
    if full_a != full_b:
        out["diff_changed"] = True
        delta = "".join(difflib.unified_diff(
            full_a.splitlines(keepends=True), full_b.splitlines(keepends=True),
            fromfile="a/uncommitted.diff", tofile="b/uncommitted.diff",
        ))
        out["diff_delta"] = delta[:_MAX_DIFF_BYTES]
    untracked = _dict_delta(dict.fromkeys(a.get("untracked") or [], True),
                            dict.fromkeys(b.get("untracked") or [], True))
    if untracked:
        out["untracked"] = {"added": sorted(untracked.get("added", {})),
                            "removed": sorted(untracked.get("removed", {}))}
    return out


def _env_delta(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted((a.keys() | b.keys()) - {"packages", "executable"}):
        if a.get(key) != b.get(key):
            out[key] = [a.get(key), b.get(key)]
    packages = _dict_delta(_package_map(a.get("packages")), _package_map(b.get("packages")))
    if packages:
        out["packages"] = packages
    return out


def _package_map(lines: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines or []:
        name, _, version = line.partition("==")
        out[_normalise_package(name)] = version
    return out


def _data_delta(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any]:
    if (a or {}).get("sha256") == (b or {}).get("sha256") and (a is None) == (b is None):
        return {}
    out: dict[str, Any] = {}
    for split in ("train", "val"):
        sa = (a or {}).get(split) or {}
        sb = (b or {}).get(split) or {}
        fields = {k: [sa.get(k), sb.get(k)] for k in ("size", "sha256") if sa.get(k) != sb.get(k)}
        if fields:
            out[split] = fields
    out["changed"] = True
    return out


def diff_snapshots(a: Path | str, b: Path | str) -> dict[str, Any]:
    """Differences between two code snapshots: added, removed and changed files.

    Changed files come with a unified diff of their text, keyed by relative path;
    comparison uses the sha256 recorded in each snapshot's MANIFEST.json.
    """
    a, b = Path(a), Path(b)
    files_a = json.loads((a / _MANIFEST).read_text())["files"]
    files_b = json.loads((b / _MANIFEST).read_text())["files"]
    changed: dict[str, str] = {}
    for rel in sorted(files_a.keys() & files_b.keys()):
        if files_a[rel] == files_b[rel]:
            continue
        text_a = (a / rel).read_text(errors="replace").splitlines(keepends=True)
        text_b = (b / rel).read_text(errors="replace").splitlines(keepends=True)
        changed[rel] = "".join(difflib.unified_diff(text_a, text_b, f"a/{rel}", f"b/{rel}"))
    return {
        "added": sorted(files_b.keys() - files_a.keys()),
        "removed": sorted(files_a.keys() - files_b.keys()),
        "changed": changed,
    }


# ---------------------------------------------------------------------- misc
def _jsonable(value: Any) -> Any:
    """Plain JSON-able copy: containers recursed, numpy/torch scalars unwrapped, rest repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_jsonable(v) for v in items]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return repr(value)
