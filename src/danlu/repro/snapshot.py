"""A copy of the code of every run (E4): the recipe and the local modules it imports.

:func:`snapshot_code` writes it into the run's folder, :func:`load_snapshot` loads the
recipe back from that copy (so `danlu reproduce` runs the recorded code, not today's
files) and :func:`diff_snapshots` says what changed between two runs' copies.
"""

from __future__ import annotations

import ast
import difflib
import importlib.machinery
import json
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from danlu.repro.capture import RECORD_VERSION, _reused, git_root, sha256_file

__all__ = ["snapshot_code", "load_snapshot", "diff_snapshots", "MANIFEST"]

# ========================================================== code snapshot (E4)
MANIFEST = "MANIFEST.json"


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
    top = git_root(recipe.parent)
    base = top.resolve() if top is not None else recipe.parent
    modules = _reused(("imports", str(recipe), str(base)), lambda: _local_imports(recipe, base))

    files: dict[str, str] = {}
    module_names: dict[str, str] = {}
    roots: set[str] = {recipe.parent.relative_to(base).as_posix()}
    order = [recipe] + sorted((p for p in modules if p != recipe), key=lambda p: p.relative_to(base).as_posix())
    for path in order:
        rel = path.relative_to(base)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        files[rel.as_posix()] = sha256_file(target)
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
        "base": "git" if top is not None else "folder",
        "files": files,
        "modules": module_names,
        "sys_path": sorted(roots),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return list(files)


def load_snapshot(dest: Path | str, class_name: str | None = None):
    """Load the recipe class from a snapshot written by :func:`snapshot_code`.

    Puts the snapshot's import folders first on ``sys.path`` and drops cached copies of
    the snapshot's modules from ``sys.modules`` whose files lie elsewhere, so the
    recipe and its local modules run exactly the recorded code, not today's files.
    """
    from danlu.recipe import load_recipe_class

    dest = Path(dest).resolve()
    manifest_path = dest / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"'{dest}' has no {MANIFEST}; it is not a code snapshot written by snapshot_code()."
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


def diff_snapshots(a: Path | str, b: Path | str) -> dict[str, Any]:
    """Differences between two code snapshots: added, removed and changed files.

    Changed files come with a unified diff of their text, keyed by relative path;
    comparison uses the sha256 recorded in each snapshot's MANIFEST.json.
    """
    a, b = Path(a), Path(b)
    files_a = json.loads((a / MANIFEST).read_text())["files"]
    files_b = json.loads((b / MANIFEST).read_text())["files"]
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
