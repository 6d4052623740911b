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


R2_RECIPE = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu


class R2(danlu.Recipe):
    epochs: int = 3
    batch_size: int = 16
    lr: float = 3e-3
    task = "regression"

    def data(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(300, 4, generator=g)
        y = x[:, 0] - 0.5 * x[:, 1] ** 2 + 0.3 * torch.randn(300, generator=g)
        return TensorDataset(x[:200], y[:200]), TensorDataset(x[200:], y[200:])

    def model(self):
        return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))

    def metrics(self, output, target):
        pred = output.reshape(target.shape)
        return {"r2": float(1 - ((pred - target) ** 2).sum() / ((target - target.mean()) ** 2).sum())}
'''


def test_whole_set_metrics_agree_between_the_run_summary_and_the_case_study(tmp_path, store):
    """R² is not an average of batch R²s (C3): the engine computes the recipe's metrics once on the
    whole validation set, and `danlu cases` reports the same number for the same checkpoint."""
    import danlu

    path = tmp_path / "r2.py"
    path.write_text(R2_RECIPE)
    result = danlu.fit(danlu.load_recipe(path), store=store, progress=False)
    summary_r2 = result.summary["best_val_r2"]
    report = danlu.cases(result.run_id, store=store, save=False)
    c3 = next(f for f in report.findings if f.id == "C3")
    assert c3.evidence["recipe_metrics"]["r2"] == pytest.approx(summary_r2, abs=1e-6)
    assert f"r2 {summary_r2:.4g}" in c3.summary
    batch_mean = []   # what averaging batch R²s would have said instead: measurably different
    from danlu.rebuild import load_trained

    trained = load_trained(store, result.run_id)
    _, val = trained.recipe.data()
    loader = torch.utils.data.DataLoader(val, batch_size=16)
    with torch.no_grad():
        for x, y in loader:
            batch_mean.append(trained.recipe.metrics(trained.model(x), y)["r2"] * len(y))
    assert abs(sum(batch_mean) / len(val) - summary_r2) > 1e-3


FLIPPED_RECIPE = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu


class Blobs(danlu.Recipe):
    """Three separable blobs; `flip` training labels moved to another class."""
    epochs: int = 25
    batch_size: int = 32
    lr: float = 1e-2
    flip: int = 0

    def data(self):
        g = torch.Generator().manual_seed(0)
        centres = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
        y = torch.randint(0, 3, (400,), generator=g)
        x = centres[y] + 0.8 * torch.randn(400, 2, generator=g)
        y_train = y[:300].clone()
        y_train[torch.arange(self.flip) * 7] = (y_train[torch.arange(self.flip) * 7] + 1) % 3
        return TensorDataset(x[:300], y_train), TensorDataset(x[300:], y[300:])

    def model(self):
        return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
'''


@pytest.mark.parametrize("flip", [0, 15])
def test_training_labels_are_searched_with_out_of_fold_models(tmp_path, store, flip):
    """C2 on the training split: the models that predict each sample never saw it, so flipped training
    labels are found (and nothing is, without flips); the fold runs are kept as children of the run."""
    import danlu

    path = tmp_path / "blobs.py"
    path.write_text(FLIPPED_RECIPE)
    result = danlu.fit(danlu.load_recipe(path, overrides={"flip": str(flip)}), store=store, progress=False)
    report = danlu.cases(result.run_id, split="train", folds=3, store=store)
    found = next(f for f in report.findings if f.name == "suspicious labels")
    flipped = {7 * k for k in range(flip)}
    assert report.meta["split"] == "train" and len(report.meta["fold_runs"]) == 3
    assert next(f for f in report.findings if f.id == "C3").evidence["samples"] == 300
    if flip:   # the flipped labels lead the list (a model fitted to 5% noise hedges, so chance explains many)
        candidates = found.evidence["candidates"]
        assert set(candidates[:12]) <= flipped and len(set(candidates) & flipped) >= 13
    else:
        assert found.status == "info" and found.evidence["candidates"] == []
    children = [r for r in store.list_runs() if r.id in report.meta["fold_runs"]]
    assert len(children) == 3 and all(r.parent == result.run_id and "out-of-fold" in r.tags for r in children)


def test_training_split_needs_one_run_and_two_folds(store):
    import danlu

    with pytest.raises(DanluError, match="one run at a time"):
        danlu.cases(["a", "b"], split="train", store=store)
    runs = trained_run(store, seed=0)
    with pytest.raises(DanluError, match="at least 2 folds"):
        danlu.cases(runs.id, split="train", folds=1, store=store)


def test_cases_cli_studies_the_training_split(store, capsys):
    """`danlu cases RUN --split train --folds 2`: two fold runs, the report on every training sample."""
    run = trained_run(store, seed=0)
    assert cases(store, run.id, "--split", "train", "--folds", "2", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meta"]["split"] == "train" and len(out["meta"]["fold_runs"]) == 2
    whole = next(f for f in out["findings"] if f["id"] == "C3")
    assert whole["name"] == "whole training set" and whole["evidence"]["samples"] == 192
    with pytest.raises(SystemExit) as exc:                 # argparse: exit 2 with the choices
        cases(store, run.id, "--split", "test")
    assert exc.value.code == 2
