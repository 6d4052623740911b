"""THE training step: forward (``recipe.forward``), loss, backward, clipping, optimizer and
scheduler step. The engine, every check that trains, the audit's time estimate, the LR
finder and the study (through the engine) train with it; nothing else calls
``loss.backward()`` to train.

    step = TrainStep.for_recipe(recipe, model, total_steps)
    for batch in loader:
        out = step(batch)              # out.loss is a detached tensor (no host sync)

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
    from danlu.recipe import Recipe

__all__ = ["TrainStep", "StepOutput", "Prepared", "prepare", "subset"]


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
    ) -> None:
        self.recipe = recipe
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.grad_clip = float(grad_clip or 0.0)
        if device is None:
            first = next(iter(model.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        self._pending = False      # gradients of a forward_backward not yet applied

    @classmethod
    def for_recipe(cls, recipe: Recipe, model: nn.Module, total_steps: int,
                   device: torch.device | str | None = None) -> TrainStep:
        """The recipe's own optimizer, schedule over `total_steps` and gradient clipping."""
        optimizer = recipe.optimizer(model.parameters())
        scheduler = recipe.scheduler(optimizer, total_steps)
        return cls(recipe, model, optimizer, scheduler, grad_clip=recipe.grad_clip, device=device)

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

    def forward_backward(self, batch: Any) -> StepOutput:
        """Forward, loss and backward on one batch; the gradients wait for :meth:`update`."""
        if not self._pending:
            self.optimizer.zero_grad(set_to_none=True)
        output, target = self.recipe.forward(self.model, to_device(batch, self.device))
        loss = self.recipe.loss(output, target)
        loss.backward()
        self._pending = True
        return StepOutput(loss.detach(), output, target)

    def update(self) -> None:
        """Clip, step the optimizer and the schedule with the gradients gathered so far."""
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self._pending = False

    def __call__(self, batch: Any) -> StepOutput:
        """One whole step: forward, loss, backward, clip, optimizer step, scheduler step."""
        out = self.forward_backward(batch)
        self.update()
        return out


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
            data_fraction: float = 1.0) -> Prepared:
    """Seed, then data(), loaders(), model(), optimizer and schedule, in that order."""
    from danlu.recipe import check_data, check_model
    from danlu.repro import seed_everything

    seed_everything(recipe.seed)
    train, val = check_data(recipe, recipe.data())
    train = subset(train, data_fraction, recipe.seed)
    recipe.resolve_task(train)
    train_loader, val_loader = recipe.loaders(train, val)
    model = check_model(recipe, recipe.model()).to(device).train()
    steps_per_epoch = len(train_loader)
    total_steps = recipe.epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    step = TrainStep.for_recipe(recipe, model, total_steps, device=device)
    return Prepared(train, val, train_loader, val_loader, model, step, steps_per_epoch, total_steps)
