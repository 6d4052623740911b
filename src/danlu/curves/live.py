"""Diagnosis while training: the current regime for the progress display, one warning per
change, and an early stop for doomed runs (T2; `danlu train --stop-on diverging,nan`).

Cheap by construction: the callback keeps its own in-memory copy of the curves (it
never queries the store), checks the loss itself for NaN/Inf at every step (a float
comparison), and re-runs the rules only every `every` steps (more sparsely as the
history grows, so the total cost stays linear) and after each validation.

    fit(recipe, callbacks=[LiveDiagnosis(stop_on={"diverging", "nan"})])

For users' own loops (no engine): call :meth:`LiveDiagnosis.observe` with each step's values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from danlu.curves.analysis import MIN_TRAIN_POINTS
from danlu.curves.diagnosis import diagnose, headline, primary_finding, regime_title
from danlu.curves.divergence import Tripwire
from danlu.curves.rules import REGIMES
from danlu.curves.series import Curves
from danlu.errors import DanluError
from danlu.events import Callback

__all__ = ["LiveDiagnosis", "LiveStatus", "RegimeChange", "STOPPABLE", "parse_stop_on"]

#: Regimes `--stop-on` accepts: those after which further training is wasted.
STOPPABLE = ("nan", "diverging", "plateau", "overfitting", "data_problem")


def parse_stop_on(text: str | Iterable[str] | None) -> frozenset[str]:
    """'diverging,nan' -> {'diverging', 'nan'}; unknown names are a clear error."""
    if not text:
        return frozenset()
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [t for t in items if t not in STOPPABLE]
    if unknown:
        raise DanluError(
            f"stop_on got {', '.join(unknown)}: not a regime that can stop a run; choose among "
            f"{', '.join(STOPPABLE)} (e.g. 'diverging,nan')."
        )
    return frozenset(items)


@dataclass(frozen=True)
class LiveStatus:
    """What the progress display shows: the regime and one line about it."""

    regime: str
    text: str
    step: int

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class RegimeChange:
    step: int
    old: str
    new: str
    line: str


def _default_announce(line: str) -> None:
    from danlu.console import err_console, escape

    # prose, not a command to copy: wrapped at words to the terminal's width, not cut by the terminal
    err_console.print(f"[yellow]diagnosis:[/] {escape(line)}", soft_wrap=False)


class LiveDiagnosis(Callback):
    """Engine callback: re-diagnose every `every` steps; warn once per regime change; stop early.

    Args:
        every: steps between diagnoses (at least; the gap grows to 1 % of the history).
        stop_on: regimes that stop the run (subset of STOPPABLE), e.g. {"diverging", "nan"}.
        baseline_loss: the majority-class baseline loss, when known (enables the data-problem
            and plateau-at-baseline checks); else read from ``state.baseline_loss`` if present.
        announce: called with each warning line (default: printed to stderr).
        confirm: consecutive diagnoses a new regime needs before it is announced (no flicker);
            "nan" and "diverging" are announced at once.
        save: at the end of a fit, store the final diagnosis report with the run and its
            regime as the run summary's "diagnosis" (what `danlu runs` shows).
    """

    def __init__(
        self,
        every: int = 25,
        stop_on: Iterable[str] = (),
        baseline_loss: float | None = None,
        announce: Callable[[str], None] | None = None,
        confirm: int = 2,
        save: bool = True,
    ) -> None:
        self.every = max(1, int(every))
        self.stop_on = parse_stop_on(list(stop_on))
        self.baseline_loss = baseline_loss
        self.announce = announce or _default_announce
        self.confirm = max(1, int(confirm))
        self.task: str | None = None
        self.save = save
        self.reset()

    def reset(self) -> None:
        self.train: tuple[list[int], list[float]] = ([], [])
        self.val: tuple[list[int], list[float]] = ([], [])
        self.probe: tuple[list[int], list[float]] = ([], [])
        self.lr: tuple[list[int], list[float]] = ([], [])
        self.current = LiveStatus("learning", "", 0)
        self.events: list[RegimeChange] = []
        self.report = None
        self._pending: tuple[str, int] | None = None
        self._last_run = 0
        self._nan_seen = False
        self._best_checkpoint: str | None = None
        self._tripwire = Tripwire(warmup=MIN_TRAIN_POINTS)
        self._seen_step = -1      # the last training step taken from the engine's read-back losses
        self.data_wait: tuple[list[int], list[float]] = ([], [])

    # ------------------------------------------------------- framework-free API
    def observe(
        self,
        step: int,
        loss: float | None = None,
        lr: float | None = None,
        val_loss: float | None = None,
        probe_loss: float | None = None,
    ) -> str | None:
        """Record one step's values; return a stop reason when a stop_on regime is reached."""
        if loss is not None:
            loss = float(loss)
            self.train[0].append(step)
            self.train[1].append(loss)
            if not math.isfinite(loss) and not self._nan_seen:  # caught at the step it happens
                self._nan_seen = True
                line = f"NaN/Inf loss: training loss is {loss}"
                self._change("nan", step, line, force=True)
                if "nan" in self.stop_on:
                    return f"training loss is {loss} at step {step} (stop on nan)"
        if lr is not None:
            self.lr[0].append(step)
            self.lr[1].append(float(lr))
        fresh_val = False
        if val_loss is not None:
            self.val[0].append(step)
            self.val[1].append(float(val_loss))
            fresh_val = True
        if probe_loss is not None:
            self.probe[0].append(step)
            self.probe[1].append(float(probe_loss))
        gap = max(self.every, len(self.train[0]) // 100)
        if fresh_val or step - self._last_run >= gap or self._blowing_up(loss):
            self._last_run = step
            return self.rediagnose(step)
        return None

    def _blowing_up(self, loss: float | None) -> bool:
        """Cheap per-step test (danlu.curves.divergence.Tripwire): the smoothed loss looks
        diverged. It only brings the next diagnosis forward; the rules still decide."""
        if loss is None or not math.isfinite(loss):
            return False
        return self._tripwire.update(loss)

    def curves(self, final: bool = False) -> Curves:
        series: dict[str, Any] = {"train/loss": self.train}
        if self.val[0]:
            series["val/loss"] = self.val
        if self.probe[0]:
            series["val/probe_loss"] = self.probe
        if self.lr[0]:
            series["lr"] = self.lr
        if final and self.data_wait[0]:
            series["sys/data_wait"] = self.data_wait
        return Curves.from_series(series, baseline_loss=self.baseline_loss, final=final,
                                  best_checkpoint=self._best_checkpoint, task=self.task)

    def rediagnose(self, step: int, final: bool = False) -> str | None:
        """Diagnose the history so far; update `current`; announce a confirmed change."""
        if not self.train[0]:
            return None
        report = diagnose(self.curves(final=final))
        self.report = report
        top = primary_finding(report)
        regime = report.meta["regime"]
        if self._nan_seen and regime != "nan":  # NaN once seen stays the regime
            return None
        line = headline(top) if top is not None else regime
        if regime in ("unknown", "too_short"):
            return None                     # nothing to say yet: too few points to read
        force = regime in ("nan", "diverging")
        self._change(regime, step, line, force=force, summary=top.summary if top else "")
        if regime in self.stop_on and self.current.regime == regime:
            return f"{line}: {top.summary if top else ''} (stop on {regime})"
        return None

    def _change(self, regime: str, step: int, line: str, force: bool = False, summary: str = "") -> None:
        if regime == self.current.regime:
            self._pending = None
            self.current = LiveStatus(regime, line, self.current.step)
            return
        if not force:
            count = self._pending[1] + 1 if self._pending and self._pending[0] == regime else 1
            self._pending = (regime, count)
            if count < self.confirm:
                return
        self._pending = None
        old = self.current.regime
        self.current = LiveStatus(regime, line, step)
        if regime == "learning" and not self.events:
            return  # the normal start needs no announcement
        # Announced in the order they are seen: "at step 200: data problem since step 11" after
        # "at step 110: back to learning normally" reads in order, with when the regime began.
        message = (f"at step {step}: back to learning normally" if regime == "learning"
                   else f"at step {step}: {line}")
        if summary and regime != "learning":
            message += f" ({summary})"
        self.events.append(RegimeChange(step, old, regime, message))
        self.announce(message)

    # --------------------------------------------------------- engine callback API
    def on_fit_start(self, state) -> None:
        self.reset()
        if self.baseline_loss is None:
            self.baseline_loss = getattr(state, "baseline_loss", None)
        recipe = getattr(state, "recipe", None)
        self.task = getattr(recipe, "task", None) if recipe is not None else None

    def _consume(self, state) -> str | None:
        """Observe the training losses the engine has read back since last time (never waits for the
        device); a loop without read-back losses gives this step's."""
        lr = getattr(state, "lr", None)
        if isinstance(lr, (list, tuple)):
            lr = lr[0] if lr else None
        since = getattr(state, "losses_since", None)
        if since is None:
            return self.observe(int(state.step), loss=state.loss, lr=lr)
        reason = None
        for step, loss in since(self._seen_step):
            self._seen_step = step
            reason = reason or self.observe(step, loss=loss, lr=lr)
        return reason

    def on_step_end(self, state) -> None:
        self._act(state, self._consume(state))

    def on_probe_end(self, state) -> None:
        reason = self._consume(state)
        value = getattr(state, "probe_loss", None)
        if value is not None:
            reason = reason or self.observe(int(state.step), probe_loss=value)
        self._act(state, reason)

    def on_epoch_end(self, state) -> None:
        reason = self._consume(state)
        value = getattr(state, "val_loss", None)
        if value is not None:
            reason = reason or self.observe(int(state.step), val_loss=value)
        self._act(state, reason)

    def on_fit_end(self, state) -> None:
        """Final diagnosis (end-of-run regimes included); stored with the run when `save`."""
        wait = getattr(state, "history", {}).get("sys/data_wait")
        if wait:  # the resource monitor's samples: the end-of-run diagnosis also says when data loading dominates
            self.data_wait = ([s for s, _ in wait], [v for _, v in wait])
        if not self.train[0]:
            return
        run = getattr(state, "run", None)
        if run is not None:
            best = Path(run.dir) / "checkpoints" / "best.pt"
            self._best_checkpoint = str(best) if best.exists() else None
        try:  # runs inside the engine's `finally`: never mask the error that ended the fit
            self.rediagnose(int(state.step), final=True)
            self._show(state)
            if self.save and run is not None and self.report is not None:
                self.report.meta.update(run_id=run.id, run_name=run.name)
                run.save_report(self.report)
                run.update_summary(diagnosis=self.report.meta["regime"])
        except Exception as exc:  # pragma: no cover - a store failing at the very end
            self.announce(f"the final diagnosis was not saved: {type(exc).__name__}: {exc}")

    def _act(self, state, reason: str | None) -> None:
        self._show(state)
        if reason:
            state.stop(reason)

    def _show(self, state) -> None:
        if hasattr(state, "status_line"):
            state.status_line = self.current.text or regime_title(self.current.regime)


assert set(STOPPABLE) <= set(REGIMES)
