"""fit(): danlu's training loop. One loop, in a fixed order, with extras hung on named events.

Per step:   the one training step (danlu.step.TrainStep: forward, loss, backward, clip,
            optimizer step, scheduler step) -> log train/loss and lr (T1) -> every probe_every steps: loss on one random
            validation batch (T1) -> on_step_end / on_probe_end
Per epoch:  whole validation set with the recipe's metrics (C3) -> best/last checkpoints
            (T3) -> early stopping on val loss with patience (T3) -> on_epoch_end

Events (danlu.events), dispatched only by `_Callbacks.emit`, in this order (locked by a test):
    on_fit_start, (on_step_end, [on_probe_end])*, on_epoch_end, ..., on_fit_end
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from danlu.device import resolve_device, to_device
from danlu.distributed import Dist
from danlu.events import EVENTS, Callback, Event, check_hooks
from danlu.monitor import DataWait, ResourceMonitor
from danlu.recipe import Recipe, recipe_source, recipe_spec, uses_default_loss
from danlu.repro import rng_state, set_rng_state
from danlu.step import TrainStep, prepare
from danlu.store.base import RunStatus, Store
from danlu.track import FollowerRun, Run, open_run, reopen_run

__all__ = ["fit", "FitState", "FitResult", "Callback", "Event", "EVENTS", "resolve_device", "evaluate"]

@dataclass
class FitState:
    """What the loop knows; callbacks read it and may call stop()."""

    recipe: Recipe
    run: Run
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device
    total_steps: int
    steps_per_epoch: int
    step: int = 0                     # optimizer steps done
    epoch: int = 0                    # current epoch (0-based)
    lr: float = 0.0
    val_loss: float | None = None     # latest whole-set validation loss
    val_loader: Any = None            # the whole validation set, as epoch ends read it
    probe_loss: float | None = None   # latest random-batch validation loss
    val_metrics: dict[str, float] = field(default_factory=dict)
    best_val_loss: float = math.inf
    best_epoch: int = -1
    best_step: int = -1
    best_metrics: dict[str, float] = field(default_factory=dict)
    bad_epochs: int = 0
    stop_reason: str | None = None
    stop_status: RunStatus = "finished"
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    status_line: str = ""             # one line a callback wants shown (e.g. the live diagnosis)
    baseline_loss: float | None = None  # loss of always predicting the training prior (D1, T2)
    #: Training losses read back from the device, (step, value), oldest first (the last few hundred).
    flushed: deque = field(default_factory=lambda: deque(maxlen=1024))
    skipped_steps: int = 0            # optimizer steps the float16 gradient scaler skipped
    dist: Dist = field(default_factory=Dist)  # this process among several (rank 0 writes)
    #: False for runs nobody resumes (study trials): checkpoints are written once, at the end.
    resumable: bool = True
    best_weights: dict[str, torch.Tensor] | None = None  # not resumable: the best model, kept until the end
    _loss: Any = math.nan             # the latest training loss: a float, or a device tensor not yet read

    @property
    def loss(self) -> float:
        """The latest training loss. Reading it waits for the device to finish that step; a callback
        that looks at every step should read :meth:`losses_since`, which never waits."""
        if isinstance(self._loss, torch.Tensor):
            self._loss = float(self._loss)
        return self._loss

    @loss.setter
    def loss(self, value: Any) -> None:
        self._loss = value

    def losses_since(self, step: int) -> list[tuple[int, float]]:
        """Training losses of the steps after `step` that have been read back (every SYNC_EVERY steps,
        and before probes, checkpoints and epoch ends), oldest first."""
        return [(s, v) for s, v in self.flushed if s > step]

    def stop(self, reason: str, status: RunStatus = "stopped") -> None:
        """Ask the loop to end after the current step (e.g. a diverging run, a pruned trial)."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_status = reason, status

    def record(self, series: str, step: int, value: float) -> None:
        self.history.setdefault(series, []).append((step, value))


@dataclass
class FitResult:
    """How a fit ended: the run, its final status and summary, the steps taken."""

    run_id: str
    name: str
    status: RunStatus
    summary: dict[str, Any]
    steps: int
    stop_reason: str | None = None


class _Callbacks:
    """The callbacks of one fit; the only place events are dispatched from."""

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            check_hooks(cb)

    def emit(self, event: Event, state: FitState) -> None:
        for cb in self.callbacks:
            hook = getattr(cb, event, None)
            if hook is not None:
                hook(state)


#: The whole validation set's outputs are kept to compute the metrics once on all of them (C3) up to
#: this many values; beyond, metrics are averaged over batches (exact for accuracy or MAE, not for R²).
WHOLE_SET_VALUES = 20_000_000


@torch.no_grad()
def evaluate(recipe: Recipe, model: torch.nn.Module, loader, device: torch.device,
             dist: Dist | None = None) -> tuple[float, dict[str, float]]:
    """Mean loss over a whole loader, weighted by batch size, and the recipe's metrics computed once on
    the whole set's outputs (C3: R² or F1 of the whole set, the number `danlu cases` reports too); a set
    too large to hold falls back to batch averages. With several processes each evaluates its shard and
    all gather the shards' sums and outputs, so every process gets the whole set's numbers."""
    was_training = model.training
    model.eval()
    total, n, sums = 0.0, 0, {}
    outputs: list[Any] | None = []
    targets: list[Any] = []
    kept = 0
    for batch in loader:
        output, target = recipe.forward(model, to_device(batch, device))
        size = len(target) if hasattr(target, "__len__") else 1
        total += float(recipe.loss(output, target)) * size
        for k, v in recipe.metrics(output, target).items():
            sums[k] = sums.get(k, 0.0) + float(v) * size
        n += size
        if outputs is not None:
            kept += _values(output) + _values(target)
            if kept > WHOLE_SET_VALUES:
                outputs = None
            else:
                outputs.append(_to_cpu(output))
                targets.append(_to_cpu(target))
    model.train(was_training)
    if dist is not None and dist.active:
        shards = dist.gather((total, n, sums, outputs, targets))
        total, n = sum(sh[0] for sh in shards), sum(sh[1] for sh in shards)
        sums = {k: sum(sh[2].get(k, 0.0) for sh in shards) for k in shards[0][2]}
        whole = all(sh[3] is not None for sh in shards)
        outputs = [o for sh in shards for o in sh[3]] if whole else None
        targets = [t for sh in shards for t in sh[4]] if whole else []
    if n == 0:
        return math.nan, {}
    metrics = {k: v / n for k, v in sums.items()}
    if outputs:
        try:
            whole_set = recipe.metrics(_concat(outputs), _concat(targets))
            metrics.update({k: float(v) for k, v in whole_set.items()})
        except Exception:  # a metric that cannot take the concatenated set keeps its batch average
            pass
    return total / n, metrics


def _values(value: Any) -> int:
    return sum(t.numel() for t in _tensors(value))


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _to_cpu(value: Any) -> Any:
    from danlu.device import to_device as move

    return move(value.detach() if isinstance(value, torch.Tensor) else value, "cpu")


def _concat(parts: list[Any]) -> Any:
    """Batches of (nested) outputs joined along the batch dimension."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts) if first.dim() else torch.stack(parts)
    if isinstance(first, (list, tuple)):
        joined = [_concat([p[i] for p in parts]) for i in range(len(first))]
        return type(first)(*joined) if hasattr(first, "_fields") else type(first)(joined)
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    raise TypeError(f"cannot join outputs of type {type(first).__name__}")


def _probe(recipe: Recipe, model, val, collate, device, step: int) -> float:
    """Loss on one random validation batch (T1); its own generator leaves training RNG untouched."""
    gen = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
    size = min(recipe.batch_size, len(val))
    idx = torch.randperm(len(val), generator=gen)[:size].tolist()
    batch = to_device(collate([val[i] for i in idx]), device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        output, target = recipe.forward(model, batch)
        value = float(recipe.loss(output, target))
    model.train(was_training)
    return value


def _checkpoint(path: Path, state: FitState, epoch_start: dict, batch_in_epoch: int, step: TrainStep) -> None:
    if not state.dist.main:
        return  # rank 0 keeps the checkpoints of a multi-process run
    # Points first: a checkpoint must never be ahead of the curve on disk, or a resume
    # after kill -9 would skip the steps that were still in the writer's buffer.
    state.run.flush()
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "rng": rng_state(),
            "epoch_start": epoch_start,
            "step": state.step,
            "epoch": state.epoch,
            "batch_in_epoch": batch_in_epoch,
            "train_step": step.state_dict(),
            "world_size": state.dist.world,
            "hparams": state.recipe.hparams(),
            "early_stop": {
                "best_val_loss": state.best_val_loss, "best_epoch": state.best_epoch,
                "best_step": state.best_step, "best_metrics": state.best_metrics,
                "bad_epochs": state.bad_epochs,
            },
        },
        tmp,
    )
    tmp.replace(path)  # atomic: a kill mid-save never leaves a truncated checkpoint


def _last_checkpoint(store: Store, record) -> dict[str, Any]:
    """The run's last.pt, loaded; a DanluError that says so when it has none."""
    path = store.run_dir(record.id) / "checkpoints" / "last.pt"
    if not path.exists():
        from danlu.errors import DanluError

        raise DanluError(
            f"Run {record.name} ({record.id}) has no checkpoint to resume from ({path}); "
            "it stopped before its first epoch ended. Start it again with `danlu train`."
        )
    return torch.load(path, map_location="cpu", weights_only=False)


def _copy_curve(store: Store, source: str, target: str, upto: int) -> None:
    """Every series of `source` up to step `upto`, into `target` (a branch starts with its past), and
    its best weights, which the branch keeps unless it does better."""
    import shutil

    import numpy as np

    columns = {}
    for name in store.series_names(source):
        steps, values = store.read_series(source, name, end=upto)
        if len(steps):
            walls = store.read_walls(source, name)
            when = dict(zip(*walls)) if walls is not None else {}
            columns[name] = (steps, values, np.array([when.get(s, time.time()) for s in steps], dtype=np.float64))
    if columns:
        store.log_columns(target, columns)
    best = store.run_dir(source) / "checkpoints" / "best.pt"
    if best.exists():
        folder = store.run_dir(target) / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, folder / "best.pt")


def _epoch_start_state(loader) -> dict:
    gen = getattr(loader, "generator", None)
    return {"rng": rng_state(), "loader_generator": gen.get_state() if gen is not None else None}


def _restore_epoch_start(loader, saved: dict) -> None:
    set_rng_state(saved["rng"])
    gen = getattr(loader, "generator", None)
    if gen is not None and saved.get("loader_generator") is not None:
        gen.set_state(saved["loader_generator"])


def fit(
    recipe: Recipe,
    *,
    store: Store | str | None = None,
    name: str | None = None,
    note: str = "",
    tags: Iterable[str] = (),
    device: str | torch.device | None = None,
    resume: str | None = None,
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    max_steps: int | None = None,
    data_fraction: float = 1.0,
    capture: bool = True,
    parent: str | None = None,
    init_from: str | Path | None = None,
    monitor_resources: bool = True,
    resumable: bool = True,
    branch_from: str | None = None,
    keep_last: bool = True,
) -> FitResult:
    """Train a recipe with full tracking; return the run's id, status and summary.

    `resume` names a stopped or crashed run (id, prefix, name or "last") to continue from
    its last checkpoint; on CPU the resumed curve equals the uninterrupted one exactly.
    `init_from` is a checkpoint whose model weights a new run starts from (optimizer and
    schedule start fresh), e.g. to train a finished run longer. `monitor_resources` records
    CPU, memory, GPU and data-wait curves every few seconds (danlu.monitor). `resumable=False`
    writes last.pt and best.pt once, when training ends (the best weights wait in memory),
    instead of at every epoch end: for runs nobody resumes, such as study trials (a lost
    trial is trained again), whose tiny epochs would otherwise spend a fifth of their time
    writing checkpoints; with `keep_last=False` as well, no last.pt at all (a run nothing goes
    on from: its weights are in best.pt, and last.pt would hold the optimizer's state too,
    three times the weights with Adam). `branch_from` names a stopped run whose last checkpoint a new run
    goes on from with everything (weights, optimizer, schedule, step, RNG): it trains on as
    that run would have (on CPU the same curve as training from the start), with that
    run's curve up to the checkpoint copied in; a study's promoted exploration points.
    """
    from danlu.store import open_store

    if max_steps is not None and max_steps < 1:
        from danlu.errors import DanluError

        raise DanluError(f"max_steps is {max_steps}: a run needs at least 1 step (or no limit).")
    dist = Dist.from_env()               # several processes (torchrun): rank 0 owns the run (S14)
    events = _Callbacks(list(callbacks) + ([_progress_display()] if progress and dist.main else []))
    store = store if isinstance(store, Store) else open_store(store)
    device = dist.device(resolve_device(device))

    # --- the run record: new, or the one being resumed -------------------------------
    checkpoint = None
    if resume is not None:
        record = store.get_run(dist.broadcast(store.get_run(resume).id if dist.main else None))
        checkpoint = _last_checkpoint(store, record)
        if checkpoint.get("world_size", 1) != dist.world:
            from danlu.errors import DanluError

            raise DanluError(
                f"Run {record.name} ({record.id}) was trained by {checkpoint.get('world_size', 1)} process(es); resume "
                f"it with the same number of processes ({checkpoint.get('world_size', 1)}), not {dist.world}: the "
                "data order and the global batch depend on it. To go on with another number, start a new run from "
                "its weights."
            )
        run = reopen_run(store, record) if dist.main else FollowerRun(store, record)
    elif dist.main:
        spec = recipe_spec(recipe)
        if branch_from is not None:
            source = store.get_run(branch_from)
            checkpoint = _last_checkpoint(store, source)
            if checkpoint.get("world_size", 1) != 1 or dist.active:
                from danlu.errors import DanluError

                raise DanluError(f"Run {source.name} ({source.id}) and this one must both be one process to branch.")
        run = open_run(store=store, kind="train", name=name, note=note, tags=tags,
                       config=recipe.hparams(), recipe=spec, parent=parent or branch_from)
        dist.broadcast(run.id)
        if branch_from is not None:
            _copy_curve(store, source.id, run.id, int(checkpoint["step"]))
    else:
        run = FollowerRun(store, store.get_run(dist.broadcast(None)))

    # --- data, model, optimizer, schedule (seeded: same seed, same everything) ------------
    with _failed_before_training(run):  # a broken data(), model(), loader or optimizer: a failed run, said where
        prep = prepare(recipe, device, max_steps=max_steps, data_fraction=data_fraction, dist=dist)
        train, val, model, step = prep.train, prep.val, prep.model, prep.step
        if init_from is not None and checkpoint is None:
            weights = torch.load(init_from, map_location=device, weights_only=False)
            try:
                model.load_state_dict(weights["model"] if isinstance(weights, dict) and "model" in weights else weights)
            except RuntimeError as exc:
                from danlu.errors import DanluError

                raise DanluError(f"The weights in {init_from} do not fit the model this recipe builds "
                                 f"({str(exc).splitlines()[0]}); start from a run of the same architecture.") from exc
        train_loader, val_loader = prep.train_loader, prep.val_loader
        optimizer, scheduler = step.optimizer, step.scheduler
        steps_per_epoch, total_steps = prep.steps_per_epoch, prep.total_steps
        collate = getattr(val_loader, "collate_fn", None) or torch.utils.data.default_collate

        if capture and (checkpoint is None or branch_from is not None) and dist.main:
            _capture(run, recipe, train, val, dist)

        state = FitState(recipe=recipe, run=run, model=model, optimizer=optimizer, scheduler=scheduler, dist=dist,
                         device=device, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                         baseline_loss=_baseline_loss(train, recipe), resumable=resumable,
                         val_loader=val_loader)
        start_epoch, skip_batches = 0, 0
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            step.load_state_dict(checkpoint.get("train_step", {}))
            state.step, state.epoch = checkpoint["step"], checkpoint["epoch"]
            for key, value in checkpoint["early_stop"].items():
                setattr(state, key, value)
            start_epoch, skip_batches = checkpoint["epoch"], checkpoint["batch_in_epoch"]

        ckpt_dir = run.dir / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        probe_every = max(1, recipe.probe_every)
        start_time = time.time()
        status = "finished"
        model.train()
        events.emit("on_fit_start", state)
    restore_signals = _graceful_interrupt(state)
    losses = _Losses(step)
    sync_every = _sync_every(device)
    wait = DataWait()
    monitor = ResourceMonitor(run, lambda: state.step, data_wait=wait, device=device,
                              record=state.record).start() if monitor_resources and dist.main else None
    accumulate = max(1, int(recipe.accumulate))
    checkpoint_every = max(0, int(recipe.checkpoint_every))
    write_last = resumable or keep_last
    batches_per_epoch = len(train_loader)
    agreed = False  # several processes: whether they all agreed to stop at the last agreement
    together = False  # the loop ended without an exception (in every process, when none raised)
    try:
        for epoch in range(start_epoch, recipe.epochs):
            state.epoch = epoch
            if state.step >= total_steps or state.stop_reason:
                break
            # The data order of an epoch is fixed by the RNG state at its start (saved for resume).
            resuming_here = checkpoint is not None and epoch == start_epoch
            if resuming_here:
                _restore_epoch_start(train_loader, checkpoint["epoch_start"])
            if hasattr(train_loader.sampler, "set_epoch"):
                train_loader.sampler.set_epoch(epoch)      # a DistributedSampler reshuffles per epoch
            epoch_start = _epoch_start_state(train_loader)
            batches = iter(train_loader)
            batch_in_epoch = 0
            if resuming_here and skip_batches:  # resume mid-epoch: same order, skip what was done
                for _ in range(skip_batches):
                    next(batches)
                set_rng_state(checkpoint["rng"])
                batch_in_epoch = skip_batches

            window: list[Any] = []
            for batch in _timed(batches, wait):
                window.append(batch)
                batch_in_epoch += 1
                if len(window) < accumulate and batch_in_epoch < batches_per_epoch:
                    continue                                   # gradient accumulation: a window of micro-batches
                state.lr = step.lr
                loss = dist.mean(step.window(window).loss)     # a device tensor: nothing waits here
                window = []
                state.step += 1
                state.loss = loss
                losses.add(state.step, loss, state.lr)
                if len(losses.pending) >= sync_every:
                    losses.flush(state, run)
                events.emit("on_step_end", state)
                if dist.active and state.step % sync_every == 0:
                    agreed = dist.any(state.stop_reason is not None, device)
                    if agreed:
                        state.stop("stopped together with the other processes")   # no-op where the stop began
                if state.step % probe_every == 0 and dist.main:
                    losses.flush(state, run)
                    state.probe_loss = _probe(recipe, model, val, collate, device, state.step)
                    run.log({"val/probe_loss": state.probe_loss}, step=state.step)
                    state.record("val/probe_loss", state.step, state.probe_loss)
                    events.emit("on_probe_end", state)
                if checkpoint_every and write_last and state.step % checkpoint_every == 0 \
                        and batch_in_epoch < batches_per_epoch:
                    losses.flush(state, run)                   # the curve on disk never lags a checkpoint
                    _checkpoint(ckpt_dir / "last.pt", state, epoch_start, batch_in_epoch, step)
                # Several processes stop only where they all agreed to (a stop one of them saw after the
                # last agreement waits for the next): stopping alone would leave the others waiting in a
                # collective, and a peer that is gone shows as the next collective failing (crashed).
                if state.step >= total_steps or (state.stop_reason and (agreed or not dist.active)):
                    break
            losses.flush(state, run)

            if batch_in_epoch < batches_per_epoch:  # stopped mid-epoch: keep a resumable checkpoint
                if write_last:
                    _checkpoint(ckpt_dir / "last.pt", state, epoch_start, batch_in_epoch, step)
                if state.stop_reason is None:
                    state.stop("step budget reached (max_steps)", status="finished")
                break
            _end_epoch(state, recipe, val_loader, ckpt_dir, run, step)
            events.emit("on_epoch_end", state)
            if dist.active:
                agreed = dist.any(state.stop_reason is not None, device)
                if agreed:
                    state.stop("stopped together with the other processes")
            state.epoch = epoch + 1
            ending = state.stop_reason or state.epoch >= recipe.epochs or state.step >= total_steps
            if resumable or (ending and write_last):
                _checkpoint(ckpt_dir / "last.pt", state, _epoch_start_state(train_loader), 0, step)
            if state.stop_reason and (agreed or not dist.active):
                break
        status = state.stop_status if state.stop_reason else "finished"
        if status == "finished" and state.loss is not None and not math.isfinite(state.loss):
            status = "failed"  # a run that ends on a NaN/Inf loss learned nothing usable
            state.stop(f"the training loss is {state.loss} at the end (first non-finite step in the curve; "
                       "`danlu check` S9 finds where it comes from)", status="failed")
        together = True                      # every process ends here when none raised
    except KeyboardInterrupt:
        status = "stopped"
        state.stop("interrupted (Ctrl-C)")
        raise
    except BaseException as exc:
        status = "failed"
        if dist.active and _peer_lost(exc):  # another process died (kill -9, OOM): resumable, like a crash
            status = "crashed"
        state.stop(f"{type(exc).__name__}: {exc}", status=status)
        raise
    finally:
        restore_signals()
        losses.flush(state, run)
        _save_best(ckpt_dir / "best.pt", state)
        if monitor is not None:
            monitor.stop()
        elapsed = time.time() - start_time
        summary = _summary(state, elapsed)
        try:
            events.emit("on_fit_end", state)
        finally:
            run.finish(status, summary)
            dist.close(together=together)
    return FitResult(run.id, run.name, status, run.record.summary, state.step, state.stop_reason)


#: Steps between two reads of the training losses from an accelerator (one transfer for all of them).
#: On the CPU a loss is read at once: there is no device to wait for, so deferring would gain nothing.
SYNC_EVERY = 8


def _peer_lost(exc: BaseException) -> bool:
    """A collective failed because another process of the run is gone (its socket closed)."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(word in text for word in ("connection closed", "connection reset", "broken pipe", "peer",
                                         "timed out", "nccl", "gloo"))


def _sync_every(device: torch.device) -> int:
    """How many steps' losses to read back at once: 1 on the CPU, SYNC_EVERY on an accelerator."""
    return 1 if device.type == "cpu" else SYNC_EVERY


class _Losses:
    """Training losses kept on the device as they come and read back every SYNC_EVERY steps in one
    transfer, so logging every batch never makes the host wait for the GPU (T1)."""

    def __init__(self, step: TrainStep) -> None:
        self.train_step = step
        self.pending: list[tuple[int, torch.Tensor, float]] = []

    def add(self, step: int, loss: torch.Tensor, lr: float) -> None:
        self.pending.append((step, loss, lr))

    def flush(self, state: FitState, run: Run) -> None:
        if not self.pending:
            return
        values = torch.stack([loss.float().reshape(()) for _, loss, _ in self.pending]).cpu().tolist()
        for (step, _, lr), value in zip(self.pending, values):
            run.log({"train/loss": value, "lr": lr}, step=step)
            state.record("train/loss", step, value)
            state.flushed.append((step, value))
        if self.train_step.scaler.is_enabled():
            state.skipped_steps = self.train_step.skipped_steps
            run.log({"amp/skipped_steps": self.train_step.skipped_steps}, step=self.pending[-1][0])
        state.loss = values[-1]
        self.pending.clear()


def _timed(batches, wait: DataWait):
    """The batches of an iterator, adding the time spent waiting for each to `wait`."""
    while True:
        wait.since = started = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        finally:
            wait.since = None
            wait.seconds += time.perf_counter() - started
        yield batch


@contextlib.contextmanager
def _failed_before_training(run: Run):
    """Anything that stops a fit between opening its run and its first step ends the run as failed
    (or stopped, for Ctrl-C) with the error and the user's line, never as a forever "running" one."""
    try:
        yield
    except BaseException as exc:
        from danlu.errors import error_text

        text = error_text(exc, frame=True)
        run.finish("stopped" if isinstance(exc, KeyboardInterrupt) else "failed",
                   {"error": text, "stop_reason": f"failed before training: {text}"})
        raise


def _save_best(path: Path, state: FitState) -> None:
    """A run that is not resumable: the best model's weights, kept in memory, written once at the end."""
    if state.best_weights is None:
        return
    tmp = path.with_suffix(".tmp")
    torch.save({"model": state.best_weights, "step": state.best_step, "epoch": state.best_epoch - 1,  # as _checkpoint
                "hparams": state.recipe.hparams()}, tmp)
    tmp.replace(path)
    state.best_weights = None


def _end_epoch(state: FitState, recipe: Recipe, val_loader, ckpt_dir: Path, run: Run, step: TrainStep) -> None:
    """Whole-set validation, best checkpoint, early stopping (T3)."""
    state.val_loss, state.val_metrics = evaluate(recipe, state.model, val_loader, state.device, dist=state.dist)
    run.log({"val/loss": state.val_loss, **{f"val/{k}": v for k, v in state.val_metrics.items()},
             "epoch": state.epoch + 1}, step=state.step)
    state.record("val/loss", state.step, state.val_loss)
    if state.val_loss < state.best_val_loss:
        state.best_val_loss, state.best_epoch, state.best_step = state.val_loss, state.epoch + 1, state.step
        state.best_metrics = dict(state.val_metrics)
        state.bad_epochs = 0
        if state.resumable:
            _checkpoint(ckpt_dir / "best.pt", state, {}, 0, step)
        elif state.dist.main:  # written once when training ends (_save_best)
            state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in state.model.state_dict().items()}
    else:
        state.bad_epochs += 1
        if recipe.patience > 0 and state.bad_epochs >= recipe.patience:
            state.stop(
                f"early stop: val loss has not improved for {state.bad_epochs} epochs "
                f"(best {state.best_val_loss:.4g} at epoch {state.best_epoch})",
                status="finished",
            )


def _baseline_loss(train, recipe: Recipe) -> float | None:
    """Majority-class (or mean-predictor) loss from up to 2,000 training targets; RNG untouched.
    None for a regression recipe with a loss of its own (Gaussian NLL, BCE on multi-hot tags, L1):
    the target's variance is not in that loss's units, and comparing them cried "learning little"
    on healthy models. A classification recipe's own loss is nearly always a cross-entropy."""
    from danlu.baseline import baseline_loss, dataset_targets

    if recipe.task == "regression" and not uses_default_loss(recipe):
        return None
    saved = rng_state()
    try:
        targets = dataset_targets(train, max_items=2000)
        return None if targets is None else baseline_loss(targets, recipe.task)
    except Exception:  # a baseline is a nicety; never stop training for it
        return None
    finally:
        set_rng_state(saved)


def _summary(state: FitState, elapsed: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "steps": state.step,
        "epochs": state.epoch,
        "train_loss": state.loss,
        "seconds": round(elapsed, 3),
        "device": str(state.device),
    }
    if state.best_epoch >= 0:
        out.update(best_val_loss=state.best_val_loss, best_epoch=state.best_epoch, best_step=state.best_step)
        out.update({f"best_val_{k}": v for k, v in state.best_metrics.items()})
    if state.val_loss is not None:
        out["val_loss"] = state.val_loss
        out.update({f"val_{k}": v for k, v in state.val_metrics.items()})
    if state.baseline_loss is not None:
        out["baseline_loss"] = state.baseline_loss
    if state.recipe.task is not None:
        out["task"] = state.recipe.task
    if state.skipped_steps:
        out["amp_skipped_steps"] = state.skipped_steps
    if state.stop_reason:
        out["stop_reason"] = state.stop_reason
    return out


def _capture(run: Run, recipe: Recipe, train, val, dist: Dist | None = None) -> None:
    """Reproducibility record (E1, E3) and a code snapshot (E4); never stops training, and never
    changes it: reading items to fingerprint the data may draw random numbers (augmentation),
    so every RNG is put back afterwards."""
    import sys

    from danlu.repro import capture, snapshot_code

    source = recipe_source(recipe)
    saved = rng_state()
    try:
        record = capture(source, train, val, argv=sys.argv, hparams=recipe.hparams(), seed=recipe.seed)
        if source is not None:
            record["code_snapshot"] = snapshot_code(source, run.dir / "code")
            record["recipe_file"] = source.name
    except Exception as exc:  # pragma: no cover - capture problems are reported, not fatal
        record = {"error": f"capture failed: {exc!r}"}
    finally:
        set_rng_state(saved)
    if dist is not None and dist.active:
        record["distributed"] = dist.describe()
    run.store.update_run(run.id, repro=record)


def _graceful_interrupt(state: FitState):
    """First Ctrl-C, or SIGTERM (what SLURM and Kubernetes send before they kill): stop at the end of
    the current step with a resumable checkpoint, status "stopped". A second Ctrl-C interrupts at once.
    Returns a function that restores the old handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if signum == signal.SIGINT and state.stop_reason and state.stop_reason.startswith("interrupted"):
            raise KeyboardInterrupt
        what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        state.stop(f"interrupted ({what}); resume with `danlu train --resume RUN`", status="stopped")

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _progress_display():
    from danlu.progress import TrainingProgress

    return TrainingProgress()
