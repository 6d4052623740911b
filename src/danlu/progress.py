"""The live training display: epoch/step, loss, val loss, speed, ETA, and the current diagnosis.

On a terminal it is a rich progress bar; where stderr is not one (a CI log, `| tee`, a
notebook) a bar's redraws would pile up as garbage, so it prints one plain line every
PLAIN_EVERY seconds and at each epoch's end instead.
"""

from __future__ import annotations

import time

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from danlu.console import err_console, escape
from danlu.events import Callback

__all__ = ["TrainingProgress", "PLAIN_EVERY"]

#: Seconds between two plain progress lines when the output is not a terminal.
PLAIN_EVERY = 10.0


class TrainingProgress(Callback):
    """Engine callback drawing a rich progress bar on stderr (stdout stays clean for --json)."""

    def __init__(self, console=None) -> None:
        self.console = console or err_console
        self.progress: Progress | None = None
        self.task = None
        self._last = 0.0

    def on_fit_start(self, state) -> None:
        self._t0, self._s0 = time.perf_counter(), state.step
        self.plain = not self.console.is_terminal or self.console.is_jupyter
        if self.plain:
            self._last = self._t0
            return
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

    def _line(self, state, rate: float, now: float) -> str:
        val = state.val_loss if state.val_loss is not None else state.probe_loss
        left = (state.total_steps - state.step) / rate if rate > 0 else float("nan")
        parts = [f"{state.run.name}", f"epoch {state.epoch + 1}/{state.recipe.epochs}",
                 f"step {state.step}/{state.total_steps} ({state.step / max(state.total_steps, 1):.0%})",
                 f"loss {state.loss:.4f}" if state.loss is not None else "loss -",
                 f"val {val:.4f}" if val is not None else "val -", f"{rate:.1f} it/s",
                 f"elapsed {now - self._t0:.0f}s", f"eta {left:.0f}s" if left == left else "eta -"]
        if state.status_line:
            parts.append(state.status_line)
        return "  ".join(parts)

    def on_step_end(self, state) -> None:
        now = time.perf_counter()
        if self.plain:
            if now - self._last >= PLAIN_EVERY:
                self._last = now
                rate = (state.step - self._s0) / max(now - self._t0, 1e-9)
                self.console.print(self._line(state, rate, now), markup=False, highlight=False, soft_wrap=True)
            return
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
        self._last = 0.0 if not self.plain else self._last - PLAIN_EVERY
        self.on_step_end(state)

    def on_fit_end(self, state) -> None:
        if self.plain:
            return
        if self.progress is not None:
            self._last = 0.0
            self.progress.update(self.task, completed=state.step)
            self.progress.stop()
