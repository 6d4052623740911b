"""Real tiny runs on the digits example, made to overfit, diverge, plateau and learn normally (T2-T4).

The rules are calibrated on synthetic curves (test_rules.py); these runs check that the same
rules name what the engine's real curves do, live (LiveDiagnosis) and after the fact (diagnose_run).
"""

from __future__ import annotations

import pytest

from danlu.curves import LiveDiagnosis, diagnose_run
from danlu.engine import fit
from danlu.recipe import load_recipe


def _fit(store, digits_path, overrides, stop_on=(), **kw):
    lines: list[str] = []
    live = LiveDiagnosis(stop_on=stop_on, announce=lines.append)
    res = fit(load_recipe(digits_path, overrides), store=store, progress=False, capture=False,
              callbacks=[live], **kw)
    return res, live, lines


def test_lr_10_diverges_and_is_stopped_early(store, digits_path):
    res, live, lines = _fit(store, digits_path, ["lr=10"], stop_on={"diverging", "nan"})
    assert res.status == "stopped" and res.steps <= 15, res.stop_reason  # the per-step tripwire
    assert "diverging" in res.stop_reason or "nan" in res.stop_reason
    assert lines and lines[0].split(": ", 1)[1].startswith(("diverging", "NaN/Inf"))
    assert store.get_run(res.run_id).summary["diagnosis"] in ("diverging", "nan")  # saved at fit end


def test_lr_1e7_is_a_plateau_with_the_raise_the_lr_fix(store, digits_path):
    res, live, _ = _fit(store, digits_path, ["lr=1e-7"], max_steps=60)
    report = diagnose_run(store, res.run_id, plot=False)
    assert report.meta["regime"] == "plateau", report.meta["text"]
    assert "raise it" in report.finding("T2").fix
    assert live.current.regime == "plateau"


def test_tiny_data_and_a_large_model_overfit(store, digits_path):
    overrides = ["hidden=512", "channels=32", "dropout=0.0", "schedule=constant", "patience=0", "epochs=40"]
    res, live, lines = _fit(store, digits_path, overrides, data_fraction=0.05)
    report = diagnose_run(store, res.run_id, plot=False)
    assert report.meta["regime"] == "overfitting", report.meta["text"]
    f = next(f for f in report.findings if f.evidence.get("regime") == "overfitting")
    assert f.evidence["best_checkpoint"].endswith("best.pt")
    assert f.evidence["best_step"] == res.summary["best_step"]  # the checkpoint the engine kept (T3)
    assert any(": overfitting since step" in line for line in lines)


@pytest.mark.slow  # a full 12-epoch digits run: ~4 s alone, more on a busy machine
def test_digits_defaults_learn_normally(store, digits_path):
    res, live, lines = _fit(store, digits_path, [], stop_on={"diverging", "nan"})
    report = diagnose_run(store, res.run_id)
    assert report.meta["regime"] == "learning" and report.status == "pass", report.meta["text"]
    assert lines == [] and res.status == "finished"
    assert store.get_run(res.run_id).summary["diagnosis"] == "learning"


MULTI_LABEL = '''
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
import danlu

class Tags(danlu.Recipe):
    lr: float = 3e-3
    epochs: int = 6

    def data(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(800, 12, generator=g)
        y = ((x @ torch.randn(12, 5, generator=g) + 0.5 * torch.randn(800, 5, generator=g)) > 0.3).float()
        return TensorDataset(x[:640], y[:640]), TensorDataset(x[640:], y[640:])

    def model(self):
        return nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 5))

    def loss(self, output, target):
        return F.binary_cross_entropy_with_logits(output, target)

class TagsAsRegression(Tags):
    loss = danlu.Recipe.loss   # the same targets regressed with danlu's MSE
'''


def test_a_healthy_multi_label_model_is_not_learning_little(store, tmp_path):
    """Multi-hot float targets read as regression: the targets' variance (0.247) is no yardstick for
    its BCE (0.40 at its best), which cried "learning little". A recipe's own regression loss has no
    known baseline; danlu's MSE on the same targets keeps one."""
    path = tmp_path / "tags.py"
    path.write_text(MULTI_LABEL)
    own = fit(load_recipe(f"{path}:Tags"), store=store, progress=False, capture=False)
    assert own.summary.get("baseline_loss") is None
    assert diagnose_run(store, own.run_id, plot=False).meta["regime"] != "learning_little"
    mse = fit(load_recipe(f"{path}:TagsAsRegression"), store=store, progress=False, capture=False)
    assert mse.summary["baseline_loss"] == pytest.approx(0.247, abs=0.01)
