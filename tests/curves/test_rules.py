"""One harness for every diagnosis rule (T2, T3, T4, T6): each regime planted in synthetic,
seeded curves must fire, and its near misses (noisy but healthy, a small validation bump,
a near-zero loss wobbling, ...) must stay quiet."""

from __future__ import annotations

import json

import pytest

from danlu.curves import REGIMES, diagnose, get_rules
from danlu.curves.diagnosis import regime_of
from danlu.curves.rules import DiagnosisRule, register

SEEDS = range(4)

#: (regime, factory, kwargs, status): the planted regime must be found with that status.
FIRES = [
    ("nan", "with_nan", {}, "fail"),
    ("diverging", "diverge_late", {}, "fail"),
    ("diverging", "explode", {}, "fail"),
    ("diverging", "blowup_then_dead", {}, "fail"),
    ("diverging", "both_rising", {}, "fail"),
    ("data_problem", "train_flat_val_moves", {}, "warn"),
    ("data_problem", "val_at_baseline", {}, "warn"),
    ("overfitting", "overfit", {}, "warn"),
    ("plateau", "flat", {}, "warn"),
    ("plateau", "stuck_at_baseline", {}, "warn"),
    ("noisy", "noisy_late", {}, "warn"),
    ("underfitting", "still_falling", {}, "info"),
    ("lr_decay", "fake_convergence", {}, "info"),
]

#: (regime that must NOT fire, factory, kwargs): near misses.
NEAR_MISSES = [
    ("overfitting", "val_bump", {"size": 0.15, "where": 5}),          # one bad epoch that recovers
    ("overfitting", "val_bump", {"size": 0.03, "at_end": True}),      # a 3 % bump at the very end
    ("overfitting", "overfit", {"rise": 0.03}),                       # val creeps up 3 %: noise level
    ("diverging", "memorising", {}),                                  # 0.001 -> 0.002 is not divergence
    ("diverging", "spikes", {}),                                      # isolated bad batches
    ("noisy", "spikes", {}),
    ("noisy", "healthy", {"noise": 0.3}),                             # strong but ordinary batch noise
    ("plateau", "slow_learner", {}),                                  # slow, yet steadily learning
    ("plateau", "healthy", {}),                                       # converged is not stuck
    ("data_problem", "healthy", {"baseline": 2.3026}),                # val far below the baseline
    ("underfitting", "memorising", {}),                               # train still halving near 0, val flat
    ("underfitting", "healthy", {}),
    ("underfitting", "still_falling", {"final": False}),              # mid-run: falling is normal
    ("lr_decay", "true_convergence", {}),                             # converged before the LR decayed
    ("lr_decay", "still_falling", {}),                                # constant LR: nothing decayed
]


def _regimes(report):
    return {regime_of(f): f for f in report.findings}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("regime,factory,kwargs,status", FIRES, ids=[f"{r}-{f}" for r, f, _, _ in FIRES])
def test_planted_regime_fires(synth, regime, factory, kwargs, status, seed):
    report = diagnose(getattr(synth, factory)(seed=seed, **kwargs))
    found = _regimes(report)
    assert regime in found, f"{regime} not found; got {report.meta['regimes']}: {report.meta['text']}"
    f = found[regime]
    assert f.status == status
    assert f.summary and f.fix and f.evidence, "every finding carries numbers and the practice's fix"
    assert f.id in ("T2", "T3", "T4", "T6")
    json.dumps(report.to_dict())  # evidence is plain, strict JSON


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("regime,factory,kwargs", NEAR_MISSES, ids=[f"{r}-{f}-{i}" for i, (r, f, _) in enumerate(NEAR_MISSES)])
def test_near_miss_stays_quiet(synth, regime, factory, kwargs, seed):
    report = diagnose(getattr(synth, factory)(seed=seed, **kwargs))
    assert regime not in report.meta["regimes"], report.meta["text"]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("noise", [0.05, 0.2, 0.35])
def test_noisy_but_healthy_is_learning_normally(synth, seed, noise):
    report = diagnose(synth.healthy(seed=seed, noise=noise))
    assert report.meta["regime"] == "learning" and report.meta["regimes"] == ["learning"], report.meta["text"]
    assert report.status == "pass"


def test_overfitting_names_the_turn_and_the_checkpoint_to_keep(synth):
    c = synth.overfit(seed=0)
    c.best_checkpoint = "/runs/x/checkpoints/best.pt"
    f = _regimes(diagnose(c))["overfitting"]
    assert 300 <= f.evidence["turn_step"] <= 600  # planted at step 400; median-of-3 smoothing
    assert f.evidence["best_step"] in (400, 500)
    assert f.evidence["best_checkpoint"] == c.best_checkpoint
    assert "best.pt" in f.fix and "T3" in f.fix


def test_val_stalled_while_train_falls_is_mild_overfitting():
    import numpy as np

    from danlu.curves import Curves

    rng = np.random.default_rng(0)
    t = np.arange(1, 1001)
    vt = t[99::100]
    train = (0.1 + 2.2 * np.exp(-t / 250)) * np.exp(rng.normal(0, 0.1, 1000))
    val = (0.6 + 1.7 * np.exp(-vt / 60)) * (1 + 0.02 * np.clip((vt - 300) / 700, 0, None))  # +2 %: a stall
    f = _regimes(diagnose(Curves.from_series({"train/loss": (t, train), "val/loss": (vt, val)})))["overfitting"]
    assert f.status == "info" and "stopped improving" in f.summary
    assert 300 <= f.evidence["turn_step"] <= 500


def test_plateau_fix_depends_on_the_lr(synth):
    tiny = _regimes(diagnose(synth.flat(lr=1e-7)))["plateau"]
    assert "raise it" in tiny.fix and "×5–10" in tiny.fix
    big = _regimes(diagnose(synth.flat(lr=1e-1)))["plateau"]
    assert "Lower the LR" in big.fix


def test_a_plateau_reached_by_falling_to_the_baseline_asks_for_s5_then_patience(synth):
    """It learned the class frequencies and no more: a model blind to its inputs, or a language model
    at its unigram entropy that needs more steps (seen: pytorch/examples' word LM after one epoch).
    Lowering the LR, the flat-from-the-start fix, is the last thing to try."""
    f = _regimes(diagnose(synth.stuck_at_baseline()))["plateau"]
    assert f.fix.startswith("It fell ") and "% to the majority baseline" in f.fix and "S5" in f.fix and "train longer" in f.fix
    assert f.fix.index("S5") < f.fix.index("train longer") < f.fix.index("lower the LR")


def test_nan_names_the_first_step_and_the_last_finite_value(synth):
    f = _regimes(diagnose(synth.with_nan(at=600)))["nan"]
    assert f.evidence["since_step"] == 600 and f.evidence["last_finite_step"] == 599
    assert "÷10" in f.fix


def test_primary_regime_is_the_most_severe_then_by_priority(synth):
    report = diagnose(synth.val_at_baseline(seed=0))
    assert report.meta["regimes"][0] == report.meta["regime"] == "data_problem"
    assert report.title.endswith("data problem") and report.meta["regime"] == "data_problem"
    live = diagnose(synth.still_falling(final=False))
    assert live.meta["regime"] == "learning"


def test_too_short_is_unknown_not_a_guess(synth):
    from danlu.curves import Curves

    report = diagnose(Curves.from_series({"train/loss": ([1, 2, 3], [2.3, 2.2, 2.1])}))
    assert report.meta["regime"] == "unknown" and report.status == "skip"


def test_registry_order_and_a_new_rule_plugs_in(synth):
    names = [r.name for r in get_rules()]
    assert names[:2] == ["nan", "diverging"] and REGIMES[-1] == "learning"
    assert set(names) | {"learning"} == set(REGIMES)

    class Always(DiagnosisRule):
        name, practice, title = "always", "T2", "always"

        def check(self, curves, analysis):
            return self.finding("info", "always here", {"x": 1}, fix="none")

    report = diagnose(synth.healthy(), rules=get_rules() + [Always()])
    assert "always" in report.meta["regimes"]
    with pytest.raises(ValueError, match="already registered"):
        register(type("Dup", (Always,), {"name": "nan"}))


# ------------------------------------------------------- "learning normally" needs evidence
@pytest.mark.parametrize("seed", SEEDS)
def test_a_run_too_short_to_read_is_said_so(synth, seed):
    report = diagnose(synth.short_run(seed=seed))
    assert report.meta["regime"] == "too_short" and report.meta["title"] == "too short to tell"
    f = report.findings[0]
    assert f.status == "info" and "14 training points" in f.summary and "at least 30" in f.fix
    assert "learning normally" not in json.dumps(report.to_dict())


@pytest.mark.parametrize("seed", SEEDS)
def test_a_run_that_settled_far_above_what_works_is_not_learning_normally(synth, seed):
    report = diagnose(synth.settled_high(seed=seed))
    assert report.meta["regime"] == "learning_little", report.meta["text"]
    f = report.findings[0]
    assert f.status == "info" and "of the majority baseline" in f.summary
    assert 0.6 < f.evidence["of_baseline"] < 0.8
    healthy = diagnose(synth.healthy(seed=seed, baseline=synth.LN10))
    assert healthy.meta["regime"] == "learning" and healthy.findings[0].name == "learning normally"


def test_regression_speaks_of_the_mean_predictor_baseline(synth):
    report = diagnose(synth.regression_val_at_baseline())
    assert report.meta["regime"] == "data_problem"
    text = report.findings[0].summary
    assert "mean-predictor baseline" in text and "majority" not in text


def test_users_read_titles_never_internal_keys(synth):
    report = diagnose(synth.fake_convergence())
    assert "lr_decay" in report.meta["regimes"]                       # the key, for --stop-on and tools
    names = [f.name for f in report.findings]
    assert "flat only from LR decay" in names and "lr_decay" not in names
