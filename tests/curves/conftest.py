"""Synthetic curves for the diagnosis rules: one factory per regime and per near miss.

Every factory is seeded (numpy default_rng) and returns Curves shaped like an engine run:
a training loss every step (multiplicative batch noise), a whole-set validation loss
every `epoch` steps (small noise), and optionally the LR per step.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from danlu.curves import Curves

N = 1000          # steps
EPOCH = 100       # steps per epoch -> 10 validation points
LN10 = math.log(10)  # majority baseline of a balanced 10-class problem


def _curves(train, val=None, lr=None, n=N, epoch=EPOCH, baseline=None, final=True):
    steps = np.arange(1, n + 1)
    series = {"train/loss": (steps, train)}
    if val is not None:
        series["val/loss"] = (steps[epoch - 1::epoch], val)
    if lr is not None:
        series["lr"] = (steps, lr)
    return Curves.from_series(series, baseline_loss=baseline, final=final)


def _noise(rng, sigma, n=N):
    return np.exp(rng.normal(0.0, sigma, n))


def healthy(seed=0, noise=0.2, n=N, epoch=EPOCH, final=True, baseline=None):
    """Exponential decay to a floor, converged by the last third; val follows slightly above."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1)
    tau = n / 8
    train = (0.2 + 2.1 * np.exp(-t / tau)) * _noise(rng, noise, n)
    vt = t[epoch - 1::epoch]
    val = (0.26 + 2.0 * np.exp(-vt / tau)) * _noise(rng, 0.015, len(vt))
    return _curves(train, val, n=n, epoch=epoch, final=final, baseline=baseline)


def overfit(seed=0, rise=0.3):
    """Val falls to its best at 40 % of the run, then climbs `rise` while train keeps falling."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    train = (0.02 + 2.2 * np.exp(-t / 150)) * _noise(rng, 0.2)
    vt = t[EPOCH - 1::EPOCH]
    base = 0.5 + 1.8 * np.exp(-vt / 120)
    val = base * (1 + rise * np.clip((vt - 400) / 600, 0, None)) * _noise(rng, 0.01, len(vt))
    return _curves(train, val)


def val_bump(seed=0, size=0.15, where=5, at_end=False):
    """Healthy, plus a validation bump: one epoch `where` (that recovers), or the last epoch."""
    c = healthy(seed)
    v = c.val.values.copy()
    if at_end:
        v[-1] *= 1 + size
    else:
        v[where] *= 1 + size
    c.val = type(c.val)(c.val.steps, v, c.val.name)
    return c


def diverge_late(seed=0):
    """Learns, then from step 600 the loss climbs to 3x its best (an LR that became too high)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    base = 0.3 + 2.0 * np.exp(-t / 100)
    base = base * np.where(t > 600, np.exp((t - 600) / 250), 1.0)
    return _curves(base * _noise(rng, 0.2))


def explode(seed=0):
    """LR 10: the loss jumps by orders of magnitude within a few steps and never comes back."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, 201)
    train = np.where(t < 4, 2.3, 2.3 * 10 ** np.minimum(t / 10, 5)) * _noise(rng, 0.3, 200)
    return _curves(train, n=200)


def blowup_then_dead(seed=0):
    """Jumps to 5x its start in the first steps, then sits at the constant-predictor loss."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    train = np.where(t < 3, 2.3, np.where(t < 80, 2.3 * (1 + 4 * np.sin(np.pi * t / 80)), 2.31))
    train = train * _noise(rng, 0.02)
    vt = t[EPOCH - 1::EPOCH]
    return _curves(train, np.full(len(vt), 2.31) * _noise(rng, 0.005, len(vt)), baseline=LN10)


def both_rising(seed=0):
    """Learned, then both curves creep up by ~30 % over the last third."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    shape = lambda x: (0.6 + 1.7 * np.exp(-x / 100)) * (1 + 0.3 * np.clip((x - 650) / 350, 0, None))  # noqa: E731
    vt = t[EPOCH - 1::EPOCH]
    return _curves(shape(t) * _noise(rng, 0.1), shape(vt) * 1.1 * _noise(rng, 0.01, len(vt)))


def with_nan(seed=0, at=600):
    c = healthy(seed)
    v = c.train.values.copy()
    v[at - 1:] = np.nan
    c.train = type(c.train)(c.train.steps, v, c.train.name)
    return c


def flat(seed=0, level=LN10, noise=0.02, baseline=LN10, lr=1e-7):
    """LR 1e-7: nothing moves; both curves sit at the majority baseline."""
    rng = np.random.default_rng(seed)
    vt_n = N // EPOCH
    return _curves(level * _noise(rng, noise), level * _noise(rng, 0.002, vt_n), lr=np.full(N, lr),
                   baseline=baseline)


def stuck_at_baseline(seed=0):
    """A bad init (loss 6) falls to the baseline in 100 steps and stays there: learned nothing."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    train = (LN10 + 3.7 * np.exp(-t / 25)) * _noise(rng, 0.03)
    vt = t[EPOCH - 1::EPOCH]
    return _curves(train, (LN10 + 3.7 * np.exp(-vt / 25)) * _noise(rng, 0.003, len(vt)),
                   lr=np.full(N, 1e-3), baseline=LN10)


def slow_learner(seed=0):
    """A small LR: the loss falls steadily but slowly (30 % over the run). Not a plateau."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    vt = t[EPOCH - 1::EPOCH]
    return _curves(2.3 * np.exp(-0.36 * t / N) * _noise(rng, 0.05),
                   2.35 * np.exp(-0.34 * vt / N) * _noise(rng, 0.005, len(vt)), lr=np.full(N, 1e-5),
                   baseline=LN10)


def train_flat_val_moves(seed=0):
    rng = np.random.default_rng(seed)
    vt = np.arange(EPOCH, N + 1, EPOCH)
    return _curves(1.2 * _noise(rng, 0.1), (0.8 + 1.0 * np.exp(-vt / 300)) * _noise(rng, 0.01, len(vt)))


def val_at_baseline(seed=0, val_level=LN10 * 1.01):
    """Training fits (shuffled labels are memorised), validation stays at chance."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    vt = t[EPOCH - 1::EPOCH]
    return _curves((0.1 + 2.2 * np.exp(-t / 200)) * _noise(rng, 0.2),
                   val_level * _noise(rng, 0.01, len(vt)), baseline=LN10)


def noisy_late(seed=0):
    """Learns to ~0.5, then each step jumps between ~0.1 and ~2 (an LR too high for the batch)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    base = 0.5 + 1.8 * np.exp(-t / 120)
    jitter = np.where(t > 500, np.exp(rng.normal(0, 0.9, N)), _noise(rng, 0.1))
    return _curves(base * jitter)


def spikes(seed=0):
    """Healthy, plus a few isolated spikes (bad batches) late on: not "noisy"."""
    c = healthy(seed)
    v = c.train.values.copy()
    for at in (760, 850, 930):
        v[at] = 3.0
    c.train = type(c.train)(c.train.steps, v, c.train.name)
    return c


def still_falling(seed=0, final=True):
    """Constant LR, stopped early: both curves still fall ~35 % over the last quarter."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    vt = t[EPOCH - 1::EPOCH]
    return _curves(2.3 * np.exp(-1.8 * t / N) * _noise(rng, 0.1),
                   2.4 * np.exp(-1.7 * vt / N) * _noise(rng, 0.005, len(vt)), lr=np.full(N, 1e-3),
                   final=final)


def memorising(seed=0):
    """Near-zero training loss still halving (log scale) while validation has levelled: not underfitting."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    vt = t[EPOCH - 1::EPOCH]
    return _curves((2.3 * np.exp(-t / 80) + 0.01 * np.exp(-t / 400)) * _noise(rng, 0.1),
                   (0.05 + 2.2 * np.exp(-vt / 80)) * _noise(rng, 0.003, len(vt)))


def cosine(n=N, lr=1e-3, floor=1e-5):
    t = np.arange(n)
    return floor + (lr - floor) * 0.5 * (1 + np.cos(np.pi * t / n))


def fake_convergence(seed=0):
    """log-loss falls in proportion to the LR (loss = L0 exp(-k ∫lr)): flat at the end only because
    the cosine LR reached its floor."""
    rng = np.random.default_rng(seed)
    lr = cosine()
    progress = np.cumsum(lr) / lr.sum()
    train = 2.3 * np.exp(-2.0 * progress) * _noise(rng, 0.05)
    vt = np.arange(EPOCH, N + 1, EPOCH)
    val = 2.4 * np.exp(-1.9 * progress[vt - 1]) * _noise(rng, 0.003, len(vt))
    return _curves(train, val, lr=lr)


def true_convergence(seed=0):
    """Converged (at its floor) by mid-run, long before the cosine LR decayed."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    vt = t[EPOCH - 1::EPOCH]
    return _curves((0.2 + 2.1 * np.exp(-t / 80)) * _noise(rng, 0.1),
                   (0.25 + 2.0 * np.exp(-vt / 80)) * _noise(rng, 0.005, len(vt)), lr=cosine())


def short_run(seed=0):
    """14 logged steps and an 8 % fall: nothing to read yet."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, 15)
    train = 2.3 * (1 - 0.08 * t / 14) * _noise(rng, 0.05, 14)
    return _curves(train, n=14)


def settled_high(seed=0):
    """Learned a little, then settled: validation flat at ~1.58 of a 2.30 baseline (a broken net that
    still learns something; the sound one reaches ~0.1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    train = (1.5 + 0.8 * np.exp(-t / 100)) * _noise(rng, 0.05)
    vt = t[EPOCH - 1::EPOCH]
    val = (1.58 + 0.7 * np.exp(-vt / 100)) * _noise(rng, 0.005, len(vt))
    return _curves(train, val, baseline=LN10)


def regression_val_at_baseline(seed=0):
    """Regression: training falls, validation stays at the mean predictor's loss (the target variance)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1)
    train = (0.05 + 0.95 * np.exp(-t / 150)) * _noise(rng, 0.1)
    vt = t[EPOCH - 1::EPOCH]
    curves = _curves(train, np.full(len(vt), 1.0) * _noise(rng, 0.01, len(vt)), baseline=1.0)
    curves.task = "regression"
    return curves


FACTORIES = {name: obj for name, obj in dict(globals()).items()
             if callable(obj) and not name.startswith("_") and obj.__module__ == __name__
             and name not in ("cosine", "synth")}


@pytest.fixture
def synth():
    """The synthetic-curve factories, by name (synth.healthy(seed=1), synth.overfit(), ...)."""
    return SimpleNamespace(**FACTORIES, cosine=cosine, N=N, EPOCH=EPOCH, LN10=LN10)
