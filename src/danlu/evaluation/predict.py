"""Per-sample predictions of a model on a whole dataset (C3): outputs, probabilities, targets, losses.

Everything in a case study starts here. The dataset is read in order through the
recipe's own validation loader (its collate function and batch size), so sample k of
the result is item k of the dataset; a loader that shuffles is replaced by an ordered
one with the same collate function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from danlu.device import to_device
from danlu.errors import DanluError, error_text
from danlu.recipe import Recipe

__all__ = ["Predictions", "predict", "per_sample_loss", "probabilities"]


@dataclass
class Predictions:
    """A model's outputs on every sample of a dataset, aligned by dataset index."""

    task: str                        # "classification" or "regression"
    outputs: np.ndarray              # (N, C) logits, or (N,) / (N, ...) regression predictions
    targets: np.ndarray              # (N,) class indices, or regression targets
    losses: np.ndarray               # (N,) per-sample loss
    probs: np.ndarray | None = None  # (N, C) class probabilities (classification)
    lengths: np.ndarray | None = None  # (N,) sequence lengths when inputs are token ids
    train_targets: np.ndarray | None = None  # the training labels, for the majority baseline (C3)
    metrics: dict[str, float] | None = None  # the recipe's own metrics on the whole set (as the run's summary)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def num_classes(self) -> int:
        return 0 if self.probs is None else self.probs.shape[1]

    @property
    def predicted(self) -> np.ndarray:
        """Predicted class (classification) or predicted value (regression)."""
        return self.probs.argmax(axis=1) if self.probs is not None else self.outputs

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class (classification); NaN for regression."""
        if self.probs is None:
            return np.full(len(self), np.nan)
        return self.probs.max(axis=1)


def probabilities(outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities from model outputs: softmax of logits, sigmoid of a single logit,
    or the outputs themselves when they already are probabilities (non-negative rows summing to 1)."""
    out = outputs.float()
    if out.ndim == 1 or out.shape[1] == 1:
        p = torch.sigmoid(out.reshape(-1))
        return torch.stack([1 - p, p], dim=1)
    if out.min() >= 0 and torch.allclose(out.sum(dim=1), torch.ones(len(out)), atol=1e-3):
        return out
    return torch.softmax(out, dim=1)


def per_sample_loss(recipe: Recipe, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss of each sample: vectorised for the default losses, one call per sample for a recipe's own."""
    if type(recipe).loss is Recipe.loss:
        if recipe.task == "regression":
            out = output.reshape(target.shape) if output.numel() == target.numel() else output
            return ((out.float() - target.float()) ** 2).reshape(len(target), -1).mean(dim=1)
        return F.cross_entropy(output.float(), target, reduction="none")
    return torch.stack([recipe.loss(output[i: i + 1], target[i: i + 1]).detach().float().reshape(())
                        for i in range(len(target))])


def _ordered_loader(recipe: Recipe, dataset: Dataset) -> DataLoader:
    loader = recipe.loaders(dataset, dataset)[1]
    if isinstance(getattr(loader, "sampler", None), SequentialSampler) and loader.batch_sampler is not None \
            and not getattr(loader.batch_sampler, "drop_last", False):
        return loader
    return DataLoader(dataset, batch_size=recipe.batch_size, shuffle=False, collate_fn=loader.collate_fn,
                      num_workers=recipe.num_workers)


def predict(
    recipe: Recipe,
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    device: torch.device | str | None = None,
    advance: Callable[[int], None] | None = None,
) -> Predictions:
    """Run `model` (eval mode, no grad) over every sample of `dataset` in order and keep per-sample results."""
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if recipe.task is None:
        recipe.resolve_task(dataset)
    model = model.to(device)
    was_training = model.training
    model.eval()
    outs, targets, losses, lengths = [], [], [], []
    try:
        with torch.no_grad():
            for k, batch in enumerate(_ordered_loader(recipe, dataset)):
                try:
                    out, y = recipe.forward(model, to_device(batch, device))
                except Exception as exc:
                    raise DanluError(
                        f"Evaluating batch {k} of the validation set failed: {error_text(exc, frame=True)}. "
                        "Run `danlu audit` on the recipe to find unreadable or invalid samples (D6)."
                    ) from exc
                losses.append(per_sample_loss(recipe, out, y).cpu())
                outs.append(out.detach().float().cpu())
                targets.append(y.detach().cpu())
                x = batch[0] if isinstance(batch, (list, tuple)) else None
                lengths.append(_lengths(x))
                if advance:
                    advance(len(y))
    finally:
        model.train(was_training)
    if not outs:
        raise DanluError("The validation set is empty: there is nothing to evaluate.")
    output = torch.cat(outs)
    target = torch.cat(targets)
    probs = None
    if recipe.task == "classification":
        probs = probabilities(output).numpy()
        if output.ndim > 2:
            raise DanluError(f"The case study needs one prediction per sample; the model's output has shape "
                             f"{tuple(output.shape)} (per-position outputs are not supported yet).")
    lens = None if any(v is None for v in lengths) else np.concatenate(lengths)
    try:  # the recipe's metrics once on the whole set: the numbers the engine records as val_<name> (C3)
        metrics = {k: float(v) for k, v in recipe.metrics(output, target).items()}
    except Exception:
        metrics = None
    return Predictions(
        task=recipe.task,
        outputs=output.numpy() if recipe.task == "classification" else output.reshape(target.shape).numpy()
        if output.numel() == target.numel() else output.numpy(),
        targets=target.numpy(),
        losses=torch.cat(losses).numpy().astype(np.float64),
        probs=probs,
        lengths=lens,
        metrics=metrics,
    )


def _lengths(x) -> np.ndarray | None:
    """Token counts of a (B, L) integer batch without right padding (0s), else None."""
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.is_floating_point():
        return None
    nonzero = (x != 0).cpu().numpy()
    last = x.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 0)
