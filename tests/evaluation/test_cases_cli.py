"""`danlu cases RUN [RUN ...]`: a run's best checkpoint from the store, the report stored with the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from danlu.cli import main
from danlu.errors import DanluError
from danlu.recipe import load_recipe_class

TESTS = Path(__file__).resolve().parents[1]
TINY = TESTS / "recipes" / "tiny.py"


def cases(store, *argv: str) -> int:
    return main(["cases", *argv, "--store", str(store.root)])


def trained_run(store, seed: int, hidden: int = 16):
    """A finished 'train' run of tests/recipes/tiny.py with a best checkpoint, as the engine leaves it."""
    cls = load_recipe_class(TINY)
    recipe = cls(hidden=hidden, seed=seed)
    train, _ = recipe.data()
    torch.manual_seed(seed)
    model = recipe.model()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = train.tensors
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    record = store.create_run(kind="train", recipe=cls.__danlu_spec__, config=recipe.hparams())
    folder = store.run_dir(record.id) / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "step": 60, "epoch": 1}, folder / "best.pt")
    store.update_run(record.id, status="finished")
    return record


def test_cases_of_one_run_is_stored_with_it(store, capsys):
    run = trained_run(store, seed=0)
    assert cases(store, run.id, "--json", "--top", "5") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "cases" and out["meta"]["runs"] == [run.id]
    whole = next(f for f in out["findings"] if f["id"] == "C3")
    assert whole["evidence"]["samples"] == 64 and whole["evidence"]["accuracy"] > 0.8
    (saved,) = store.list_reports(run.id, "cases")
    assert saved.data["meta"]["run_id"] == run.id
    for rel in saved.data["images"]:
        assert (store.run_dir(run.id) / rel).exists()
    assert "cases/confusion.png" in saved.data["images"]


def test_cases_of_several_runs_adds_the_ensemble(store, capsys):
    runs = [trained_run(store, seed=s, hidden=8 + 4 * s) for s in range(3)]
    assert cases(store, *[r.id for r in runs], "--quiet") == 0
    text = capsys.readouterr().out
    assert "C4" in text and "prob-avg" in text and "vote" in text
    (saved,) = store.list_reports(runs[0].id, "cases")
    scores = next(f for f in saved.data["findings"] if f["id"] == "C4")["evidence"]["scores"]
    assert [s["name"] for s in scores][-2:] == ["prob-avg", "vote"]


def test_missing_checkpoint_is_a_clear_error(store):
    cls = load_recipe_class(TINY)
    record = store.create_run(kind="train", recipe=cls.__danlu_spec__, config=cls().hparams())
    import danlu

    with pytest.raises(DanluError, match="no best checkpoint"):
        danlu.cases(record.id, store=store)
    assert cases(store, record.id) == 2
