"""THE training step: forward (``recipe.forward``), loss, backward, clipping, optimizer and
scheduler step. The engine, every check that trains, the audit's time estimate, the LR
finder and the study (through the engine) train with it; nothing else calls
``loss.backward()`` to train.

    step = TrainStep.for_recipe(recipe, model, total_steps)
    for batch in loader:
        out = step(batch)              # out.loss is a detached tensor (no host sync)

It takes the recipe's precision (``"bf16"``: autocast to bfloat16; ``"16"``: autocast to
float16 with a gradient scaler, whose skipped steps are counted), gradient accumulation
(:meth:`TrainStep.window` runs several micro-batches into one optimizer step, each loss
divided by their number, so the gradient is the window's mean) and ``torch.compile``
(training runs the compiled module; if compiling fails, one warning and eager training).

A check that must look between the backward pass and the update (S9 checks gradients
for NaN before the weights change) calls the two halves itself::

    out = step.forward_backward(batch)
    ...                                # read the gradients
    step.update()

:func:`prepare` builds what a run trains with, in one fixed order under the recipe's
seed: `danlu train` and the doctor's determinism check (S11) both start from it, so the
same seed gives the same data order, initial weights and first losses in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from danlu.device import to_device

if TYPE_CHECKING:  # pragma: no cover
    from danlu.distributed import Dist
    from danlu.recipe import Recipe

__all__ = ["TrainStep", "StepOutput", "Prepared", "prepare", "subset", "compiled", "PRECISIONS"]


@dataclass
class StepOutput:
    """What one step computed: the loss (detached, on the device), the output and the target."""

    loss: torch.Tensor
    output: Any
    target: Any


class TrainStep:
    """One optimizer step of a recipe's model, exactly as `danlu train` takes it.

    Args:
        recipe: supplies ``forward(model, batch)`` and ``loss(output, target)``.
        model: the module to train (already on its device).
        optimizer: its optimizer.
        scheduler: stepped once per optimizer step (None: no schedule).
        grad_clip: maximum global gradient norm; 0 turns clipping off.
        device: where batches go (default: the device of the model's first parameter).
        precision: "32", "bf16" (autocast) or "16" (autocast and a gradient scaler).
        forward_model: the module the forward pass runs (a compiled one); default `model`.
    """

    def __init__(
        self,
        recipe: Recipe,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        *,
        grad_clip: float = 0.0,
        device: torch.device | str | None = None,
        precision: str = "32",
        forward_model: nn.Module | None = None,
    ) -> None:
        self.recipe = recipe
        self.model = model
        self.forward_model = forward_model if forward_model is not None else model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.grad_clip = float(grad_clip or 0.0)
        if device is None:
            first = next(iter(model.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        self._pending = False      # gradients of a forward_backward not yet applied
        #: An optimizer whose step() needs a closure (LBFGS) re-evaluates the loss itself: the
        #: micro-batches of the pending window, and their loss, are kept for it.
        self.needs_closure = _requires_closure(optimizer)
        self._window: list[tuple[Any, float]] = []
        self._window_loss: torch.Tensor | None = None
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if self.needs_closure and precision == "16":
            raise ValueError(f"{type(optimizer).__name__} re-evaluates the loss in its step (a closure), which "
                             "float16's gradient scaler cannot drive: use precision='bf16' or '32'")
        self.precision = precision
        self.autocast_dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "16")
        #: Optimizer steps the gradient scaler skipped (float16 gradients with Inf/NaN).
        self.skipped_steps = 0

    @classmethod
    def for_recipe(cls, recipe: Recipe, model: nn.Module, total_steps: int,
                   device: torch.device | str | None = None, forward_model: nn.Module | None = None) -> TrainStep:
        """The recipe's own optimizer, schedule over `total_steps`, gradient clipping and precision."""
        optimizer, scheduler = recipe.optimization(model, total_steps)
        return cls(recipe, model, optimizer, scheduler, grad_clip=recipe.grad_clip, device=device,
                   precision=str(getattr(recipe, "precision", "32")), forward_model=forward_model)

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group (what the next update will use)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def scale_lr(self, factor: float) -> None:
        """Multiply the learning rate, schedule included (a check trying a faster or slower rate)."""
        if factor == 1.0:
            return
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        if self.scheduler is not None and hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]

    def _forward(self, batch: Any) -> tuple[Any, Any, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            try:
                output, target = self.recipe.forward(self.forward_model, batch)
            except Exception as exc:
                if self.forward_model is self.model or not _compile_failure(exc):
                    raise
                self._give_up_compiling(exc)
                output, target = self.recipe.forward(self.model, batch)
            loss = self.recipe.loss(output, target)
        return output, target, loss

    def _give_up_compiling(self, exc: Exception) -> None:
        import warnings

        warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                      "training the model without it", RuntimeWarning, stacklevel=3)
        self.forward_model = self.model

    def forward_backward(self, batch: Any, scale: float = 1.0) -> StepOutput:
        """Forward, loss and backward on one batch; the gradients wait for :meth:`update`.
        `scale` multiplies the loss for the backward pass (1/N for one of N accumulated micro-batches)."""
        if not self._pending:
            self.optimizer.zero_grad(set_to_none=True)
            self._window, self._window_loss = [], None
        batch = to_device(batch, self.device)
        output, target, loss = self._forward(batch)
        self.scaler.scale(loss * scale if scale != 1.0 else loss).backward()
        self._pending = True
        if self.needs_closure:
            self._window.append((batch, scale))
            part = loss.detach() * scale
            self._window_loss = part if self._window_loss is None else self._window_loss + part
        return StepOutput(loss.detach(), output, target)

    def _closure(self):
        """The loss of the pending window, for an optimizer that re-evaluates it (LBFGS): its first call
        returns what forward_backward computed (the gradients are in place); later calls recompute."""
        calls = 0

        def closure() -> torch.Tensor:
            nonlocal calls
            calls += 1
            if calls == 1 and self._window_loss is not None:
                return self._window_loss
            self.optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=self.device)
            for batch, scale in self._window:
                _, _, loss = self._forward(batch)
                (loss * scale if scale != 1.0 else loss).backward()
                total = total + loss.detach().float() * scale
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            return total

        return closure

    def update(self) -> None:
        """Clip, step the optimizer and the schedule with the gradients gathered so far."""
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler.is_enabled():
            before = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scaler.get_scale() < before:  # the scaler backed off: this step was skipped
                self.skipped_steps += 1
        elif self.needs_closure:
            self.optimizer.step(self._closure())
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self._pending = False

    def window(self, batches: list[Any]) -> StepOutput:
        """One optimizer step over several micro-batches (gradient accumulation): the gradient
        is their mean; the loss returned is the mean of their losses (detached)."""
        n = len(batches)
        outs = [self.forward_backward(b, scale=1.0 / n) for b in batches]
        self.update()
        loss = outs[0].loss if n == 1 else torch.stack([o.loss.float() for o in outs]).mean()
        return StepOutput(loss, outs[-1].output, outs[-1].target)

    def __call__(self, batch: Any) -> StepOutput:
        """One whole step: forward, loss, backward, clip, optimizer step, scheduler step."""
        return self.window([batch])

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs beyond the model, optimizer and schedule: the gradient scaler."""
        return {"scaler": self.scaler.state_dict(), "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.skipped_steps = int(state.get("skipped_steps", 0))


def _requires_closure(optimizer: torch.optim.Optimizer) -> bool:
    """True when the optimizer's step() has a `closure` argument without a default (LBFGS)."""
    import inspect

    try:
        param = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is inspect.Parameter.empty


#: The recipe's `precision` -> the autocast dtype (None: full float32).
PRECISIONS: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def _compile_failure(exc: BaseException) -> bool:
    """True when an exception comes from torch.compile's machinery (dynamo, inductor), not the user's code."""
    module = type(exc).__module__ or ""
    if module.startswith(("torch._dynamo", "torch._inductor")):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and _compile_failure(cause)


def compiled(model: nn.Module) -> nn.Module:
    """`torch.compile(model)`, or the model itself (with one warning) when compiling is not possible here."""
    try:
        return torch.compile(model)  # type: ignore[return-value]  # an OptimizedModule, a Module
    except Exception as exc:  # no compiler, unsupported platform: train eagerly
        import warnings

        warnings.warn(f"torch.compile is not available ({type(exc).__name__}: {exc}); training without it",
                      RuntimeWarning, stacklevel=2)
        return model


@dataclass
class Prepared:
    """What a run trains with: data, loaders, model and its training step."""

    train: Dataset
    val: Dataset
    train_loader: DataLoader
    val_loader: DataLoader
    model: nn.Module
    step: TrainStep
    steps_per_epoch: int
    total_steps: int


def subset(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """A seeded random `fraction` of a dataset (the whole of it at 1.0), in index order."""
    if fraction >= 1.0:
        return dataset
    n = max(1, int(round(len(dataset) * fraction)))  # type: ignore[arg-type]
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]  # type: ignore[arg-type]
    return Subset(dataset, sorted(order.tolist()))


def prepare(recipe: Recipe, device: torch.device | str = "cpu", *, max_steps: int | None = None,
            data_fraction: float = 1.0, dist: Dist | None = None) -> Prepared:
    """Seed, then data(), loaders(), model(), optimizer and schedule, in that order."""
    from danlu.data_reuse import load_data
    from danlu.recipe import check_data, check_model
    from danlu.repro import seed_everything

    seed_everything(recipe.seed)
    train, val = check_data(recipe, load_data(recipe))  # a study worker's trials share it (danlu.data_reuse)
    train = subset(train, data_fraction, recipe.seed)
    if not recipe.loss_only:   # the default loss and metrics need the task; a model's own loss does not
        recipe.resolve_task(train)
    train_loader, val_loader = recipe.loaders(train, val)
    if dist is not None:   # several processes: each reads its shard (danlu.distributed)
        train_loader, val_loader = dist.shard(train, val, train_loader, val_loader, recipe.seed)
    model = check_model(recipe, recipe.model()).to(device).train()
    accumulate = max(1, int(getattr(recipe, "accumulate", 1)))
    steps_per_epoch = -(-len(train_loader) // accumulate)   # optimizer steps; a short last window counts
    total_steps = recipe.epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    forward_model = compiled(model) if getattr(recipe, "compile", False) else None
    if dist is not None and dist.active:
        forward_model = dist.wrap(forward_model if forward_model is not None else model, torch.device(device))
    step = TrainStep.for_recipe(recipe, model, total_steps, device=device, forward_model=forward_model)
    return Prepared(train, val, train_loader, val_loader, model, step, steps_per_epoch, total_steps)
