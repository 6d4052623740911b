"""PyTorch Lightning (issue 13), with the real package on the CPU: a Trainer tracked into the
store by DanluLogger, read live by DanluCallback, stopped through its own flag on a NaN or a
divergence; a healthy run is left alone."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from danlu.lightning import DanluCallback, DanluLogger
from danlu.store import open_store


class Tiny(pl.LightningModule):
    def __init__(self, lr: float = 0.05, poison_at: int = -1, width: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, self.hparams.width), nn.Tanh(), nn.Linear(self.hparams.width, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.net(x).squeeze(-1), y)
        if 0 <= self.hparams.poison_at <= self.global_step:
            loss = loss * float("nan")                     # BUG planted: a NaN from this step on
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self.net(x).squeeze(-1), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 4, generator=g)
    y = x @ torch.tensor([0.5, -1.0, 0.25, 2.0])
    return (DataLoader(TensorDataset(x[:256], y[:256]), batch_size=16, shuffle=True, generator=g),
            DataLoader(TensorDataset(x[256:], y[256:]), batch_size=64))


def _fit(tmp_path, module, name, **callback):
    torch.manual_seed(0)
    logger = DanluLogger(name=name, store=tmp_path / "store", monitor=False)
    watcher = DanluCallback(announce=lambda line: None, **callback)
    trainer = pl.Trainer(max_epochs=4, logger=logger, callbacks=[watcher], enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)
    # log_every_n_steps left at Lightning's default (50): what users run
    train, val = _loaders()
    trainer.fit(module, train, val)
    return trainer, watcher, open_store(tmp_path / "store")


def test_a_trainer_is_tracked_as_a_danlu_training_run(tmp_path):
    trainer, watcher, store = _fit(tmp_path, Tiny(lr=0.05), "pl-healthy", stop_on=("diverging", "nan"))
    record = store.get_run("pl-healthy")
    assert record.kind == "train" and record.status == "finished" and "lightning" in record.tags
    assert record.config["lr"] == 0.05 and record.config["width"] == 8      # save_hyperparameters (E1)
    steps, losses = store.read_series(record.id, "train/loss")       # every batch, from the callback (T1)
    assert steps.tolist() == list(range(1, 65)) and trainer.global_step == 64 and losses[-5:].mean() < losses[:5].mean()
    assert len(store.read_series(record.id, "train_loss")[0]) == 1    # what Lightning hands its logger (step 49)
    assert len(store.read_series(record.id, "lr")[0]) == 64
    import danlu

    after = danlu.diagnose(record.id, store=store, save=False, plot=False)   # what `danlu diagnose RUN` reads
    assert after.meta["regime"] not in ("too_short", "unknown", "diverging", "nan"), after.meta["regime"]
    assert len(store.read_series(record.id, "val_loss")[0]) == 4
    assert record.repro and "env" in record.repro                          # the script's record
    best = record.summary["checkpoints"]["best"]        # Lightning's checkpoint, relative to the run's folder
    assert best.endswith(".ckpt") and not best.startswith("/") and (store.run_dir(record.id) / best).is_file()
    assert watcher.stop_reason is None                                     # a healthy run is left alone
    assert record.summary["diagnosis"] not in ("diverging", "nan")
    assert store.list_reports(run_id=record.id, kind="diagnosis")
    assert record.summary["best_val_loss"] == pytest.approx(min(store.read_series(record.id, "val_loss")[1]))


def test_a_nan_stops_the_trainer_at_once(tmp_path):
    trainer, watcher, store = _fit(tmp_path, Tiny(lr=0.05, poison_at=5), "pl-nan", stop_on=("nan",))
    assert trainer.global_step <= 7 and "nan" in watcher.stop_reason
    record = store.get_run("pl-nan")
    assert record.summary["diagnosis"] == "nan" and "stop on nan" in record.summary["stop_reason"]


def test_a_diverging_run_is_stopped_through_should_stop(tmp_path):
    trainer, watcher, store = _fit(tmp_path, Tiny(lr=3.0, width=64), "pl-diverging", stop_on=("diverging", "nan"))
    assert trainer.global_step < 64 and watcher.stop_reason
    assert store.get_run("pl-diverging").summary["diagnosis"] in ("diverging", "nan")
