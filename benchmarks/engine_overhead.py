"""Engine step time and whole-run time beside a plain PyTorch loop and Lightning's Trainer (issues 2, 12).

    .venv/bin/python benchmarks/engine_overhead.py [--epochs 6] [--device cpu]
    (the Lightning row needs `pip install lightning`; it is skipped without it)

All loops train examples/digits.py's CNN on the same batches with the same optimizer and
schedule; the engine runs with full tracking on (every batch logged, lr logged, validation
probe every 50 steps, checkpoints, resource monitor), Lightning with its defaults minus the
progress bar (logging every step, checkpointing, a validation pass per epoch). Per-step time
is measured between optimizer steps inside an epoch, so the once-per-epoch validation is left
out of all; the whole-run time is the wall clock of the call that trains (set-up included).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from danlu.engine import fit, resolve_device  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402
from danlu.repro import seed_everything  # noqa: E402


class StepTimer:
    """Engine callback: wall time of every step; the clock restarts after epoch-end validation."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last = 0.0

    def on_fit_start(self, state) -> None:
        self._last = time.perf_counter()

    def on_step_end(self, state) -> None:
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now

    def on_epoch_end(self, state) -> None:
        self._last = time.perf_counter()


def lightning_loop(recipe, epochs: int, device) -> list[float] | None:
    """Lightning's Trainer on the same model, optimizer, schedule and loaders; None without lightning."""
    try:
        import lightning as L
    except ImportError:
        return None
    seed_everything(recipe.seed)
    train, val = recipe.data()
    recipe.resolve_task(train)
    train_loader, val_loader = recipe.loaders(train, val)
    times: list[float] = []

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = recipe.model()
            self._last = 0.0

        def training_step(self, batch, _):
            x, y = batch
            loss = recipe.loss(self.net(x), y)
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val/loss", recipe.loss(self.net(x), y))

        def on_train_epoch_start(self) -> None:
            self._last = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            now = time.perf_counter()
            times.append(now - self._last)
            self._last = now

        def configure_optimizers(self):
            opt = recipe.optimizer(self.parameters())
            sched = recipe.scheduler(opt, epochs * len(train_loader))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(max_epochs=epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                            default_root_dir=tmp, enable_progress_bar=False, enable_model_summary=False,
                            log_every_n_steps=1, logger=L.pytorch.loggers.CSVLogger(tmp))
        trainer.fit(Module(), train_loader, val_loader)
    return times


def plain_loop(recipe, epochs: int, device) -> list[float]:
    seed_everything(recipe.seed)
    train, val = recipe.data()
    recipe.resolve_task(train)
    train_loader, _ = recipe.loaders(train, val)
    model = recipe.model().to(device)
    opt = recipe.optimizer(model.parameters())
    sched = recipe.scheduler(opt, epochs * len(train_loader))
    times = []
    for _ in range(epochs):
        last = time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            loss = recipe.loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            now = time.perf_counter()
            times.append(now - last)
            last = now
    if device.type == "cuda":
        torch.cuda.synchronize()
    return times


def engine_loop(recipe, epochs: int, device, progress: bool) -> list[float]:
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        fit(recipe, store=Path(tmp) / "store", device=device, progress=progress, callbacks=[timer],
            capture=False)
    return timer.times


def engine_step_overhead(epochs: int = 6, device: str = "cpu", repeats: int = 3) -> dict:
    device = resolve_device(device)
    recipe_path = ROOT / "examples" / "digits.py"
    rows = {}
    for label, run in [
        ("plain PyTorch loop", lambda r: plain_loop(r, epochs, device)),
        ("danlu fit (tracking, no display)", lambda r: engine_loop(r, epochs, device, False)),
        ("danlu fit (tracking + progress display)", lambda r: engine_loop(r, epochs, device, True)),
        ("Lightning Trainer (no progress bar)", lambda r: lightning_loop(r, epochs, device)),
    ]:
        means, medians, walls = [], [], []
        times: list[float] | None = []
        for _ in range(repeats):
            recipe = load_recipe(recipe_path, [f"epochs={epochs}", "patience=0"])
            started = time.perf_counter()
            times = run(recipe)
            if times is None:
                break
            walls.append(time.perf_counter() - started)
            means.append(statistics.fmean(times))
            medians.append(statistics.median(times))
        if times is None:
            continue
        rows[label] = {"mean_ms": 1e3 * min(means), "median_ms": 1e3 * min(medians), "steps": len(times),
                       "wall_s": min(walls)}
    base = rows["plain PyTorch loop"]
    for row in rows.values():
        row["mean_overhead_%"] = 100 * (row["mean_ms"] / base["mean_ms"] - 1)
        row["median_overhead_%"] = 100 * (row["median_ms"] / base["median_ms"] - 1)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = engine_step_overhead(args.epochs, args.device, args.repeats)
    print(f"{'loop':<42} {'steps':>6} {'mean ms':>9} {'median ms':>10} {'mean +%':>8} {'median +%':>10} {'run s':>7}")
    for label, r in rows.items():
        print(f"{label:<42} {r['steps']:>6} {r['mean_ms']:>9.3f} {r['median_ms']:>10.3f} "
              f"{r['mean_overhead_%']:>8.1f} {r['median_overhead_%']:>10.1f} {r['wall_s']:>7.2f}")


if __name__ == "__main__":
    main()
