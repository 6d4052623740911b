"""The engine (issue 2): determinism, logging (T1), checkpoints and early stopping (T3), resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from danlu.engine import EVENTS, fit
from danlu.recipe import load_recipe, load_recipe_class


def _series(store, run_id, name):
    return store.read_series(run_id, name)


def test_same_seed_gives_bit_identical_losses(store, tiny_path):
    a = fit(load_recipe(tiny_path), store=store, progress=False)
    b = fit(load_recipe(tiny_path), store=store, progress=False)
    c = fit(load_recipe(tiny_path, ["seed=1"]), store=store, progress=False)
    sa, va = _series(store, a.run_id, "train/loss")
    sb, vb = _series(store, b.run_id, "train/loss")
    assert len(va) == 18 and np.array_equal(sa, sb)
    assert va.tobytes() == vb.tobytes()  # bit-identical, not merely close
    assert not np.array_equal(va, _series(store, c.run_id, "train/loss")[1])


def test_series_logged_every_batch_probe_and_epoch(store, tiny_path):
    res = fit(load_recipe(tiny_path), store=store, progress=False)
    names = set(store.series_names(res.run_id))
    assert {"train/loss", "lr", "val/probe_loss", "val/loss", "val/acc"} <= names
    steps, _ = _series(store, res.run_id, "train/loss")
    assert steps.tolist() == list(range(1, 19))
    assert _series(store, res.run_id, "val/probe_loss")[0].tolist() == [5, 10, 15]
    assert _series(store, res.run_id, "val/loss")[0].tolist() == [6, 12, 18]
    lr_steps, lrs = _series(store, res.run_id, "lr")
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] < lrs[0]  # cosine decays
    s = res.summary
    assert res.status == "finished" and s["best_val_acc"] > 0.9 and 1 <= s["best_epoch"] <= 3
    ckpts = store.run_dir(res.run_id) / "checkpoints"
    last = torch.load(ckpts / "last.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler", "rng", "step", "epoch", "hparams"} <= set(last)
    assert last["step"] == 18 and (ckpts / "best.pt").exists()


class Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name in EVENTS:
            return lambda state: self.calls.append((name, state.step))
        raise AttributeError(name)


def test_event_order_is_locked(store, tiny_path):
    rec = Recorder()
    fit(load_recipe(tiny_path, ["epochs=1"]), store=store, progress=False, callbacks=[rec])
    expected = [("on_fit_start", 0)]
    for step in range(1, 7):
        expected.append(("on_step_end", step))
        if step % 5 == 0:
            expected.append(("on_probe_end", step))
    expected += [("on_epoch_end", 6), ("on_fit_end", 6)]
    assert rec.calls == expected


def test_early_stopping_keeps_best(store, tiny_path):
    # lr=0: val loss never improves after the first epoch, so patience=2 stops after epoch 3 of 10.
    res = fit(load_recipe(tiny_path, ["lr=0", "min_lr=0", "epochs=10", "patience=2"]), store=store,
              progress=False)
    assert res.status == "finished" and res.summary["epochs"] == 3
    assert "early stop" in res.stop_reason and res.summary["best_epoch"] == 1


class StopAt:
    def __init__(self, step, crash=False):
        self.step, self.crash = step, crash

    def on_step_end(self, state):
        if state.step == self.step:
            if self.crash:
                raise RuntimeError("simulated crash")
            state.stop("interrupted (test)")


@pytest.mark.parametrize("mode", ["stopped-mid-epoch", "crashed-mid-epoch"])
def test_resume_equals_uninterrupted(store, tiny_path, mode):
    full = fit(load_recipe(tiny_path, ["epochs=4"]), store=store, progress=False)
    cut = StopAt(9, crash=(mode == "crashed-mid-epoch"))
    if cut.crash:
        with pytest.raises(RuntimeError):
            fit(load_recipe(tiny_path, ["epochs=4"]), store=store, progress=False, callbacks=[cut])
        first = store.get_run("last")
        assert first.status == "failed"
    else:
        first = store.get_run(fit(load_recipe(tiny_path, ["epochs=4"]), store=store, progress=False,
                                  callbacks=[cut]).run_id)
        assert first.status == "stopped"
    resumed = fit(load_recipe(tiny_path, ["epochs=4"]), store=store, progress=False, resume=first.id)
    assert resumed.run_id == first.id and resumed.status == "finished"
    for name in ("train/loss", "lr", "val/loss", "val/probe_loss"):
        s_full, v_full = _series(store, full.run_id, name)
        s_res, v_res = _series(store, first.id, name)
        assert np.array_equal(s_full, s_res), name
        assert v_full.tobytes() == v_res.tobytes(), name
    assert resumed.summary["best_val_loss"] == full.summary["best_val_loss"]


def test_data_fraction_and_max_steps(store, tiny_path):
    res = fit(load_recipe(tiny_path), store=store, progress=False, data_fraction=0.5, max_steps=4)
    assert res.steps == 4 and res.status == "finished"
    assert store.get_run(res.run_id).summary["steps"] == 4


def test_reproducibility_record_and_snapshot(store, tiny_path):
    res = fit(load_recipe(tiny_path), store=store, progress=False)
    rec = store.get_run(res.run_id)
    assert rec.config["hidden"] == 16 and rec.recipe.endswith("tiny.py:Tiny")
    repro = rec.repro
    assert repro["env"]["torch"] == torch.__version__
    assert repro["data"]["train"]["size"] == 192 and repro["data"]["val"]["size"] == 64
    snap = store.run_dir(res.run_id) / "code"
    assert (snap / repro["code_snapshot"][0]).exists()
    cls = load_recipe_class(snap / [p for p in repro["code_snapshot"] if p.endswith("tiny.py")][0])
    assert cls.__name__ == "Tiny"


@pytest.mark.slow
def test_digits_example_reaches_95_percent(store, digits_path):
    res = fit(load_recipe(digits_path), store=store, progress=False)
    assert res.summary["best_val_acc"] >= 0.95


def test_a_misspelt_hook_is_an_error_that_names_the_event(store, tiny_path):
    import pytest

    from danlu.engine import Callback

    class Typo(Callback):
        def on_epoch_ends(self, state):  # meant: on_epoch_end
            pass

    with pytest.raises(TypeError, match="on_epoch_ends is not an engine event; did you mean on_epoch_end"):
        fit(load_recipe(tiny_path, ["epochs=1"]), store=store, progress=False, callbacks=[Typo()])

    class Nothing:
        pass

    with pytest.raises(TypeError, match="none of the engine's events"):
        fit(load_recipe(tiny_path, ["epochs=1"]), store=store, progress=False, callbacks=[Nothing()])


def test_a_run_nobody_resumes_writes_last_pt_once_at_the_end(store, tiny_path, monkeypatch):
    """resumable=False (study trials, T3): the same training and checkpoints, written once at the end."""
    import danlu.engine as engine

    saved = []
    real = engine._checkpoint
    monkeypatch.setattr(engine, "_checkpoint", lambda path, state, *a: (saved.append((path.name, state.step)),
                                                                         real(path, state, *a)))
    kept = fit(load_recipe(tiny_path), store=store, progress=False)
    every_epoch = [s for s in saved if s[0] == "last.pt"]
    saved.clear()
    once = fit(load_recipe(tiny_path), store=store, progress=False, resumable=False)
    assert every_epoch == [("last.pt", 6), ("last.pt", 12), ("last.pt", 18)]
    assert saved == [("last.pt", 18)]                    # best.pt too waits in memory until the end
    for name in ("last.pt", "best.pt"):
        a = torch.load(store.run_dir(kept.run_id) / "checkpoints" / name, weights_only=False)
        b = torch.load(store.run_dir(once.run_id) / "checkpoints" / name, weights_only=False)
        assert a["model"].keys() == b["model"].keys()
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
        assert (a["step"], a["epoch"]) == (b["step"], b["epoch"])
    assert once.summary["best_val_loss"] == kept.summary["best_val_loss"]


@pytest.mark.parametrize("max_steps", [None, 8])   # to its end, and stopped mid-epoch (6 steps an epoch)
def test_a_run_nothing_goes_on_from_keeps_no_last_pt(store, tiny_path, max_steps):
    """keep_last=False (study trials that cannot be promoted): best.pt holds the weights, and
    no last.pt is written, not even when the run stops mid-epoch."""
    run = fit(load_recipe(tiny_path), store=store, progress=False, resumable=False, keep_last=False,
              max_steps=max_steps)
    folder = store.run_dir(run.run_id) / "checkpoints"
    assert not (folder / "last.pt").exists()
    assert (folder / "best.pt").exists()
    kept = fit(load_recipe(tiny_path), store=store, progress=False, resumable=False, max_steps=max_steps)
    assert (store.run_dir(kept.run_id) / "checkpoints" / "last.pt").exists()
