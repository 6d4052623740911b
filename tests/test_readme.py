"""The README's examples run (STYLE 12: docs examples that CI executes)."""

from __future__ import annotations

import re
from pathlib import Path

from danlu.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _integration_tests(name: str):
    """A module of tests/integrations (its models and data feed the README's snippets)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"readme_{name}", ROOT / "tests" / "integrations" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_readme_logs_from_other_tools(tmp_path, monkeypatch, capsys):
    """The 'Logs from other tools' commands, on event files PyTorch's SummaryWriter writes."""
    import shlex

    from torch.utils.tensorboard import SummaryWriter

    text = (ROOT / "README.md").read_text()
    section = text.split("## Logs from other tools", 1)[1]
    block = re.search(r"```\n(.*?)```", section, flags=re.S).group(1)
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.startswith("danlu ")]
    assert [c[1] for c in commands] == ["import", "diagnose", "export"]
    monkeypatch.chdir(tmp_path)
    writer = SummaryWriter(log_dir="runs/exp1")
    for step in range(40):
        writer.add_scalar("train_loss", 1.0 / (step + 1), step)
    writer.close()
    store = ["--store", str(tmp_path / "store")]
    codes = [main([*c[1:], *store]) for c in commands]
    assert codes[0] == 0 and codes[1] in (0, 1) and codes[2] == 0
    assert (tmp_path / "exported" / "runs" / "exp1" / "metrics.csv").exists()


def test_readme_lightning_snippet(tmp_path, monkeypatch):
    """The Lightning section runs as written, given a model and loaders (the ones its tests use)."""
    from danlu.store import open_store

    tests = _integration_tests("test_lightning")
    Tiny, _loaders = tests.Tiny, tests._loaders

    block = next(b for b in _blocks("python") if b.startswith("# with_lightning.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DANLU_HOME", str(tmp_path / "store"))
    train_loader, val_loader = _loaders()
    exec(compile(block, "README.md", "exec"), {"model": Tiny(), "train_loader": train_loader, "val_loader": val_loader})
    record = open_store(tmp_path / "store").get_run("pl-baseline")
    assert record.status == "finished" and record.summary.get("diagnosis")


def test_readme_hf_snippet(tmp_path, monkeypatch):
    """The Hugging Face section runs as written, given the tiny BERT its tests build."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

    from danlu.store import open_store

    Tokens = _integration_tests("test_hf").Tokens

    block = next(b for b in _blocks("python") if b.startswith("# with_hf.py"))
    monkeypatch.setenv("DANLU_HOME", str(tmp_path / "store"))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32,
                                                     max_position_embeddings=16))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=10, logging_steps=1, report_to=[],
                             use_cpu=True, save_strategy="no", disable_tqdm=True)
    exec(compile(block, "README.md", "exec"), {"model": model, "args": args, "train": Tokens(64, 0),
                                               "val": Tokens(16, 1)})
    record = open_store(tmp_path / "store").get_run("hf-baseline")
    assert record.status == "finished" and len(open_store(tmp_path / "store").read_series(record.id, "loss")[0]) == 10


def test_readme_check_on_lightning_and_hf(tmp_path, monkeypatch, capsys):
    """`danlu check` as the Lightning and Hugging Face sections write it, on the set-ups of
    tests/integrations/setups under the README's file names."""
    import shlex

    text = (ROOT / "README.md").read_text()
    commands = [shlex.split(line) for line in re.findall(r"^danlu check .*$", text, flags=re.M)
                if ".py:" in line and ("--datamodule" in line or "make_trainer" in line)]
    assert len(commands) == 2
    setups = ROOT / "tests" / "integrations" / "setups"
    (tmp_path / "model.py").write_text((setups / "lit_classifier.py").read_text()
                                       + "\nLitModel, LitData = LitClassifier, Blobs\n")
    (tmp_path / "build.py").write_text((setups / "hf_trainer.py").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DANLU_HOME", str(tmp_path / "store"))
    for command in commands:
        assert main([*command[1:], "--quiet"]) == 0, command
    out = capsys.readouterr().out
    assert "check LitModel" in out and "check make_trainer" in out


def test_readme_team_store(tmp_path, monkeypatch, tiny_path, capsys):
    """The team-store section as written, with the URL of the PostgreSQL CI starts (skipped without
    one) and a tiny recipe in place of the digits example: train into it, push a laptop run."""
    import os
    import shlex
    import time

    import pytest

    postgres = os.environ.get("DANLU_TEST_POSTGRES_URL")
    if not postgres:
        pytest.skip("DANLU_TEST_POSTGRES_URL is unset: start PostgreSQL with `.ci/start-postgres.sh`")
    section = (ROOT / "README.md").read_text().split("## A team store on PostgreSQL", 1)[1]
    lines = re.search(r"```\n(.*?)```", section, flags=re.S).group(1).splitlines()
    url = f"{postgres}?schema=readme{os.getpid()}{int(time.time())}&artifacts={tmp_path / 'shared'}"
    assert lines[0].startswith("export DANLU_STORE=")
    monkeypatch.setenv("DANLU_STORE", url)
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(tiny_path), "epochs=1", "--quiet", "--store", "./.danlu", "--name", "offline"]) == 0
    for line in lines[1:]:
        argv = shlex.split(line.split("#")[0].replace('"$DANLU_STORE"', url))
        argv = [str(tiny_path) if a == "examples/digits.py" else a for a in argv[1:]]
        assert main([*argv, "--quiet"] if argv[0] == "train" else argv) == 0, line
    from danlu.store import open_store

    team = open_store(url)
    assert {r.name for r in team.list_runs()} >= {"offline"} and len(team.list_runs()) == 2
    team.close()
