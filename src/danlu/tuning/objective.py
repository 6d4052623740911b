"""One trial = one ordinary danlu run, and the worker loop that runs trials from a queue.

A trial builds the recipe from the study's fixed values and the trial's parameters and
trains it with :func:`danlu.engine.fit` (curves, checkpoints, reproducibility record,
tag ``study:<name>``). A callback watches the engine's own events:

- every training step: a NaN/Inf loss stops the trial at once (outcome ``nan``), and a
  training loss that diverges (danlu.curves.divergence, the definition the curve reader
  uses) stops it as ``diverged``;
- the first validation probe (``recipe.probe_every`` steps) at or after each rung
  (`spec.rung_steps`), and the last: the trial's best validation loss so far is reported to
  Optuna (``trial.report``), and the pruning rule decides (H4: stop the hopeless early, but
  not before the stated minimum). A trial that reaches its last step is complete. A trial of
  a tune study's exploration rounds is not judged as it goes: it stops at its round's rung
  (user attr ``stop_at``), and the round is judged when it has ended (danlu.tuning.halving).

Pruning is made order-independent so that ``--workers N`` gives the same trials as a
sequential run (`OrderedPruning`): trial k is judged against trials 0..k-1 only, and at a
rung it first waits until those have passed the rung (or ended), exactly what a sequential
run would have seen.

The objective is the trial run's best whole-set validation loss (T3, C3); lower is better.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from danlu.curves.divergence import Tripwire
from danlu.events import Callback
from danlu.tuning.halving import QUEUE_ATTRS, value_at
from danlu.tuning.spec import StudySpec, build_recipe, rung_steps
from danlu.tuning.storage import (
    HEARTBEAT_EVERY,
    load_optuna_study,
    open_storage,
    requeue_stale,
    spec_from_storage,
    trial_is_dead,
)

__all__ = ["WorkerJob", "run_worker", "run_trial", "TrialCallback", "OrderedPruning", "Every",
           "make_pruner", "min_trials_per_rung"]

#: Longest a trial waits for lower-numbered trials to pass a rung before judging alone.
RUNG_WAIT_LIMIT = 600.0


@dataclass
class WorkerJob:
    """What a worker process needs; plain data, so it pickles to processes and Ray tasks."""

    store: str                     # danlu store folder (each worker opens its own handle)
    storage: str                   # Optuna storage URL
    name: str                      # danlu study name
    stage: int = 0
    threads: int | None = None     # torch threads for this worker (None: leave as is)
    recipe: str | None = None      # recipe path override (a worker machine's own checkout)
    quiet: bool = True


# ------------------------------------------------------------------ pruning
def make_pruner(spec: StudySpec, stage: dict[str, Any]):
    """Optuna's pruner for a stage: SuccessiveHalving (asha: the kind; `OrderedPruning` applies
    the rule itself), Hyperband (its brackets decide first), or none."""
    import optuna

    m = int(stage.get("min_resource") or spec.min_resource or 1)
    if spec.prune == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=m, reduction_factor=spec.reduction_factor, min_early_stopping_rate=0)
    if spec.prune == "hyperband":
        max_resource = max(m * spec.reduction_factor, int(stage.get("budget_steps") or spec.budget_steps or m))
        return optuna.pruners.HyperbandPruner(
            min_resource=m, max_resource=max_resource, reduction_factor=spec.reduction_factor)
    return optuna.pruners.NopPruner()


def min_trials_per_rung(factor: int) -> int:
    """Earlier trials a rung needs before it prunes: the reduction factor (3).

    Below it the best 1/factor of the trials at the rung is less than one trial, and a rung
    that still pruned would stop every trial worse than the single best so far: one lucky
    early trial then stops all that follow (seen on a regression task: the first trial
    completed, the next 23 were pruned and the search never got close). With it, and the
    best ceil(n / factor) of n kept, a trial is always judged against several.
    """
    return factor


class _PastOnlyStorage:
    """A view of an Optuna storage in which trials numbered above `number` do not exist."""

    def __init__(self, storage, number: int) -> None:
        self._inner, self._number = storage, number

    def get_all_trials(self, study_id, deepcopy=True, states=None):
        return [t for t in self._inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)
                if t.number <= self._number]

    def __getattr__(self, name):
        return getattr(self._inner, name)


class OrderedPruning:
    """Asks about trial k as a sequential run would: against trials < k, after they have
    passed the same rung (the rungs are `spec.rung_steps`, placed by the trial's callback)."""

    def __init__(self, study, pruner, min_resource: int, factor: int) -> None:
        self.study, self.pruner = study, pruner
        self.min_resource, self.factor = max(1, min_resource), factor

    def should_prune(self, trial, rung: int) -> bool:
        """Whether the trial, which just reported its value at `rung`, stops there."""
        import optuna
        from optuna.trial import TrialState

        self._wait_for_lower_trials(trial.number, rung)
        frozen = self.study._storage.get_trial(trial._trial_id)
        assert frozen.state == TrialState.RUNNING
        decision = True
        if not isinstance(self.pruner, optuna.pruners.SuccessiveHalvingPruner):  # Hyperband: its brackets first
            view = optuna.Study(study_name=self.study.study_name,
                                storage=_PastOnlyStorage(self.study._storage, trial.number),
                                sampler=self.study.sampler, pruner=self.pruner)
            decision = bool(self.pruner.prune(view, frozen))
        if decision:
            earlier = self.values_at(trial.number, rung, frozen.user_attrs.get("point"))
            if len(earlier) < self.min_trials:
                decision = False  # too few earlier trials at this rung to call this one worse than most
            else:  # kept when among the best ceil(n / factor) of the n trials at the rung, itself included
                mine = frozen.intermediate_values[max(frozen.intermediate_values)]
                keep = math.ceil((len(earlier) + 1) / self.factor)
                decision = sum(1 for v in earlier if v < mine) >= keep
        self.study._storage.set_trial_user_attr(trial._trial_id, "checked_step", rung)
        return decision

    @property
    def min_trials(self) -> int:
        """Earlier trials that must have reached a rung before it may prune (MIN_TRIALS_PER_RUNG)."""
        return min_trials_per_rung(self.factor)

    def values_at(self, number: int, rung: int, point: Any = None) -> list[float]:
        """The values that trials numbered below `number` reported at rung `rung` (their first report
        at or after it), one per point: a point trained again (a round of successive halving, a
        re-queued trial) counts once, and never against itself."""
        out: dict[Any, float] = {}
        for t in self.study._storage.get_all_trials(self.study._study_id, deepcopy=False):
            value = value_at(t, rung) if t.number < number else None
            key = t.user_attrs.get("point", ("trial", t.number))
            if value is not None and (point is None or key != point):
                out.setdefault(key, value)
        return list(out.values())

    def _wait_for_lower_trials(self, number: int, rung: int) -> None:
        from optuna.trial import TrialState

        deadline = time.time() + RUNG_WAIT_LIMIT
        storage, study_id = self.study._storage, self.study._study_id
        delay = 0.02
        while time.time() < deadline:
            pending = [
                t for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                if t.number < number and t.user_attrs.get("checked_step", -1) < rung and not trial_is_dead(t)
            ]
            if not pending:
                return
            time.sleep(delay)
            delay = min(0.5, delay * 1.5)


# ----------------------------------------------------------------- callback
class TrialCallback(Callback):
    """Engine callback: NaN/divergence stops, reports to Optuna, pruning (see module doc)."""

    def __init__(self, trial, pruning: OrderedPruning | None, min_resource: int, pruner_name: str,
                 stop_at: int | None = None) -> None:
        self.trial = trial
        self.pruning = pruning
        self.stop_at = stop_at  # a round of successive halving ends here (danlu.tuning.halving)
        self.min_resource = min_resource
        self.pruner_name = pruner_name
        self.outcome = "complete"
        self.reason = ""
        self.tripwire = Tripwire()
        self.last_probe: float | None = None
        self.run_id: str | None = None
        self.final_val_loss: float | None = None
        self.seen_step = -1
        self.factor = pruning.factor if pruning is not None else 3
        self.last_reported = 0
        self.reported: float | None = None  # the value last told to Optuna
        self.start_step = 0
        self._rungs: tuple[int, list[int]] | None = None

    def _rung_crossed(self, step: int, total_steps: int) -> int | None:
        """The highest rung (`spec.rung_steps`) in (last reported step, step], or None. Optuna is told
        the validation loss there only: each report is a write to a storage many workers share."""
        if self._rungs is None or self._rungs[0] != total_steps:
            self._rungs = (total_steps, rung_steps(self.min_resource, self.factor, total_steps))
        crossed = [r for r in self._rungs[1] if self.last_reported < r <= step]
        return crossed[-1] if crossed else None

    def _stop(self, state, outcome: str, reason: str, status: str) -> None:
        self.outcome, self.reason = outcome, reason
        state.stop(reason, status=status)

    def on_fit_start(self, state) -> None:
        self.start_step = self.seen_step = self.last_reported = state.step   # > 0: it went on from a screened trial
        if state.step > 0:   # judge divergence against the whole curve, as if it had trained from its first step
            _, past = state.run.store.read_series(state.run.id, "train/loss", end=state.step)
            for loss in past:
                self.tripwire.update(float(loss))
        self.run_id = state.run.id
        self.trial.set_user_attr("run_id", state.run.id)
        self.trial.set_user_attr("run_name", state.run.name)
        self.trial.set_user_attr("total_steps", state.total_steps)

    def on_step_end(self, state) -> None:
        for step, loss in state.losses_since(self.seen_step):   # read back by the engine: never waits
            self.seen_step = step
            if self.outcome != "complete":
                return
            if not math.isfinite(loss):
                self._stop(state, "nan", f"training loss is {loss} at step {step} (S9): trial stopped at once",
                           "failed")
            elif self.tripwire.update(loss):
                t = self.tripwire
                self._stop(state, "diverged",
                           f"diverged: smoothed training loss {t.level:.4g} at step {step} is {t.level / t.best:.1f}x "
                           f"its best {t.best:.4g} (started at {t.start:.4g}); trial stopped at once", "failed")

    def on_probe_end(self, state) -> None:
        value, step = state.probe_loss, state.step
        if value is None or not math.isfinite(value):
            self._stop(state, "nan", f"validation probe loss is {value} at step {step}: trial stopped at once", "failed")
            return
        self.last_probe = value
        rung = self._rung_crossed(step, state.total_steps)
        if step >= state.total_steps or rung is not None:
            # what pruning and TPE read: the trial's best validation loss so far on the validation set (a
            # fixed part of it when large), the number a complete trial is scored by; one probe batch is
            # too noisy to rank trials with (on a 90-sample set it ranked overfitting trials first)
            value = min(rung_val_loss(state), state.best_val_loss)
            if not math.isfinite(value):
                self._stop(state, "nan", f"validation loss is {value} at step {step}: trial stopped at once",
                           "failed")
                return
            self.trial.report(value, step)
            self.last_reported, self.reported = step, value
        if step >= state.total_steps:  # its whole budget is paid: the trial is complete, never thrown away
            return
        if self.stop_at is not None and step >= self.stop_at:
            self._stop(state, "pruned",
                       f"its round of successive halving ends at step {step} (best validation loss {value:.4g}); "
                       "the best third of the round's points train on to the next rung", "stopped")
            return
        if self.pruning is not None and rung is not None and self.pruning.should_prune(self.trial, rung):
            self._stop(state, "pruned",
                       f"pruned by {self.pruner_name} at step {step}: best validation loss {value:.4g} is not among the best "
                       f"1/{self.pruning.factor} of the trials at this rung (minimum resource {self.min_resource} steps)",
                       "stopped")

    def on_fit_end(self, state) -> None:
        if self.outcome != "complete" or state.best_epoch >= 0:
            return
        if state.stop_reason and state.stop_reason.startswith("interrupted"):
            return
        # A step budget that ends mid-epoch: score the model on the whole validation set (C3).
        from danlu.data_reuse import load_data
        from danlu.engine import evaluate

        _, val = load_data(state.recipe, restore_rng=False)
        _, val_loader = state.recipe.loaders(val, val)
        self.final_val_loss, _ = evaluate(state.recipe, state.model, val_loader, state.device)


#: At most this many validation batches (the loader's first, so the same for every trial) score a rung.
RUNG_VAL_BATCHES = 64


def rung_val_loss(state) -> float:
    """The validation loss at a rung: the whole validation set, or its first RUNG_VAL_BATCHES
    batches when larger (the validation loader does not shuffle: every trial sees the same ones)."""
    import itertools

    from danlu.engine import evaluate

    if state.val_loader is None:
        return state.probe_loss if state.probe_loss is not None else math.inf
    loader = state.val_loader
    try:
        if len(loader) > RUNG_VAL_BATCHES:
            loader = list(itertools.islice(loader, RUNG_VAL_BATCHES))
    except TypeError:  # an iterable loader without a length
        loader = list(itertools.islice(loader, RUNG_VAL_BATCHES))
    was_training = state.model.training
    loss, _ = evaluate(state.recipe, state.model, loader, state.device)
    state.model.train(was_training)
    return loss


# ------------------------------------------------------------------ one trial
class Every:
    """In a daemon thread, calls `tick()` every `seconds` while the block runs, until it returns
    False (the trial's heartbeat; a coordinator's look at the exploration rounds)."""

    def __init__(self, seconds: float, tick, name: str) -> None:
        self.seconds, self.tick = seconds, tick
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.seconds)
            self._wake.clear()
            if self._stop.is_set() or self.tick() is False:
                return

    def nudge(self) -> None:
        """Tick now rather than at the end of the current wait."""
        self._wake.set()

    def __enter__(self) -> Every:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)


def _heartbeat(storage, trial_id: int) -> Every:
    """Writes time.time() into the trial every HEARTBEAT_EVERY seconds while it runs."""

    def beat() -> bool:
        try:
            storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
            return True
        except Exception:  # the trial was finished or taken over: nothing to keep alive
            return False

    beat()
    return Every(HEARTBEAT_EVERY, beat, "danlu-trial-heartbeat")


def run_trial(study, trial, spec: StudySpec, stage: dict[str, Any], recipe_cls, space, store,
              pruner, console=None) -> dict[str, Any]:
    """Train one trial and tell Optuna how it went; returns the trial's outcome record."""
    import optuna
    from optuna.trial import TrialState

    from danlu.engine import fit
    from danlu.store.base import process_identity

    storage = study._storage
    pid, host, pidns = process_identity()
    trial.set_user_attr("worker", {"pid": pid, "host": host, "pidns": pidns})
    params = {p.name: p.suggest(trial) for p in space}
    min_resource = int(stage.get("min_resource") or 0)
    pruning = None
    if spec.prune != "none" and "round" not in trial.user_attrs:  # rounds are judged together, when they end
        pruning = OrderedPruning(study, pruner, min_resource, spec.reduction_factor)
    callback = TrialCallback(trial, pruning, min_resource, spec.prune, stop_at=trial.user_attrs.get("stop_at"))
    index = int(stage.get("index", 0))
    name = f"{spec.name}.s{index + 1}.t{trial.number}"
    started = time.time()
    result, error = None, None
    branch = _screened_run(study, trial, params, store)
    with _heartbeat(storage, trial._trial_id):
        try:
            recipe = build_recipe(recipe_cls, spec.fixed, params)
            result = fit(
                recipe, store=store, name=name, tags=[f"study:{spec.name}", f"stage:{index + 1}"],
                note=f"study {spec.name}, stage {index + 1}, trial {trial.number}", device=spec.device,
                callbacks=[callback], progress=False, max_steps=stage.get("max_steps"), resumable=False,
                data_fraction=float(stage.get("data_fraction", 1.0)), branch_from=branch,
                # a screened point goes on from its last.pt; a stage cut to a step budget may end before
                # any epoch's end has put the weights in best.pt
                keep_last=callback.stop_at is not None or stage.get("max_steps") is not None,
            )
        except Exception as exc:  # a failing trial must not end the study
            error = f"{type(exc).__name__}: {exc}"
    steps = result.steps - callback.start_step if result is not None else _steps_before_error(store, callback)
    record: dict[str, Any] = {"number": trial.number, "params": params, "steps": steps,
                              "seconds": round(time.time() - started, 3), "run_id": callback.run_id}
    attrs = {"steps": steps, "seconds": record["seconds"],
             "train_seconds": float(result.summary.get("seconds", 0.0)) if result is not None else 0.0}
    if callback.start_step:
        attrs["from_step"] = record["from_step"] = callback.start_step
    value = None
    if error is not None:
        outcome, reason, state = "failed", error, TrialState.FAIL
    elif result.stop_reason and result.stop_reason.startswith("interrupted"):
        outcome, reason, state = "interrupted", result.stop_reason, TrialState.FAIL
    elif callback.outcome in ("nan", "diverged"):
        outcome, reason, state = callback.outcome, callback.reason, TrialState.FAIL
    elif callback.outcome == "pruned":
        outcome, reason, state = "pruned", callback.reason, TrialState.PRUNED
    else:
        value = result.summary.get("best_val_loss", callback.final_val_loss)
        if value is None or not math.isfinite(float(value)):
            outcome, reason, state = "nan", f"validation loss is {value}", TrialState.FAIL
            value = None
        else:
            outcome, reason, state = "complete", result.stop_reason or "", TrialState.COMPLETE
    attrs.update(outcome=outcome, reason=reason)
    try:
        for key, val in attrs.items():
            storage.set_trial_user_attr(trial._trial_id, key, val)
        if state == TrialState.COMPLETE:
            study.tell(trial, float(value))
        else:
            study.tell(trial, state=state)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError) as exc:
        # Another process judged this worker dead and re-queued the point; keep its verdict.
        outcome, reason = "taken_over", f"trial was re-queued by another process ({exc})"
    if outcome == "interrupted":
        attrs = {k: v for k, v in trial.user_attrs.items() if k in QUEUE_ATTRS}
        study.enqueue_trial(params, user_attrs={**attrs, "requeue_of": trial.number}, skip_if_exists=False)
    record.update(outcome=outcome, reason=reason, value=value)
    if console is not None:
        screened = outcome == "pruned" and callback.stop_at is not None  # a round of the exploration
        _print_trial(console, record, "screened" if screened else outcome,
                     callback.reported if outcome == "pruned" else value)
    return record


def _steps_before_error(store, callback) -> int:
    """The steps a trial trained before it raised (its run's summary says), 0 when it never started:
    a trial that fails at its first validation has spent its steps of the budget."""
    if callback.run_id is None:
        return 0
    try:
        return max(0, int(store.get_run(callback.run_id).summary.get("steps") or 0) - callback.start_step)
    except Exception:  # a run the store cannot read back: count none
        return 0


def _screened_run(study, trial, params: dict[str, Any], store) -> str | None:
    """The run of the screened trial a promoted point goes on from (danlu.tuning.halving), when it
    kept its last checkpoint and trained this very point; None: train from the start."""
    number = trial.user_attrs.get("promoted_from")
    if number is None:
        return None
    try:
        storage = study._storage
        source = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
        run_id = source.user_attrs.get("run_id")
        if not run_id or source.params != params or source.user_attrs.get("outcome") != "pruned":
            return None
        if not (store.run_dir(run_id, create=False) / "checkpoints" / "last.pt").exists():
            return None
        return str(run_id)
    except Exception:  # a storage that cannot say: the point trains from its first step, as before
        return None


def _print_trial(console, record: dict[str, Any], outcome: str, value: float | None) -> None:
    """One line per trial: its outcome, its validation loss (where a stopped trial stopped), the step it
    reached, its point."""
    from danlu.console import STATUS_STYLE, escape

    style = {"complete": STATUS_STYLE["finished"], "pruned": STATUS_STYLE["stopped"],
             "screened": STATUS_STYLE["stopped"]}.get(outcome, STATUS_STYLE["failed"])
    shown = f"{value:.4f}" if value is not None else "-"
    params = " ".join(f"{k}={_short(v)}" for k, v in record["params"].items())
    console.print(f"  trial {record['number']:>3} [{style}]{outcome:<9}[/] val loss {shown:>8} "
                  f"step {record['steps'] + record.get('from_step', 0):>5}  {escape(params)}")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------- worker loop
def _pop_waiting(study):
    """Take the oldest queued trial (atomically, through the storage), or None."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.trial.Trial(study, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def counted_trials(study) -> int:
    """Trials that count toward a model-based stage's target (crashed attempts do not)."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.FAIL or t.user_attrs.get("outcome") not in ("crashed", "interrupted"))


def steps_spent(study, per_trial: int) -> int:
    """Steps the stage's trials used, counting a running trial at its full length (its
    steps are promised; parallel workers must not hand them out twice)."""
    from optuna.trial import TrialState

    spent = 0
    for t in study.get_trials(deepcopy=False):
        if "seeded_from" in t.user_attrs:
            continue
        if t.state == TrialState.RUNNING:
            spent += per_trial
        elif t.state != TrialState.WAITING:
            spent += int(t.user_attrs.get("steps") or 0)
    return spent


#: A tune stage stops asking for new trials once this many in a row failed before their first
#: step: a budget counted in steps is never spent by trials that train none.
FAILED_IN_A_ROW = 10


def failing_from_the_start(study) -> bool:
    """Whether the last FAILED_IN_A_ROW finished trials all failed without training a step (the
    recipe breaks whatever the hyperparameters: seen with a model whose output the default
    metrics could not read, 5,385 failed trials in 20 minutes)."""
    from optuna.trial import TrialState

    ended = [t for t in study.get_trials(deepcopy=False)
             if t.state not in (TrialState.RUNNING, TrialState.WAITING) and "seeded_from" not in t.user_attrs]
    last = sorted(ended, key=lambda t: t.number)[-FAILED_IN_A_ROW:]
    return len(last) == FAILED_IN_A_ROW and all(
        t.state == TrialState.FAIL and not int(t.user_attrs.get("steps") or 0) for t in last)


def next_trial(study, stage: dict[str, Any]):
    """The next trial for this worker: a queued one, else (model-based stages) a new one
    while the stage's target is not met, else (tune stages) a TPE trial while the step
    budget lasts; None when there is nothing left to do."""
    trial = _pop_waiting(study)
    if trial is not None:
        return trial
    if stage.get("step_budget"):
        if between_rounds(study, stage):
            return None
        per_trial = int(stage.get("budget_steps") or 1)
        # a new trial must be able to reach its first rung (pruning) or its end (no pruning)
        needs = int(stage.get("min_resource") or per_trial) if stage.get("prunes", True) else per_trial
        if int(stage["step_budget"]) - steps_spent(study, per_trial) < min(needs, per_trial):
            return None
        if failing_from_the_start(study):
            return None
        trial = study.ask()
        trial.set_user_attr("phase", "exploit")
        return trial
    if stage.get("queue", True):
        return None
    own = sum(1 for t in study.get_trials(deepcopy=False) if "seeded_from" not in t.user_attrs)
    seeded = len(study.get_trials(deepcopy=False)) - own
    if counted_trials(study) - seeded >= int(stage.get("target", 0)):
        return None
    return study.ask()


def between_rounds(study, stage: dict[str, Any]) -> bool:
    """Whether the stage's exploration is in rounds that are not all queued yet (its coordinator
    queues each next round, then opens the TPE phase: danlu.tuning.halving)."""
    return bool(stage.get("rounds")) and not study.user_attrs.get("explored")


#: The coordinator's look at the exploration rounds (study._round_keeper) while it runs in this
#: process, as with one worker: a worker that finds its round ended nudges it.
round_keeper: Every | None = None


def _wait_for_next_round(study, stage: dict[str, Any]) -> bool:
    """Wait until the coordinator queued the next round or opened the TPE phase; False when it
    did not within RUNG_WAIT_LIMIT seconds (it died: a worker then leaves). A round whose trial
    lost its worker (killed, out of memory) never ends: such trials are queued again here."""
    from optuna.trial import TrialState

    if round_keeper is not None:  # the coordinator runs in this process: it looks now, not at its next poll
        round_keeper.nudge()
    deadline, delay, look = time.time() + RUNG_WAIT_LIMIT, 0.01, 0.0
    while time.time() < deadline:
        if time.time() >= look:
            requeue_stale(study)
            look = time.time() + HEARTBEAT_EVERY
        if not between_rounds(study, stage) or study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return True
        time.sleep(delay)
        delay = min(0.5, delay * 1.5)
    return False


def stage_sampler(spec: StudySpec, stage: dict[str, Any]):
    """Queue stages never sample (their trials carry fixed points); exploit stages, and tune
    stages once their queue is empty, use TPE (queued points keep their fixed values)."""
    import optuna

    if stage.get("queue", True) and not stage.get("step_budget"):
        return optuna.samplers.RandomSampler(seed=spec.seed)
    # Parallel TPE workers must not draw the same candidate: each gets its own stream.
    seed = spec.seed if stage.get("workers", 1) <= 1 else spec.seed * 100_003 + os.getpid()
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=int(stage.get("startup", 0 if stage.get("step_budget") else 5)))


def run_worker(job: WorkerJob) -> int:
    """Run trials of one stage until its queue (or target) is exhausted; return how many.

    This is the unit every executor runs: in-process, in N local processes, as Ray
    tasks, or as `danlu study worker NAME` on other machines sharing an RDB storage.
    """
    import optuna

    from danlu.data_reuse import reusing_data
    from danlu.recipe import load_recipe_class
    from danlu.repro.capture import reusing_sections
    from danlu.store import open_store

    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(job.storage)
    spec = spec_from_storage(storage, job.name)
    stage_attrs = load_optuna_study(storage, job.name, job.stage).user_attrs.get("danlu_stage", {})
    study = load_optuna_study(storage, job.name, job.stage, sampler=stage_sampler(spec, stage_attrs))
    recipe_cls = load_recipe_class(job.recipe or spec.recipe)
    space = spec.space(recipe_cls)
    store = open_store(job.store)
    pruner = make_pruner(spec, stage_attrs)
    console = None
    if not job.quiet:
        from danlu.console import err_console

        console = err_console  # progress lines are messages: stdout stays clean for --json
    done = 0
    requeue_stale(study)
    # one worker, one checkout, one environment, one data set: read once, not per trial
    with reusing_sections(), reusing_data():
        while True:
            trial = next_trial(study, stage_attrs)
            if trial is None and between_rounds(study, stage_attrs) and _wait_for_next_round(study, stage_attrs):
                continue
            if trial is None:
                break
            record = run_trial(study, trial, spec, stage_attrs, recipe_cls, space, store, pruner, console)
            done += 1
            if record["outcome"] == "interrupted":
                raise KeyboardInterrupt
    return done
