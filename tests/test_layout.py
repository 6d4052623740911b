"""The layout explains itself: no import circles, one module per role-name, checks found by ID,
the library never reaches into the CLI, and library errors do not speak of command-line flags."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import danlu

SRC = Path(danlu.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(sub) for sub in ast.walk(node))
    return hidden


def import_graph() -> dict[str, set[str]]:
    """Module -> danlu modules it imports, at module level or inside functions (not TYPE_CHECKING)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        hidden = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                names = subs if len(subs) == len(node.names) else [*subs, base]
            for name in names:
                target = resolve(name) if name.startswith("danlu") else None
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def test_no_import_circles():
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"modules that import each other: {circles}"


def test_one_module_per_role_name():
    """No two modules share a name (study.py beside study.py); cli/ mirrors the command names,
    and each extension point keeps its interface in a base.py."""
    names = Counter(p.name for p in SRC.rglob("*.py")
                    if p.parent.name != "cli" and p.name not in ("__init__.py", "__main__.py", "base.py"))
    assert [n for n, k in names.items() if k > 1] == []


def test_every_check_lives_in_a_file_named_by_its_id():
    from danlu.checks import checks_of

    for cls in checks_of(None):
        path = Path(__import__(cls.__module__, fromlist=["_"]).__file__).name
        assert re.match(rf"{cls.id.lower()}(_|\.)|.*_{cls.id.lower()}_", path), f"{cls.id} is in {path}"


def test_the_library_never_imports_the_cli():
    graph = import_graph()
    users = [m for m, deps in graph.items()
             if not m.startswith(("danlu.cli", "danlu.__main__")) and any(d.startswith("danlu.cli") for d in deps)]
    assert users == []


def test_library_errors_do_not_speak_of_command_line_flags():
    """`fit(device=...)` says device='cuda', not --device cuda; commands quoted in backticks may show flags."""
    flag = re.compile(r"(^|[\s(])--[a-z]")
    offenders = []
    for path in SRC.rglob("*.py"):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            text = "".join(c.value for c in ast.walk(node.exc)
                           if isinstance(c, ast.Constant) and isinstance(c.value, str))
            if flag.search(re.sub(r"`[^`]*`", "", text)):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {text[:80]}")
    assert offenders == []
