"""The robust statistics under every diagnosis rule (T2): smoothing, binning, trend tests."""

from __future__ import annotations

import numpy as np
import pytest

from danlu.curves.series import (
    TREND_Z,
    Curves,
    Series,
    binned,
    ema,
    mann_kendall_z,
    median_smooth,
    relative_scale,
    theil_sen,
    trend,
)


def test_theil_sen_recovers_a_line_despite_outliers():
    x = np.arange(50, dtype=float)
    y = 3.0 - 0.5 * x
    y[[5, 17, 33]] = 1e6  # 6 % wild outliers
    slope, intercept = theil_sen(x, y)
    assert slope == pytest.approx(-0.5)
    assert intercept == pytest.approx(3.0)


def test_mann_kendall_sign_and_noise():
    rng = np.random.default_rng(0)
    assert mann_kendall_z(np.arange(30.0)) > TREND_Z
    assert mann_kendall_z(-np.arange(30.0)) < -TREND_Z
    zs = [abs(mann_kendall_z(rng.normal(size=100))) for _ in range(50)]
    assert np.mean(np.array(zs) >= TREND_Z) <= 0.06  # pure noise rarely looks like a trend


def test_median_smooth_ignores_a_spike_and_keeps_length():
    v = np.ones(21)
    v[10] = 100.0
    out = median_smooth(v, 5)
    assert len(out) == 21 and np.all(out == 1.0)
    assert np.array_equal(median_smooth(v, 1), v)


def test_ema_is_bias_corrected():
    out = ema(np.full(10, 4.0), 0.9)
    assert np.allclose(out, 4.0)  # no drift towards 0 at the start


def test_binned_reduces_long_curves_to_medians():
    s = np.arange(10_000)
    v = np.ones(10_000)
    bs, bv = binned(s, v, 400)
    assert len(bs) == 400 and np.all(bv == 1.0) and bs[0] < bs[-1]
    short = binned(s[:50], v[:50], 400)
    assert len(short[0]) == 50


def test_trend_relative_change_and_consistency():
    rng = np.random.default_rng(1)
    s = np.arange(1, 501)
    falling = 2.0 * np.exp(-s / 500) * np.exp(rng.normal(0, 0.2, 500))
    t = trend(s, falling)
    assert t.change == pytest.approx(np.exp(-499 / 500) - 1, abs=0.05)
    assert t.falling(0.3) and not t.flat(0.05) and t.delta < 0
    flat = trend(s, 2.0 * np.exp(rng.normal(0, 0.2, 500)))
    assert flat.flat(0.05) and not flat.falling(0.05) and not flat.rising(0.05)


def test_relative_scale_falls_back_to_linear_for_non_positive_losses():
    assert relative_scale(np.array([0.5, 0.1]))[0] is True
    use_log, scale = relative_scale(np.array([-3.0, -2.0, -1.0]))
    assert use_log is False and scale > 0
    t = trend(np.arange(100), -1.0 - np.arange(100) / 100)  # a log-likelihood-style loss
    assert t.falling(0.3)


def test_series_sorts_and_keeps_last_write_of_a_step():
    s = Series.of([3, 1, 2, 2], [30.0, 10.0, 20.0, 21.0])
    assert s.steps.tolist() == [1, 2, 3] and s.values.tolist() == [10.0, 21.0, 30.0]
    assert Series.of([1, 2, 3], [1.0, np.nan, 2.0]).first_nonfinite() == 1


def test_curves_pick_engine_and_user_loop_names():
    steps = list(range(1, 21))
    eng = Curves.from_series({"train/loss": (steps, [1.0] * 20), "val/loss": (steps[::5], [1.0] * 4),
                              "val/probe_loss": (steps[::2], [1.0] * 10), "lr": (steps, [1e-3] * 20)})
    assert (eng.train.name, eng.val.name, eng.lr.name) == ("train/loss", "val/loss", "lr")
    user = Curves.from_series({"loss": (steps, [1.0] * 20), "val_loss": (steps[::10], [1.0] * 2)})
    assert (user.train.name, user.val.name, user.lr) == ("loss", "val_loss", None)
    # Two whole-set points are too few for trends: the denser probes are used instead.
    few = Curves.from_series({"train/loss": (steps, [1.0] * 20), "val/loss": (steps[::10], [1.0] * 2),
                              "val/probe_loss": (steps[::2], [1.0] * 10)})
    assert few.val.name == "val/probe_loss"
    with pytest.raises(KeyError, match="train/loss"):
        Curves.from_series({"acc": (steps, [1.0] * 20)})


def test_majority_baseline_loss():
    import math

    import torch
    from torch.utils.data import Subset, TensorDataset

    from danlu.curves import baseline_loss, dataset_targets

    assert baseline_loss(torch.arange(10).repeat(5), "classification") == pytest.approx(math.log(10))
    assert baseline_loss([0, 0, 0, 1], "classification") == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert baseline_loss(torch.tensor([1.0, 3.0]), "regression") == pytest.approx(1.0)  # variance
    ds = TensorDataset(torch.zeros(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert dataset_targets(ds).tolist() == [0, 1, 2, 0, 1, 2]
    assert dataset_targets(Subset(ds, [1, 2])).tolist() == [1, 2]

    class Items:  # a map-style dataset with neither .tensors nor .targets
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(2), i % 2

    assert dataset_targets(Items()).tolist() == [0, 1, 0, 1]
