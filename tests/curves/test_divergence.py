"""The online divergence test (T2, T4): Tripwire trips on a loss that blows up or gives back what
it learned, and stays quiet on the early transient of a healthy loss that has learned nothing yet."""

from __future__ import annotations

import math

import numpy as np
import pytest

from danlu.curves.divergence import BLOWUP_RATIO, Tripwire, blown_up, diverged

# A healthy heteroscedastic regression trained with Gaussian NLL (AdamW, lr 0.0128): its first
# steps lift the loss from 0.25 to 2.4 before it falls below 0 (recorded on CPU, seed 0).
NLL_START = [0.2521, 0.8051, 2.3586, 0.3718, 0.2569, 0.4537, 0.3911, 0.6541, 0.309, 0.3477, 0.1618,
             -0.0005, -0.0746, -0.0344, -0.2, -0.5165, -0.4266, -0.5365, -0.6897, -0.7808, -0.0463,
             -0.8646, -0.8799, -0.34, -0.9525, -0.7947, -0.6054, -0.5017, -0.8267, -0.7956, -0.8757]


def _first_trip(values) -> int | None:
    wire = Tripwire()
    return next((i + 1 for i, v in enumerate(values) if wire.update(v)), None)


def test_an_early_transient_of_a_healthy_loss_does_not_trip():
    assert _first_trip(NLL_START) is None
    # the same transient on a cross-entropy scale (2.3 -> 9 -> learns)
    ce = [2.3, 5.0, 9.0, 6.0, 4.0, 3.0, 2.5, 2.2, 2.0, 1.8, 1.6] + [1.5 - 0.02 * i for i in range(30)]
    assert _first_trip(ce) is None


@pytest.mark.parametrize("start", [2.3, 0.05, -0.5, 0.0])
def test_a_loss_that_explodes_from_its_first_steps_trips_within_steps(start):
    exploding = [start + (abs(start) or 1.0) * (10 ** (i / 5) - 1) for i in range(40)]
    step = _first_trip(exploding)
    assert step is not None and step <= 15, step


def test_a_loss_that_learned_and_gives_it_back_trips_at_the_usual_ratio():
    """Once it has learned, the 1.5x rule applies: 2.3 -> 0.4, back up to 1.2 (below 10x its best)."""
    values = [2.3 * 0.85 ** i + 0.4 for i in range(60)] + [1.2] * 20
    step = _first_trip(values)
    assert step is not None and step > 60
    assert 1.2 < BLOWUP_RATIO * 0.4


def test_a_non_finite_loss_trips_at_once():
    assert _first_trip([2.3, math.nan]) == 2
    assert _first_trip([2.3, math.inf]) == 2


def test_blown_up_and_diverged_on_losses_at_or_below_zero():
    assert blown_up(-0.4, -1.0) is False and blown_up(9.5, -1.0) is True
    assert blown_up(0.5, 0.0) is False and blown_up(1.5, 0.0) is True
    assert diverged(-0.2, -1.0, 2.0) is True    # learned 3.0, gave back 0.8 of it
    assert diverged(-0.9, -1.0, 2.0) is False


def test_healthy_noisy_losses_never_trip():
    for seed in range(50):
        noise = np.random.default_rng(seed).normal(0, 0.3, 300)
        values = (0.3 + 2.0 * np.exp(-np.arange(300) / 60)) * np.exp(noise)
        assert _first_trip(values.tolist()) is None, seed


def test_a_noisy_loss_that_climbs_back_up_trips():
    """The noise allowance does not hide a real divergence: a loss with 30% batch noise that fell
    from 2.3 to 0.4 and climbs back to 2.0 trips on the way up."""
    rng = np.random.default_rng(3)
    clean = np.concatenate([0.4 + 1.9 * np.exp(-np.arange(200) / 30), np.linspace(0.4, 2.0, 100)])
    values = clean * np.exp(rng.normal(0, 0.3, len(clean)))
    step = _first_trip(values.tolist())
    assert step is not None and 200 < step < 300, step


def test_a_small_noisy_model_that_wobbles_does_not_trip():
    """Seen on the diabetes task of benchmarks/study_efficiency.py (hidden 8, dropout 0.45): the loss
    falls from 1.0 to 0.55 and then wobbles between 0.5 and 0.7 with 25% batch noise."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        t = np.arange(240)
        clean = 0.55 + 0.45 * np.exp(-t / 25) + 0.07 * np.sin(t / 9)
        values = clean * np.exp(rng.normal(0, 0.25, len(t)))
        assert _first_trip(values.tolist()) is None, seed
