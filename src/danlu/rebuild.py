"""Runs from the store as Python objects again: the recipe a run was made with, its trained model.

`danlu train --resume`, `danlu audit --run`, `danlu cases`, `danlu reproduce` and the
study all rebuild recipes from stored runs through :func:`recipe_from_run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from danlu.errors import DanluError, RecipeError
from danlu.recipe import Recipe, check_model, load_recipe_class
from danlu.store.base import RunRecord, Store

__all__ = ["recipe_from_run", "TrainedRun", "load_trained", "checkpoint_of"]


def recipe_from_run(
    store: Store,
    record: RunRecord,
    *,
    from_snapshot: bool = False,
    path: str | Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Recipe:
    """The recipe of a stored run, with the hyperparameters it recorded.

    The class comes from the recorded recipe file (or `path`, e.g. another checkout of
    it), or with `from_snapshot` from the run's own code snapshot (E4: the code as it was,
    not as it is). Recorded hyperparameters the class no longer has are dropped;
    `overrides` are command-line style strings applied on top.
    """
    if not record.recipe and path is None:
        raise DanluError(f"Run {record.name} ({record.id}) is a {record.kind} run with no recipe "
                         "(e.g. one logged with danlu.init); this needs a run made from a recipe.")
    if from_snapshot:
        from danlu.repro import load_snapshot

        code = store.run_dir(record.id, create=False) / "code"
        class_name = (record.recipe or "").rpartition(":")[2] or None
        try:
            cls = load_snapshot(code, class_name)
        except FileNotFoundError:
            raise DanluError(
                f"Run {record.name} has no code snapshot in {code}; it cannot be re-run from its own code. "
                f"Re-run it from the current code with: danlu train {record.recipe} "
                + " ".join(f"{k}={v}" for k, v in record.config.items())) from None
    else:
        try:
            cls = load_recipe_class(path or record.recipe)
        except RecipeError as exc:
            raise RecipeError(f"Cannot rebuild the recipe of run {record.name} ({record.id}): {exc}") from exc
    fields = cls.fields()
    config = {k: v for k, v in record.config.items() if k in fields}
    if not overrides:
        return cls(**config)
    return cls.from_strings({**{k: str(v) for k, v in config.items()}, **dict(overrides)})


def checkpoint_of(store: Store, record: RunRecord) -> Path:
    """The weights to start a new run from: the run's best checkpoint, else its last one."""
    folder = store.run_dir(record.id, create=False) / "checkpoints"
    for name in ("best.pt", "last.pt"):
        if (folder / name).exists():
            return folder / name
    raise DanluError(f"Run {record.name} ({record.id}) has no checkpoint to start from (it stopped before its "
                     "first epoch ended).")


def _last_trained(store: Store) -> RunRecord:
    for record in store.list_runs(kind="train"):
        if (store.run_dir(record.id, create=False) / "checkpoints" / "best.pt").exists():
            return record
    raise DanluError("No training run with a checkpoint yet: train one (`danlu train RECIPE`) and let it finish "
                     "an epoch, or name a run.")


@dataclass
class TrainedRun:
    """A trained run: its record, its recipe, and its model with the best checkpoint's weights."""

    record: RunRecord
    recipe: Recipe
    model: nn.Module
    checkpoint: Path


def load_trained(store: Store, ref: str, device: str | torch.device = "cpu") -> TrainedRun:
    """The run `ref` (id, prefix, name, or 'last': the newest training run that has a best checkpoint,
    so a run that failed before training does not hide the last trained one) with its recipe and
    best checkpoint loaded."""
    record = _last_trained(store) if ref == "last" else store.get_run(ref)
    recipe = recipe_from_run(store, record)
    path = store.run_dir(record.id, create=False) / "checkpoints" / "best.pt"
    if not path.exists():
        raise DanluError(f"Run {record.name} ({record.id}) has no best checkpoint at {path}. It is saved after the "
                         "first completed epoch; let the run finish an epoch (or resume it with "
                         f"`danlu train --resume {record.id}`).")
    ckpt: Any = torch.load(path, map_location=device, weights_only=False)  # the user's own store: trusted
    state = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    model = check_model(recipe, recipe.model())
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DanluError(f"The checkpoint {path} does not fit the model the recipe builds now "
                         f"({str(exc).splitlines()[0]}). Was the recipe file changed since the run? Its code "
                         f"snapshot is in {store.run_dir(record.id, create=False)}.") from exc
    return TrainedRun(record, recipe, model, path)
