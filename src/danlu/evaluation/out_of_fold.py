"""Out-of-sample predictions on the training split (C2): K models, each trained without one fold.

A model's predictions on the samples it was trained on are no evidence about their labels:
it has fitted them, wrong ones included. To look for wrong labels in the training split,
the split is cut into K folds (stratified by class); the recipe is trained K times by the
engine, each time on the other folds (with the recipe's own settings, epochs and seed), and
each model predicts the fold it never saw. Every training sample then has a prediction
made without it, as cross-validation does (and as confident learning needs).

The K fits are ordinary runs in the store, tagged "out-of-fold" with the studied run as
their parent, so they can be looked at (and deleted) like any other.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from danlu.errors import DanluError
from danlu.evaluation.predict import Predictions, predict
from danlu.recipe import Recipe
from danlu.store.base import Store

__all__ = ["fold_assignment", "out_of_fold"]


def fold_assignment(targets: np.ndarray | None, n: int, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each of n samples: shuffled with `seed`, round-robin within each class
    when class targets are given, so every fold holds each class in proportion."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if targets is not None and len(targets) == n and np.issubdtype(np.asarray(targets).dtype, np.integer):
        order = order[np.argsort(np.asarray(targets)[order], kind="stable")]
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.arange(n) % folds
    return fold


def out_of_fold(
    recipe: Recipe,
    store: Store,
    *,
    folds: int = 3,
    parent: str | None = None,
    name: str = "out-of-fold",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> tuple[Predictions, Dataset, list[str]]:
    """(predictions on every training sample, each made by a model trained without it; the training
    dataset; the ids of the K runs that made them)."""
    from danlu.baseline import dataset_targets
    from danlu.engine import fit

    if folds < 2:
        raise DanluError(f"Out-of-fold predictions need at least 2 folds, got {folds}.")
    train, _ = recipe.data()
    recipe.resolve_task(train)
    n = len(train)  # type: ignore[arg-type]
    if n < 2 * folds:
        raise DanluError(f"The training split has {n} samples: too few for {folds} folds.")
    targets = dataset_targets(train)
    fold = fold_assignment(targets.numpy() if targets is not None else None, n, folds, recipe.seed)

    parts: list[tuple[np.ndarray, Predictions]] = []
    run_ids: list[str] = []
    for k in range(folds):
        held = np.flatnonzero(fold == k)
        kept = np.flatnonzero(fold != k)
        fold_recipe = _on_subsets(recipe, Subset(train, kept.tolist()), Subset(train, held.tolist()))
        result = fit(fold_recipe, store=store, name=f"{name}-fold{k + 1}of{folds}",
                     note=f"out-of-fold model {k + 1}/{folds}: trained without fold {k + 1} of the training split",
                     tags=("out-of-fold",), device=device, progress=progress, capture=False, parent=parent)
        run_ids.append(result.run_id)
        model = _best_model(fold_recipe, store, result.run_id)
        parts.append((held, predict(fold_recipe, model, Subset(train, held.tolist()), device=device)))
    return _assemble(parts, n), train, run_ids


def _on_subsets(recipe: Recipe, train: Dataset, val: Dataset) -> Recipe:
    """A copy of `recipe` whose data() returns these datasets (everything else as it was)."""
    fold_recipe = copy.copy(recipe)
    fold_recipe.data = lambda: (train, val)  # type: ignore[method-assign]
    return fold_recipe


def _best_model(recipe: Recipe, store: Store, run_id: str) -> torch.nn.Module:
    folder = store.run_dir(run_id) / "checkpoints"
    path = next((p for p in (folder / "best.pt", folder / "last.pt") if p.exists()), None)
    if path is None:
        raise DanluError(f"The out-of-fold run {run_id} left no checkpoint; see `danlu show {run_id}`.")
    model = recipe.model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["model"])
    return model


def _assemble(parts: Sequence[tuple[np.ndarray, Predictions]], n: int) -> Predictions:
    """One Predictions in dataset order from the folds' predictions."""
    first = parts[0][1]

    def gather(field: str) -> np.ndarray | None:
        if any(getattr(p, field) is None for _, p in parts):
            return None
        sample = getattr(first, field)
        out = np.empty((n, *sample.shape[1:]), dtype=sample.dtype)
        for idx, p in parts:
            out[idx] = getattr(p, field)
        return out

    outputs, targets, losses = gather("outputs"), gather("targets"), gather("losses")
    assert outputs is not None and targets is not None and losses is not None
    return Predictions(task=first.task, outputs=outputs, targets=targets, losses=losses, probs=gather("probs"),
                       lengths=gather("lengths"))
