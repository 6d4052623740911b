"""The LR finder (T4, T6): sweep analysis, exact restore of model/optimizer/RNG, the coarse scan."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from danlu.lr import analyse_sweep, batch_scaling_finding, lr_range_test, lr_scan, scale_lr
from danlu.recipe import load_recipe


def sweep(center=1e-3, blow=1e-1, seed=0, n=100, noise=0.03):
    """Loss vs LR: flat, a sigmoid descent (steepest at `center`), then a blow-up past `blow`."""
    rng = np.random.default_rng(seed)
    lrs = 1e-7 * (10 / 1e-7) ** (np.arange(n) / (n - 1))
    x = np.log10(lrs)
    loss = 0.3 + 2.0 / (1 + np.exp(2.5 * (x - np.log10(center))))
    loss = loss * np.where(lrs > blow, np.exp(3 * (x - np.log10(blow))), 1.0)
    return lrs, loss * np.exp(rng.normal(0, noise, n))


@pytest.mark.parametrize("seed", range(3))
def test_clear_valley_suggests_the_steepest_descent_with_high_confidence(seed):
    lrs, loss = sweep(seed=seed)
    cut = int(np.argmax(loss > 4 * loss.min())) or len(loss)
    r = analyse_sweep(lrs[:cut], loss[:cut], stop="diverged")
    clean_lrs, clean = sweep(seed=seed, noise=0.0)
    steepest = clean_lrs[np.argmin(np.gradient(np.log(clean), np.log10(clean_lrs))[:cut])]  # ~2e-3
    assert steepest / 2 <= r.suggestion <= steepest * 2
    assert r.fastest[0] <= r.suggestion <= r.fastest[1]
    assert r.confidence == "high" and r.drop > 0.5
    assert 1e-2 <= r.min_loss_lr <= 1e-1


def test_no_descent_is_low_confidence():
    lrs = np.logspace(-7, 1, 100)
    loss = 2.3 * np.exp(np.random.default_rng(0).normal(0, 0.02, 100))
    r = analyse_sweep(lrs, loss, stop="end")
    assert r.confidence == "low" and any("fell only" in why for why in r.reasons)


def test_still_falling_at_the_end_is_not_trusted():
    lrs, loss = sweep(center=3.0, blow=1e9)
    r = analyse_sweep(lrs, loss, stop="end")
    assert r.confidence == "low" and any("end higher" in why for why in r.reasons)


def test_nan_at_once_gives_no_suggestion():
    r = analyse_sweep([1e-7, 1e-6, 1e-5], [2.3, float("nan"), float("nan")], stop="nan")
    assert r.suggestion is None and r.confidence == "low"


class BatchNormTiny(__import__("tiny").Tiny):
    """Tiny with BatchNorm (running buffers) and dropout: everything a sweep could disturb."""

    def model(self):
        return nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def _rng_snapshot():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()


def test_range_test_restores_model_optimizer_and_rng_exactly():
    recipe = BatchNormTiny()
    torch.manual_seed(123)
    model = recipe.model()
    optimizer = recipe.optimizer(model.parameters())
    # give the optimizer some state and the model a grad, as mid-training
    model(torch.randn(8, 2)).sum().backward()
    optimizer.step()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    opt_before = optimizer.state_dict()
    opt_before = {"state": {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()}
                            for k, s in opt_before["state"].items()},
                  "param_groups": [dict(g) for g in opt_before["param_groups"]]}
    rng_t, rng_np, rng_py = _rng_snapshot()
    det = torch.are_deterministic_algorithms_enabled()

    report = lr_range_test(recipe, model=model, optimizer=optimizer, steps=30, end=1.0)

    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:  # bit-identical, buffers (BatchNorm running stats) included
        assert before[k].dtype == after[k].dtype and torch.equal(before[k], after[k]), k
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert model.training is False
    opt_after = optimizer.state_dict()
    assert [g["lr"] for g in opt_after["param_groups"]] == [g["lr"] for g in opt_before["param_groups"]]
    for k, s in opt_before["state"].items():
        for n, t in s.items():
            assert torch.equal(torch.as_tensor(t), torch.as_tensor(opt_after["state"][k][n])), n
    t2, np2, py2 = _rng_snapshot()
    assert torch.equal(rng_t, t2) and np.array_equal(rng_np, np2) and rng_py == py2
    assert torch.are_deterministic_algorithms_enabled() == det
    assert len(report.meta["points"]["lr"]) >= 10


def test_range_test_with_a_fresh_model_leaves_the_global_rng_alone(tmp_path):
    rng_t, rng_np, rng_py = _rng_snapshot()
    report = lr_range_test(load_recipe(__import__("tiny").__file__), steps=60, plot_path=tmp_path / "lr.png")
    t2, np2, py2 = _rng_snapshot()
    assert torch.equal(rng_t, t2) and np.array_equal(rng_np, np2) and rng_py == py2
    assert report.kind == "lr" and report.meta["stop"] in ("diverged", "nan")  # 1e-7 .. 10 blows up
    assert 1e-4 <= report.meta["suggestion"] <= 1.0
    assert report.findings[0].id == "T4" and report.findings[0].name == "suggested lr"
    assert (tmp_path / "lr.png").stat().st_size > 1000 and report.images == ["lr.png"]
    again = lr_range_test(load_recipe(__import__("tiny").__file__), steps=60)
    assert again.meta["points"]["loss"] == report.meta["points"]["loss"]  # seeded: same sweep


def test_range_test_rejects_a_bad_range():
    from danlu.errors import DanluError

    with pytest.raises(DanluError, match="start < end"):
        lr_range_test(BatchNormTiny(), start=1.0, end=1e-3)


def test_scale_lr_linear_and_sqrt():
    s = scale_lr(0.1, 256, 1024)
    assert s["factor"] == 4 and s["linear"] == pytest.approx(0.4) and s["sqrt"] == pytest.approx(0.2)
    down = scale_lr(3e-4, 64, 16)
    assert down["linear"] == pytest.approx(7.5e-5) and down["sqrt"] == pytest.approx(1.5e-4)
    f = batch_scaling_finding(0.1, 256, 1024)
    assert f.id == "T6" and "0.4" in f.summary and "0.2" in f.summary
    assert batch_scaling_finding(0.1, 64, 64).status == "pass"


def test_scan_divides_on_nan_multiplies_when_slow_and_picks_the_best(store, tiny_path):
    recipe = load_recipe(tiny_path)
    report = lr_scan(recipe, lrs=(30.0, 1e-2, 1e-6), store=store, adapt=False)
    rows = {row["lr"]: row for row in report.meta["rows"]}
    assert rows[30.0]["verdict"] == "too high" and rows[30.0]["advice"] == "÷10"
    assert rows[1e-6]["verdict"] == "slow" and rows[1e-6]["advice"] == "×5–10"
    assert report.meta["best_lr"] == 1e-2
    best = report.finding("T4")
    assert best.name == "best lr" and "1e-02" in best.summary and "÷10" in best.summary
    runs = store.list_runs(tags=["lr-scan"])
    assert len(runs) == 3 and all(r.summary.get("diagnosis") for r in runs)


def test_scan_judges_a_run_stuck_above_a_working_lr_as_too_high():
    from danlu.lr.coarse import _judge, _ScanRow

    rows = [_ScanRow(1e-1, "a", "plateau", train_start=2.4, train_end=2.3),   # dead units at the baseline
            _ScanRow(1e-2, "b", "learning", train_start=2.3, train_end=0.1),
            _ScanRow(1e-4, "c", "plateau", train_start=2.3, train_end=2.25)]
    _judge(rows)
    assert [(r.verdict, r.advice) for r in rows] == [("too high", "÷10"), ("ok", ""), ("slow", "×5–10")]
