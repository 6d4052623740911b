"""Real training (issue 12): mixed precision, gradient accumulation, torch.compile, checkpoints every
N steps with bit-identical resume, SIGTERM as a clean stop, losses read back without a host sync per
step, and live resource curves. All on the CPU (CI has no GPU); the CUDA paths run on a device."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import danlu
from danlu.engine import fit
from danlu.recipe import load_recipe

RECIPE = '''
import time
import torch
from torch import nn
from torch.utils.data import TensorDataset
import danlu

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        self.seen = []
    def forward(self, x):
        out = self.body(x)
        self.seen.append(out.dtype)
        return out

class R(danlu.Recipe):
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-2
    delay: float = 0.0

    def data(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(192, 4, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])

    def model(self):
        return Net()

    def forward(self, model, batch):
        if self.delay:
            time.sleep(self.delay)
        x, y = batch
        return model(x), y
'''


@pytest.fixture
def recipe_path(tmp_path) -> Path:
    path = tmp_path / "r.py"
    path.write_text(RECIPE)
    return path


def curve(store, run_id: str, name: str = "train/loss") -> list[float]:
    return store.read_series(run_id, name)[1].tolist()


def weights(store, run_id: str) -> dict[str, torch.Tensor]:
    return torch.load(store.run_dir(run_id) / "checkpoints" / "last.pt", weights_only=False)["model"]


def test_bf16_autocast_trains_on_cpu_and_is_recorded(store, recipe_path):
    result = fit(load_recipe(recipe_path, ["precision=bf16"]), store=store, progress=False, capture=False)
    assert result.status == "finished" and all(torch.isfinite(torch.tensor(curve(store, result.run_id))))
    assert store.get_run(result.run_id).config["precision"] == "bf16"
    full = fit(load_recipe(recipe_path), store=store, progress=False, capture=False)
    assert result.summary["best_val_loss"] == pytest.approx(full.summary["best_val_loss"], rel=0.05)
    assert result.summary["best_val_loss"] < result.summary["baseline_loss"]


def test_bf16_really_runs_the_forward_in_bfloat16(recipe_path):
    from danlu.step import TrainStep

    recipe = load_recipe(recipe_path, ["precision=bf16"])
    train, _ = recipe.data()
    model = recipe.model()
    step = TrainStep.for_recipe(recipe, model, 10)
    step(next(iter(torch.utils.data.DataLoader(train, batch_size=8))))
    assert model.seen == [torch.bfloat16]
    assert model.body[0].weight.dtype == torch.float32          # the weights stay float32


def test_float16_uses_a_gradient_scaler_and_counts_skipped_steps(store, recipe_path):
    from danlu.step import TrainStep

    recipe = load_recipe(recipe_path, ["precision=16"])
    model = recipe.model()
    step = TrainStep.for_recipe(recipe, model, 10)
    assert step.scaler.is_enabled()
    train, _ = recipe.data()
    x, y = train.tensors
    with torch.no_grad():
        model.body[0].weight[0, 0] = float("inf")              # planted: the gradients overflow
    step((x[:8], y[:8]))
    assert step.skipped_steps == 1 and step.scaler.get_scale() < 65536.0
    result = fit(load_recipe(recipe_path, ["precision=16", "epochs=1"]), store=store, progress=False, capture=False)
    assert result.status == "finished" and "amp/skipped_steps" in store.series_names(result.run_id)


def test_accumulating_two_half_batches_equals_one_full_batch(store, recipe_path):
    """Two micro-batches of 16 per optimizer step give the weights of one batch of 32 (same data order,
    mean losses): the schedule counts optimizer steps, and the logged loss is the window's mean."""
    full = fit(load_recipe(recipe_path, ["batch_size=32"]), store=store, progress=False, capture=False)
    acc = fit(load_recipe(recipe_path, ["batch_size=16", "accumulate=2"]), store=store, progress=False, capture=False)
    assert acc.steps == full.steps == 12
    a, b = weights(store, full.run_id), weights(store, acc.run_id)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert curve(store, acc.run_id) == pytest.approx(curve(store, full.run_id), abs=1e-5)
    assert curve(store, acc.run_id, "lr") == pytest.approx(curve(store, full.run_id, "lr"))


def test_a_window_cut_short_by_the_epoch_end_still_steps(store, recipe_path):
    result = fit(load_recipe(recipe_path, ["batch_size=32", "accumulate=3", "epochs=1"]), store=store,
                 progress=False, capture=False)
    assert result.steps == 2                                   # 4 batches: a window of 3, then one of 1


def test_compile_falls_back_to_eager_with_one_warning(store, recipe_path, monkeypatch):
    eager = fit(load_recipe(recipe_path), store=store, progress=False, capture=False)
    failure = type("BackendCompilerFailed", (RuntimeError,), {"__module__": "torch._dynamo.exc"})

    class Broken(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            raise failure("no working C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda model: Broken(model))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = fit(load_recipe(recipe_path, ["compile=true"]), store=store, progress=False, capture=False)
    assert compiled.status == "finished"
    assert [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    assert curve(store, compiled.run_id) == curve(store, eager.run_id)      # the same training, eagerly


def test_a_users_error_inside_a_compiled_model_is_not_swallowed(store, recipe_path, monkeypatch):
    class Buggy(torch.nn.Module):
        def forward(self, x):
            raise ValueError("shapes do not match")            # the user's bug, not the compiler's

    monkeypatch.setattr(torch, "compile", lambda model: Buggy())
    with pytest.raises(ValueError, match="shapes do not match"):
        fit(load_recipe(recipe_path, ["compile=true"]), store=store, progress=False, capture=False)


@pytest.mark.slow
def test_compile_for_real_gives_the_eager_curve(store, recipe_path):
    eager = fit(load_recipe(recipe_path, ["epochs=1"]), store=store, progress=False, capture=False)
    compiled = fit(load_recipe(recipe_path, ["epochs=1", "compile=true"]), store=store, progress=False,
                   capture=False)
    assert compiled.status == "finished"
    assert curve(store, compiled.run_id) == pytest.approx(curve(store, eager.run_id), rel=1e-4)


class CrashAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state) -> None:
        if state.step == self.step:
            raise RuntimeError("simulated kill")


def test_checkpoint_every_resumes_mid_epoch_bit_identically(store, recipe_path):
    """checkpoint_every=3 (4 steps per epoch): a run killed at step 7 resumes from its step-6 checkpoint,
    taken in the middle of epoch 2, and ends with exactly the uninterrupted run's curve and weights."""
    whole = fit(load_recipe(recipe_path, ["checkpoint_every=3"]), store=store, progress=False, capture=False)
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(load_recipe(recipe_path, ["checkpoint_every=3"]), store=store, progress=False, capture=False,
            callbacks=[CrashAt(7)])
    crashed = store.list_runs()[0]
    saved = torch.load(store.run_dir(crashed.id) / "checkpoints" / "last.pt", weights_only=False)
    assert saved["step"] == 6 and saved["batch_in_epoch"] == 2
    resumed = fit(load_recipe(recipe_path, ["checkpoint_every=3"]), store=store, progress=False, capture=False,
                  resume=crashed.id)
    assert resumed.status == "finished" and resumed.steps == whole.steps
    assert curve(store, crashed.id) == curve(store, whole.run_id)
    a, b = weights(store, whole.run_id), weights(store, crashed.id)
    assert all(torch.equal(a[k], b[k]) for k in a)


SIGTERM_RUNNER = """
import sys
import danlu
from danlu.engine import fit

class Ready:
    def on_step_end(self, state):
        if state.step == 3:
            print("started", flush=True)

fit(danlu.load_recipe(sys.argv[1], ["delay=0.05", "epochs=50"]), store=sys.argv[2], progress=False, capture=False,
    callbacks=[Ready()])
"""


def test_sigterm_stops_cleanly_with_a_resumable_checkpoint(tmp_path, recipe_path):
    store_path = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_RUNNER, str(recipe_path), str(store_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"      # training, mid-epoch
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    from danlu.store import open_store

    store = open_store(store_path)
    (run,) = store.list_runs()
    assert run.status == "stopped" and "SIGTERM" in run.summary["stop_reason"]
    assert (store.run_dir(run.id) / "checkpoints" / "last.pt").exists()
    resumed = fit(load_recipe(recipe_path, ["epochs=50"]), store=store, progress=False, capture=False,
                  resume=run.id, max_steps=run.summary["steps"] + 2)
    assert resumed.steps == run.summary["steps"] + 2


def test_losses_are_read_back_in_batches_on_an_accelerator(store, recipe_path, monkeypatch):
    """With losses read every SYNC_EVERY steps (what the engine does on a GPU), every step is still on
    the curve, callbacks see every loss in order, and a NaN still stops the run within a few steps."""
    import danlu.engine as engine

    seen: list[int] = []

    class Watch:
        def __init__(self) -> None:
            self.last = -1

        def on_step_end(self, state) -> None:
            for step, _ in state.losses_since(self.last):
                self.last = step
                seen.append(step)

    original = engine._Losses.flush
    flushes: list[int] = []

    def counting(self, state, run):
        if self.pending:
            flushes.append(len(self.pending))
        return original(self, state, run)

    monkeypatch.setattr(engine._Losses, "flush", counting)
    monkeypatch.setattr(engine, "_sync_every", lambda device: 4)      # as on a GPU, with a smaller window
    result = fit(load_recipe(recipe_path), store=store, progress=False, capture=False, callbacks=[Watch()])
    assert len(curve(store, result.run_id)) == result.steps == 12
    assert seen == list(range(1, 13))
    assert max(flushes) == 4 and sum(flushes) == 12


def test_resource_curves_are_recorded_and_data_loading_is_diagnosed(store, recipe_path, monkeypatch):
    import danlu.monitor as monitor
    from danlu.curves import diagnose_run

    monkeypatch.setattr(monitor, "MONITOR_EVERY", 0.2)
    slow = '''
import time
from torch.utils.data import Dataset
class Slow(Dataset):
    def __init__(self, inner): self.inner = inner
    def __len__(self): return len(self.inner)
    def __getitem__(self, i):
        time.sleep(0.01)
        return self.inner[i]
'''
    path = recipe_path.parent / "slow_data.py"
    path.write_text(RECIPE + slow + '''
class SlowR(R):
    def data(self):
        train, val = super().data()
        return Slow(train), val
''')
    result = fit(load_recipe(f"{path}:SlowR", ["epochs=2"]), store=store, progress=False, capture=False)
    names = store.series_names(result.run_id)
    assert {"sys/cpu_percent", "sys/rss_mb", "sys/data_wait"} <= set(names)
    wait = store.read_series(result.run_id, "sys/data_wait")[1]
    assert wait.max() > 0.5
    report = diagnose_run(store, result.run_id, plot=False)
    assert "data_bound" in report.meta["regimes"]
    finding = next(f for f in report.findings if f.evidence.get("regime") == "data_bound")
    assert "num_workers" in finding.fix
    # a run whose loader keeps up is not called data bound
    fast = fit(load_recipe(recipe_path, ["epochs=2"]), store=store, progress=False, capture=False)
    assert "data_bound" not in diagnose_run(store, fast.run_id, plot=False).meta["regimes"]


def test_danlu_init_runs_record_resources_unless_asked_not_to(tmp_path, monkeypatch):
    import danlu.monitor as monitor

    monkeypatch.setattr(monitor, "MONITOR_EVERY", 0.05)
    run = danlu.init({"lr": 0.1}, store=tmp_path / "s", quiet=True)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        time.sleep(0.05)
    run.finish()
    assert "sys/cpu_percent" in run.store.series_names(run.id)
    quiet = danlu.init({"lr": 0.1}, store=tmp_path / "s", quiet=True, monitor=False)
    quiet.log({"loss": 1.0}, step=0)
    quiet.finish()
    assert not [n for n in quiet.store.series_names(quiet.id) if n.startswith("sys/")]


@pytest.mark.parametrize("override,field", [("accumulate=0", "accumulate"), ("checkpoint_every=-1", "checkpoint_every"),
                                            ("precision=8", "precision")])
def test_engine_settings_are_checked(recipe_path, override, field):
    from danlu.errors import HyperparameterError

    with pytest.raises(HyperparameterError, match=field):
        load_recipe(recipe_path, [override])
