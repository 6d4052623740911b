"""Runs from the store, for the case study: rebuild the recipe, load the best checkpoint, save the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from danlu.errors import DanluError, RecipeError
from danlu.recipe import Recipe, load_recipe_class
from danlu.report import Report
from danlu.store.base import RunRecord, Store

__all__ = ["LoadedRun", "load_run", "save_cases"]


@dataclass
class LoadedRun:
    record: RunRecord
    recipe: Recipe
    model: nn.Module
    checkpoint: Path


def load_run(store: Store, ref: str, device: str | torch.device = "cpu") -> LoadedRun:
    """The run's recipe, rebuilt with its hyperparameters, and its model with the best checkpoint's weights."""
    record = store.get_run(ref)
    if not record.recipe:
        raise DanluError(f"Run {record.name} ({record.id}) has no recipe (a `danlu.init` run?); the case study "
                         "needs a run made by `danlu train`.")
    try:
        cls = load_recipe_class(record.recipe)
    except RecipeError as exc:
        raise RecipeError(f"Cannot rebuild the recipe of run {record.name} ({record.id}): {exc}") from exc
    fields = cls.fields()
    recipe = cls(**{k: v for k, v in record.config.items() if k in fields})
    folder = store.run_dir(record.id, create=False) / "checkpoints"
    path = folder / "best.pt"
    if not path.exists():
        raise DanluError(f"Run {record.name} ({record.id}) has no best checkpoint at {path}. It is saved after the "
                         "first completed epoch; let the run finish an epoch (or resume it with "
                         f"`danlu train --resume {record.id}`).")
    ckpt = torch.load(path, map_location=device, weights_only=False)  # the user's own store: trusted
    state = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    model = recipe.model()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DanluError(f"The checkpoint {path} does not fit the model the recipe builds now "
                         f"({str(exc).splitlines()[0]}). Was the recipe file changed since the run? Its code "
                         f"snapshot is in {store.run_dir(record.id, create=False)}.") from exc
    return LoadedRun(record, recipe, model, path)


def save_cases(store: Store, run_id: str, report: Report, image_root: str | Path | None) -> int:
    """Copy the report's images into the run's folder and store the report with the run; return its id."""
    from danlu.track import attach_report

    return attach_report(store, run_id, report, image_root)
