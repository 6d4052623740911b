"""The Hugging Face Trainer: track its run into the danlu store and read its curves live.

    from danlu.hf import DanluCallback
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      callbacks=[DanluCallback(name="bert-tiny", stop_on=("diverging", "nan"))])

Every log the Trainer makes (``loss``, ``learning_rate``, ``grad_norm``, ``eval_loss`` and
the other eval metrics) goes into a danlu training run at the Trainer's global step (T1),
with the ``TrainingArguments`` and the model's config as hyperparameters (E1) and the
reproducibility record of the script. The curves are diagnosed as they come (T2); a
``stop_on`` regime sets ``control.should_training_stop``, the Trainer's own way to stop.
The final diagnosis is kept with the run. Needs ``pip install 'danlu[hf]'``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError("danlu.hf needs transformers: pip install 'danlu[hf]'") from exc

from danlu.curves.live import LiveDiagnosis

__all__ = ["DanluCallback"]

#: What the Trainer logs that is not a curve.
_NOT_SERIES = ("epoch", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second",
               "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


class DanluCallback(TrainerCallback):
    """A Trainer callback: a danlu run per ``train()``, live diagnosis, stop on ``stop_on`` regimes.

    Args:
        name: the run's name (default: generated). store: the store folder (default
        $DANLU_HOME, else ./.danlu). stop_on: regimes that stop training, e.g. ("diverging", "nan").
        every: steps between diagnoses. monitor: CPU, memory and GPU curves.
    """

    def __init__(self, name: str | None = None, store: Any = None, tags: Iterable[str] = (), note: str = "",
                 stop_on: Iterable[str] = (), every: int = 25, monitor: bool = True, announce: Any = None) -> None:
        self.name, self.store, self.tags, self.note, self.monitor = name, store, list(tags), note, monitor
        self.live = LiveDiagnosis(every=every, stop_on=stop_on, announce=announce)
        self.run: Any = None
        self.stop_reason: str | None = None
        self._best_eval: float | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        if not state.is_world_process_zero:
            return
        import danlu
        from danlu.plain import jsonable

        config = {k: jsonable(v) for k, v in args.to_dict().items()}
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            config.update({f"model/{k}": jsonable(v) for k, v in model_config.to_dict().items()
                           if isinstance(v, int | float | str | bool)})
        self.live.reset()
        self.run = danlu.init(config=config, name=self.name, store=self.store, tags=["hf", *self.tags],
                              note=self.note, quiet=True, monitor=self.monitor)
        self.run.store.update_run(self.run.id, kind="train")
        if getattr(args, "logging_strategy", "steps") in ("steps", "IntervalStrategy.STEPS") and \
                float(getattr(args, "logging_steps", 0) or 0) > 50:
            self.live.announce(f"the Trainer logs the loss every {args.logging_steps:g} steps: the curve danlu reads "
                               "has that few points; TrainingArguments(logging_steps=10) or lower lets it see trouble "
                               "early")

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if self.run is None or not logs:
            return
        values = {k: float(v) for k, v in logs.items()
                  if k not in _NOT_SERIES and isinstance(v, int | float) and not isinstance(v, bool)}
        if not values:
            return
        step = int(state.global_step)
        self.run.log(values, step=step)
        val = values.get("eval_loss")
        if val is not None and math.isfinite(val) and (self._best_eval is None or val < self._best_eval):
            self._best_eval = val
        reason = self.live.observe(step, loss=values.get("loss"), lr=values.get("learning_rate"), val_loss=val)
        if reason and self.stop_reason is None:
            self.stop_reason = reason
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs) -> None:
        if self.run is None:
            return
        summary: dict[str, Any] = {"steps": int(state.global_step)}
        if self._best_eval is not None:
            summary["best_val_loss"] = self._best_eval
        if self.stop_reason:
            summary["stop_reason"] = self.stop_reason
        if self.live.train[0]:
            self.live.rediagnose(int(state.global_step), final=True)
            if self.live.report is not None:
                self.live.report.meta.update(run_id=self.run.id, run_name=self.run.name)
                self.run.save_report(self.live.report)
                summary["diagnosis"] = self.live.report.meta["regime"]
        self.run.finish("finished", summary)
        self.run = None
