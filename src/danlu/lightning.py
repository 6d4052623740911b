"""PyTorch Lightning: track a Trainer's run into the danlu store and read its curves live.

    from danlu.lightning import DanluLogger, DanluCallback
    trainer = Trainer(logger=DanluLogger(name="resnet-baseline"),
                      callbacks=[DanluCallback(stop_on=("diverging", "nan"))])

``DanluLogger`` makes the run an ordinary danlu training run: every ``self.log(...)`` value
at its global step (T1), the hyperparameters from ``save_hyperparameters`` (E1), the
reproducibility record of the script (git state and diff, environment), the paths of the
checkpoints Lightning saved, and the run's end status. ``DanluCallback`` runs danlu's live
curve diagnosis on the training loss, learning rate and validation loss (T2), stops the
Trainer through its own ``should_stop`` flag when a ``stop_on`` regime is reached, keeps
the final diagnosis with the run (what `danlu runs` shows), and guards the model with
``danlu.watch`` (S9: where the first NaN/Inf appears, S8: gradient norms).
Needs ``pip install 'danlu[lightning]'``.
"""

from __future__ import annotations

import math
from argparse import Namespace
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError("danlu.lightning needs PyTorch Lightning: pip install 'danlu[lightning]'") from exc

from danlu.curves.live import LiveDiagnosis
from danlu.curves.series import TRAIN_SERIES, VAL_SERIES

__all__ = ["DanluLogger", "DanluCallback"]

#: Lightning's end states -> danlu run statuses.
_STATUS = {"success": "finished", "finished": "finished", "failed": "failed"}


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested hyperparameters as one level, keys joined with '/' (what `danlu runs` shows)."""
    from danlu.plain import jsonable

    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Namespace):
            value = vars(value)
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}/"))
        else:
            out[name] = jsonable(value)
    return out


class DanluLogger(Logger):
    """A Lightning logger that writes into the danlu store (``store``: a folder, default
    $DANLU_HOME or ./.danlu). The run starts when the Trainer first logs."""

    def __init__(self, name: str | None = None, store: Any = None, tags: Iterable[str] = (), note: str = "",
                 monitor: bool = True) -> None:
        super().__init__()
        self._name, self._store, self._tags, self._note, self._monitor = name, store, list(tags), note, monitor
        self._run: Any = None
        self._last: dict[str, float] = {}
        self._best_val: float | None = None

    # Lightning puts a logger's checkpoints in save_dir/name/version/checkpoints: here that is the
    # run's own folder, <store>/runs/<run id>/checkpoints, where `danlu train` keeps its checkpoints.
    @property
    def name(self) -> str:
        return "runs"

    @property
    def version(self) -> str:
        return self.experiment.id if rank_zero_only.rank == 0 else ""

    @property
    def save_dir(self) -> str | None:
        return str(self.experiment.store.root) if rank_zero_only.rank == 0 else None

    @property
    @rank_zero_experiment
    def experiment(self):
        """The danlu Run (created on first use; other processes of a multi-GPU run get a stand-in)."""
        if self._run is None:
            import danlu

            self._run = danlu.init(name=self._name, store=self._store, tags=["lightning", *self._tags],
                                   note=self._note, quiet=True, monitor=self._monitor)
            self._run.store.update_run(self._run.id, kind="train")
        return self._run

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(params, Namespace):
            params = vars(params)
        run = self.experiment
        config = {**run.record.config, **_flat(dict(params or {}))}
        run.record.config = config
        run.store.update_run(run.id, config=config)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = {k: float(v) for k, v in metrics.items() if k != "epoch" or step is not None}
        self.experiment.log(values, step=step)
        self._last.update(values)
        val = next((values[n] for n in VAL_SERIES if n in values), None)
        if val is not None and math.isfinite(val) and (self._best_val is None or val < self._best_val):
            self._best_val = val

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        folder = self.experiment.store.run_dir(self.experiment.id, create=False)

        def kept(path: str | None) -> str | None:   # relative to the run's folder: the artefact root may move
            if not path:
                return None
            try:
                return Path(path).resolve().relative_to(folder.resolve()).as_posix()
            except ValueError:                        # the user's ModelCheckpoint writes elsewhere
                return str(path)

        self.experiment.update_summary(checkpoints={
            "best": kept(getattr(checkpoint_callback, "best_model_path", "")),
            "last": kept(getattr(checkpoint_callback, "last_model_path", ""))})

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._run is None:
            return
        summary: dict[str, Any] = {k: v for k, v in self._last.items() if math.isfinite(v)}
        if self._best_val is not None:
            summary["best_val_loss"] = self._best_val
        self._run.finish(_STATUS.get(status, "stopped"), summary)


class DanluCallback(Callback):
    """Live curve diagnosis (T2), stop on ``stop_on`` regimes, NaN localisation (S9) for a Trainer.

    The training loss is read from what ``training_step`` returns, and logged for every batch as
    ``train/loss`` (with ``lr``) whatever the Trainer's ``log_every_n_steps``; the validation loss from
    the logged metrics (``val_loss``, ``val/loss`` and the other names danlu reads). Without
    a DanluLogger among the Trainer's loggers the diagnosis is printed but not stored.
    """

    def __init__(self, stop_on: Iterable[str] = (), every: int = 25, watch: bool = True,
                 announce: Any = None) -> None:
        self.live = LiveDiagnosis(every=every, stop_on=stop_on, announce=announce)
        self.watch = watch
        self.stop_reason: str | None = None
        self._watcher: Any = None
        self._tracked: Any = None

    def _run(self, trainer) -> Any:
        for logger in getattr(trainer, "loggers", []):
            if isinstance(logger, DanluLogger):
                return logger.experiment
        return None

    def on_train_start(self, trainer, pl_module) -> None:
        self.live.reset()
        self._tracked = self._run(trainer) if trainer.is_global_zero else None
        if self.watch and trainer.is_global_zero:
            import danlu

            optimizer = trainer.optimizers[0] if trainer.optimizers else None
            self._watcher = danlu.watch(pl_module, optimizer, run=self._run(trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None or not trainer.is_global_zero:
            return
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        if self._tracked is not None:  # every batch (T1): Lightning hands its loggers one step in 50 by default
            self._tracked.log({"train/loss": value, **({"lr": float(lr)} if lr is not None else {})},
                              step=trainer.global_step)
        self._act(trainer, self.live.observe(trainer.global_step, loss=value, lr=lr))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        val = next((metrics[n] for n in VAL_SERIES if n in metrics), None)
        if val is not None:
            self._act(trainer, self.live.observe(trainer.global_step, val_loss=float(val)))

    def _act(self, trainer, reason: str | None) -> None:
        if reason and self.stop_reason is None:
            self.stop_reason = reason
            trainer.should_stop = True   # Lightning stops at the end of this step, as it does for early stopping

    def on_train_end(self, trainer, pl_module) -> None:
        if self._watcher is not None:
            self._watcher.remove()
        if not trainer.is_global_zero or not self.live.train[0]:
            return
        self.live.rediagnose(trainer.global_step, final=True)
        run = self._run(trainer)
        if run is None or self.live.report is None:
            return
        self.live.report.meta.update(run_id=run.id, run_name=run.name)
        run.save_report(self.live.report)
        run.update_summary(diagnosis=self.live.report.meta["regime"],
                           **({"stop_reason": self.stop_reason} if self.stop_reason else {}))


assert "train_loss" in TRAIN_SERIES and "val_loss" in VAL_SERIES
