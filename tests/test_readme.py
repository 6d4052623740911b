"""The README's examples run (STYLE 12: docs examples that CI executes)."""

from __future__ import annotations

import re
from pathlib import Path

from danlu.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_recipe_trains_from_the_cli(tmp_path, capsys):
    recipe = next(b for b in _blocks("python") if b.startswith("# my_recipe.py"))
    path = tmp_path / "my_recipe.py"
    path.write_text(recipe)
    store = str(tmp_path / "store")
    assert main(["train", str(path), "lr=3e-3", "hidden=64", "-m", "wider net", "--quiet", "--store", store]) == 0
    assert main(["runs", "--store", store, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"note": "wider net"' in out and '"hidden": 64' in out
    assert main(["show", "last", "--store", store]) == 0


def test_readme_tracking_loop(tmp_path, capsys):
    import math

    import danlu
    from danlu.store import open_store

    block = next(b for b in _blocks("python") if "danlu.init" in b)
    code = block.replace("range(1000)", "range(60)")
    code = code.replace('name="my-loop")', f'name="my-loop", store=r"{tmp_path / "s"}")')
    assert code != block
    exec(compile(code, "README.md", "exec"), {"danlu": danlu})
    store = open_store(tmp_path / "s")
    run = store.get_run("my-loop")
    steps, values = store.read_series(run.id, "train/loss")
    assert run.status == "finished" and len(steps) == 60 and all(map(math.isfinite, values))
    assert "grad_norm/total" in store.series_names(run.id)  # danlu.watch logged into the run
    assert main(["diagnose", "my-loop", "--store", str(tmp_path / "s")]) in (0, 1)
    assert "diagnosis" in capsys.readouterr().out.lower()


def test_readme_python_functions(tmp_path, monkeypatch):
    """The notebook section: every command as a function, on the README's own recipe."""
    recipe = next(b for b in _blocks("python") if b.startswith("# my_recipe.py"))
    (tmp_path / "my_recipe.py").write_text(recipe.replace("epochs: int = 5", "epochs: int = 2"))
    block = next(b for b in _blocks("python") if b.startswith("# in_python.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DANLU_HOME", str(tmp_path / ".danlu"))
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["check"].kind == "check" and scope["audit"].kind == "audit"
    assert scope["result"].status == "finished" and scope["curves"].kind == "diagnosis"
    assert scope["errors"].kind == "cases"
    from danlu.store import open_store

    kinds = {r.kind for r in open_store(tmp_path / ".danlu").list_runs()}
    assert kinds == {"check", "audit", "train"}     # every report kept, with its run
