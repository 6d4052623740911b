"""Live diagnosis (T2): the current regime, one warning per change, --stop-on, NaN at its step."""

from __future__ import annotations

import math

import numpy as np
import pytest

from danlu.curves import LiveDiagnosis, parse_stop_on
from danlu.errors import DanluError


class State:
    """The FitState fields LiveDiagnosis reads (see danlu.engine.FitState)."""

    def __init__(self):
        self.step, self.loss, self.lr = 0, math.nan, 1e-3
        self.val_loss = self.probe_loss = None
        self.status_line = ""
        self.stop_reason = None

    def stop(self, reason, status="stopped"):
        if self.stop_reason is None:
            self.stop_reason = reason


def feed(live, curves, stop_at_reason=True):
    """Replay synthetic curves through the engine callback API, as fit() would."""
    state = State()
    live.on_fit_start(state)
    val = dict(zip(curves.val.steps.tolist(), curves.val.values.tolist())) if curves.val is not None else {}
    for step, loss in zip(curves.train.steps.tolist(), curves.train.values.tolist()):
        state.step, state.loss = step, loss
        live.on_step_end(state)
        if step in val:
            state.val_loss = val[step]
            live.on_epoch_end(state)
        if state.stop_reason and stop_at_reason:
            break
    live.on_fit_end(state)
    return state


def test_healthy_noisy_run_raises_no_warning(synth):
    lines = []
    live = LiveDiagnosis(announce=lines.append, stop_on={"diverging", "nan"})
    state = feed(live, synth.healthy(seed=3, noise=0.3))
    assert lines == [] and state.stop_reason is None
    assert live.current.regime == "learning" and state.status_line == "learning normally"


def test_nan_is_caught_at_the_step_it_happens(synth):
    lines = []
    live = LiveDiagnosis(announce=lines.append, stop_on={"nan"}, every=1000)  # no re-diagnosis needed
    state = feed(live, synth.with_nan(at=437))
    assert state.step == 437 and "437" in state.stop_reason and "nan" in state.stop_reason
    assert lines == ["at step 437: NaN/Inf loss: training loss is nan"]


def test_diverging_run_is_stopped_early(synth):
    lines = []
    live = LiveDiagnosis(announce=lines.append, stop_on={"diverging"})
    state = feed(live, synth.explode(seed=0))
    assert state.stop_reason and "diverging" in state.stop_reason
    assert state.step <= 15  # of 200: the per-step tripwire brings the diagnosis forward
    assert len(lines) == 1 and lines[0].startswith("at step ") and ": diverging since step" in lines[0]


def test_without_stop_on_a_diverging_run_is_only_reported(synth):
    lines = []
    live = LiveDiagnosis(announce=lines.append)
    state = feed(live, synth.diverge_late(seed=0))
    assert state.stop_reason is None and state.step == synth.N
    assert [line.split(": ", 1)[1].split(" since")[0] for line in lines] == ["diverging"]


def test_overfitting_is_announced_once_with_its_turn(synth):
    lines = []
    live = LiveDiagnosis(announce=lines.append, stop_on={"diverging", "nan"})
    state = feed(live, synth.overfit(seed=0))
    assert state.stop_reason is None
    over = [line for line in lines if ": overfitting since step" in line]
    assert len(over) == 1 and len(lines) == 1, lines
    step = int(over[0].split("since step ")[1].split()[0])
    assert 300 <= step <= 600  # planted: validation turns at step 400
    assert live.events[0].new == "overfitting" and live.current.regime == "overfitting"


def test_stop_on_overfitting_stops_once_confirmed(synth):
    live = LiveDiagnosis(announce=lambda line: None, stop_on={"overfitting"})
    state = feed(live, synth.overfit(seed=1))
    assert state.stop_reason and "overfitting" in state.stop_reason
    assert 600 <= state.step < synth.N


def test_final_diagnosis_includes_end_of_run_regimes(synth):
    live = LiveDiagnosis(announce=lambda line: None)
    feed(live, synth.still_falling(seed=0))
    assert live.report.meta["final"] is True and "underfitting" in live.report.meta["regimes"]


def test_user_loop_api_without_the_engine():
    live = LiveDiagnosis(announce=lambda line: None, stop_on={"nan"})
    reasons = [live.observe(step, loss=2.0 / step) for step in range(1, 50)]
    assert all(r is None for r in reasons)
    assert live.observe(50, loss=float("inf")) is not None


def test_rediagnosis_cost_stays_bounded(synth):
    calls = []
    live = LiveDiagnosis(announce=lambda line: None, every=25)
    original = live.rediagnose
    live.rediagnose = lambda step, final=False: calls.append(step) or original(step, final)
    for step in range(1, 10_001):
        live.observe(step, loss=1.0 + 1.0 / step)
    assert len(calls) <= 250  # every 25 steps early, every 1 % of the history later (not 400)


def test_parse_stop_on():
    assert parse_stop_on("diverging,nan") == {"diverging", "nan"}
    assert parse_stop_on(None) == frozenset()
    with pytest.raises(DanluError, match="choose among"):
        parse_stop_on("diverging,exploding")


def test_no_flicker_between_regimes(synth):
    """A regime must hold for two diagnoses in a row before it is announced."""
    lines = []
    live = LiveDiagnosis(announce=lines.append, confirm=2)
    rng = np.random.default_rng(0)
    for step in range(1, 3001):
        live.observe(step, loss=float(0.3 + 2.0 * np.exp(-step / 300)) * float(np.exp(rng.normal(0, 0.25))))
    assert lines == []


def test_announcements_arrive_in_the_order_they_are_seen(synth):
    """Each line starts with the step it was seen at, so "since step 11" after "at step 110" reads in order."""
    lines = []
    live = LiveDiagnosis(announce=lines.append)
    feed(live, synth.overfit(seed=0))
    steps = [int(line.split(":")[0].removeprefix("at step ")) for line in lines]
    assert steps == sorted(steps) and all(line.startswith("at step ") for line in lines)
    assert not any("lr_decay" in line or "data_problem" in line for line in lines)


def test_the_default_announcement_wraps_at_words_to_the_terminal(monkeypatch, capsys):
    """A 146-character diagnosis line (seen on a word LM in an 80-column terminal) was left for the
    terminal to cut mid-word; it is wrapped at words to the console's width."""
    import danlu.console
    from danlu.curves.live import _default_announce

    monkeypatch.setattr(danlu.console.err_console, "width", 80)
    line = ("at step 75: plateau since step 38 (training loss is flat at 5.257 at the majority baseline "
            "5.073: -30% overall, -2% over the last half)")
    _default_announce(line)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2 and all(len(part) <= 80 for part in lines)
    assert " ".join(part.strip() for part in lines) == f"diagnosis: {line}"
