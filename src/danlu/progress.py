"""The live training display: epoch/step, loss, val loss, speed, ETA, and the current diagnosis."""

from __future__ import annotations

import time

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from danlu.console import err_console, escape
from danlu.events import Callback

__all__ = ["TrainingProgress"]


class TrainingProgress(Callback):
    """Engine callback drawing a rich progress bar on stderr (stdout stays clean for --json)."""

    def __init__(self, console=None) -> None:
        self.console = console or err_console
        self.progress: Progress | None = None
        self.task = None
        self._last = 0.0

    def on_fit_start(self, state) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.fields[name]}[/]"),
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(bar_width=24),
            TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
            TextColumn("loss [cyan]{task.fields[loss]}[/]"),
            TextColumn("val [magenta]{task.fields[val]}[/]"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[diag]}"),
            console=self.console,
            transient=False,
            refresh_per_second=8,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=state.total_steps, completed=state.step, name=escape(state.run.name),
            epoch=f"{state.epoch + 1}/{state.recipe.epochs}", loss="-", val="-", speed="", diag="",
        )
        self._t0, self._s0 = time.perf_counter(), state.step

    def on_step_end(self, state) -> None:
        now = time.perf_counter()
        if now - self._last < 0.1 and state.step < state.total_steps:  # keep the display cheap
            return
        self._last = now
        rate = (state.step - self._s0) / max(now - self._t0, 1e-9)
        val = state.val_loss if state.val_loss is not None else state.probe_loss
        self.progress.update(
            self.task, completed=state.step, epoch=f"{state.epoch + 1}/{state.recipe.epochs}",
            loss=f"{state.loss:.4f}", val="-" if val is None else f"{val:.4f}",
            speed=f"{rate:.1f} it/s", diag=escape(state.status_line),
        )

    def on_epoch_end(self, state) -> None:
        self._last = 0.0
        self.on_step_end(state)

    def on_fit_end(self, state) -> None:
        if self.progress is not None:
            self._last = 0.0
            self.progress.update(self.task, completed=state.step)
            self.progress.stop()
