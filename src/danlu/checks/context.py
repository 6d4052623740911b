"""The shared, lazy context every check draws on: recipe parts built once, data read once.

Each part is built on first use and cached: the datasets (``recipe.data()`` under the
recipe's seed, as the engine does), the task, the loaders, a seeded prototype model,
sample batches, and one scan per split (:func:`danlu.checks.audit.scan.scan_split`:
hashes, targets, sizes, moments; the whole split for `danlu audit`, a sample for
`danlu check`). A part whose user code raises is remembered as a
:class:`~danlu.checks.base.DependencyFailed`, so the first check that needs it reports
the crash and every later one is skipped with that reason instead of crashing again.

Checks get fresh copies of the model (``new_model()``) and never mutate cached batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset

from danlu.checks.base import DependencyFailed, SkipCheck
from danlu.device import to_device
from danlu.errors import RecipeError, user_frame
from danlu.outputs import class_layout
from danlu.recipe import Recipe, uses_default_loss
from danlu.repro import seed_everything
from danlu.step import TrainStep

if TYPE_CHECKING:  # pragma: no cover
    from danlu.checks.audit.scan import SplitScan

__all__ = ["Context", "Advance", "NEAR_MAX"]

#: progress(description, total) -> advance(n): a progress bar for a long part of a check.
Advance = Callable[[int], None]
#: Near-duplicate search looks at most this many samples per split (a seeded random sample).
NEAR_MAX = 10_000


def _no_progress(description: str, total: int) -> Advance:
    return lambda n: None


class Context:
    """Lazily built recipe parts shared by every check of one `danlu check` or `danlu audit` run.

    Args:
        recipe: the recipe under examination.
        device: where models and batches go.
        scan_limit: read at most this many items per split in the scans (None: all).
        near_duplicates: keep the embeddings near-duplicate search (D5) needs.
        out_dir: folder for images (paths in reports are relative to it); None keeps none.
        progress: ``progress(description, total) -> advance(n)`` for long parts.
    """

    def __init__(
        self,
        recipe: Recipe,
        device: str | torch.device = "cpu",
        *,
        scan_limit: int | None = None,
        near_duplicates: bool = False,
        out_dir: str | Path | None = None,
        progress: Callable[[str, int], Advance] | None = None,
    ) -> None:
        self.recipe = recipe
        self.device = torch.device(device)
        self.seed = int(getattr(recipe, "seed", 0))
        self.scan_limit = scan_limit
        self.near_duplicates = near_duplicates
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress or _no_progress
        self._parts: dict[str, Any] = {}
        self._failed: dict[str, DependencyFailed] = {}
        self._batches: dict[tuple, Any] = {}
        #: part name -> id of the check that reported its failure
        self.reported: dict[str, str] = {}
        #: ids of checks that failed so far (the runner fills it)
        self.failed_checks: list[str] = []
        #: ids of gating checks (a failure there explains later crashes)
        self.gates: set[str] = set()
        #: the learning-rate multiple at which the model fitted a batch (S2 sets it; S3, S5 start there)
        self.lr_scale = 1.0

    # ------------------------------------------------------------ building parts
    def _part(self, name: str, build: Callable[[], Any]) -> Any:
        if name in self._failed:
            raise self._failed[name]
        if name not in self._parts:
            try:
                self._parts[name] = build()
            except (DependencyFailed, SkipCheck):
                raise
            except Exception as exc:  # the user's code crashed: remember, report once
                failure = DependencyFailed(name, exc, user_frame(exc))
                failure.__cause__ = exc
                self._failed[name] = failure
                raise failure from exc
        return self._parts[name]

    def built(self, name: str) -> Any:
        """A part if it has been built successfully ("data()", "model()", ...), else None."""
        return self._parts.get(name)

    def advance(self, description: str, total: int) -> Advance:
        """A progress callback for a part of `total` units (no-op without progress)."""
        return self.progress(description, total)

    def image_path(self, name: str) -> tuple[Path, str] | None:
        """(absolute path, path relative to out_dir) for an image or file, or None without an out_dir."""
        if self.out_dir is None:
            return None
        rel = f"audit/{name}"
        path = self.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel

    # ------------------------------------------------------------ data
    @property
    def datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val) from ``recipe.data()``, built under the recipe's seed."""

        def build():
            seed_everything(self.seed)
            out = self.recipe.data()
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise TypeError(
                    f"data() must return (train, val); it returned {type(out).__name__}"
                    + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
                )
            try:  # as the engine does: the default loss and metrics need the task
                self.recipe.resolve_task(out[0])
            except Exception:  # reported by whichever check asks for ctx.task
                pass
            return tuple(out)

        return self._part("data()", build)

    @property
    def train(self) -> Dataset:
        return self.datasets[0]

    @property
    def val(self) -> Dataset:
        return self.datasets[1]

    def dataset(self, split: str) -> Dataset:
        return self.train if split == "train" else self.val

    def length(self, split: str) -> int:
        ds = self.dataset(split)
        if isinstance(ds, IterableDataset) or not hasattr(ds, "__len__"):
            raise SkipCheck(f"the {split} dataset has no len() (an IterableDataset); this check needs "
                            "a map-style dataset")
        return len(ds)  # type: ignore[arg-type]

    @property
    def task(self) -> str:
        """'classification' or 'regression' (the recipe's, or inferred from the targets as the engine does)."""
        return self._part("task", lambda: self.recipe.resolve_task(self.train))

    @property
    def task_or_none(self) -> str | None:
        """The task, or None when the targets say neither (vectors, strings, unreadable items)."""
        try:
            return self.task
        except (DependencyFailed, RecipeError):
            return None

    @property
    def classification(self) -> bool:
        """Whether the output holds class scores for the targets (never for a loss-only recipe)."""
        return self.loss_only is None and self.task == "classification"

    @property
    def loss_only(self) -> str | None:
        """Where the loss comes from when the training step gives only a loss (else None)."""
        return getattr(self.recipe, "loss_only", None)

    def needs_output(self, what: str) -> None:
        """Skip a check that reads the model's output and the target when the step gives only a loss."""
        if self.loss_only:
            raise SkipCheck(f"{what} needs the model's output and its target, and {self.loss_only} "
                            "gives only the loss")

    @property
    def loaders(self):
        """The recipe's own (train, val) DataLoaders."""
        return self._part("loaders()", lambda: tuple(self.recipe.loaders(self.train, self.val)))

    def collate(self, split: str = "train") -> Callable:
        loader = self.loaders[0 if split == "train" else 1]
        return getattr(loader, "collate_fn", None) or torch.utils.data.default_collate

    @property
    def batch_size(self) -> int:
        """The training batch size (the train loader's, else the recipe's)."""
        return loader_batch_size(self.loaders[0]) or int(self.recipe.batch_size)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the real run (epochs x batches per epoch): the schedule's length."""
        try:
            per_epoch = len(self.loaders[0])
        except TypeError:
            per_epoch = max(1, self.length("train") // max(1, self.batch_size))
        return max(1, int(self.recipe.epochs) * per_epoch)

    # ------------------------------------------------------------ scans (the audit's one pass)
    @property
    def scans(self) -> dict[str, SplitScan]:
        """One scan per split ("train", "val"): every item, or a seeded sample of `scan_limit`."""

        def build():
            from danlu.checks.audit.scan import scan_split

            rng = np.random.default_rng(self.seed)
            out = {}
            for name in ("train", "val"):
                size = self.length(name)
                limit = self.scan_limit
                idx = np.arange(size) if limit is None or limit >= size else \
                    np.sort(rng.choice(size, limit, replace=False))
                mask = np.zeros(len(idx), dtype=bool)
                if self.near_duplicates:
                    mask[rng.choice(len(idx), min(NEAR_MAX, len(idx)), replace=False)] = True
                out[name] = scan_split(name, self.dataset(name), idx, embed_mask=mask,
                                       advance=self.advance(f"reading {name}", len(idx)))
            return out

        return self._part("scan", build)

    @property
    def classes(self) -> tuple[int | None, str, list[str]]:
        """(number of classes, where it came from, disagreements between the sources).

        The model's output size first, else the recipe's declared `num_classes` /
        `n_classes` / `classes`, else unknown (the labels' maximum is named).
        """
        return self._part("classes", self._settle_classes)

    @property
    def num_classes(self) -> int | None:
        return self.classes[0]

    def _settle_classes(self) -> tuple[int | None, str, list[str]]:
        declared = _declared_classes(self.recipe)
        from_model, why = self._model_classes()
        notes: list[str] = []
        if from_model is not None:
            if declared is not None and declared != from_model:
                notes.append(f"the model has {from_model} outputs but the recipe declares {declared} classes")
            return from_model, "the model's output size", notes
        if declared is not None:
            return declared, "the recipe's declared number of classes", notes
        labels = [s.labels()[1] for s in self.scans.values()]
        top = max((int(a.max()) for a in labels if len(a)), default=-1)
        return None, f"the labels (max label {top}; model output not available: {why})", notes

    def _model_classes(self) -> tuple[int | None, str]:
        """The class dimension of the model's output on one readable training item (eval mode)."""
        from danlu.errors import error_text

        scan = self.scans["train"]
        good = np.setdiff1d(np.flatnonzero(scan.ok), scan.bad_positions)
        if not len(good):
            return None, "no readable training item"
        try:
            model = self.new_model().eval()
            batch = self.collated("train", [int(scan.indices[good[0]])])
            with torch.no_grad():
                out, target = self.forward(model, batch)
        except Exception as exc:
            return None, error_text(exc, frame=True)
        layout = class_layout(out, target, self.loss)
        if layout is None:
            return None, "the model's output holds no class scores for the targets"
        c = layout.classes
        return (2 if c == 1 else c), ""

    # ------------------------------------------------------------ batches
    def indices(self, split: str, n: int, seed: int = 0) -> list[int]:
        """n seeded random indices of a split (repeating when the split is smaller than n)."""
        size = self.length(split)
        if size == 0:
            raise SkipCheck(f"the {split} dataset is empty")
        gen = torch.Generator().manual_seed(self.seed * 7919 + seed)
        out: list[int] = []
        while len(out) < n:
            out.extend(torch.randperm(size, generator=gen).tolist())
        return out[:n]

    def collated(self, split: str, indices: list[int]) -> Any:
        """Read items in this process and collate them with the loader's collate_fn (on device)."""
        ds = self.dataset(split)
        return to_device(self.collate(split)([ds[i] for i in indices]), self.device)

    def batch(self, n: int, split: str = "train", seed: int = 0) -> Any:
        """A cached batch of n seeded random samples (min(n, dataset size) when not repeating)."""
        n = max(1, min(n, self.length(split)))
        key = (split, n, seed)
        if key not in self._batches:
            self._batches[key] = self.collated(split, self.indices(split, n, seed))
        return self._batches[key]

    def stream(self, split: str = "train", batch_size: int | None = None, seed: int = 0) -> Iterator[Any]:
        """Endless shuffled batches read in this process (a fresh permutation each epoch)."""
        size = self.length(split)
        bs = max(1, min(batch_size or self.batch_size, size))
        gen = torch.Generator().manual_seed(self.seed * 104729 + seed)
        ds, collate = self.dataset(split), self.collate(split)
        while True:
            order = torch.randperm(size, generator=gen).tolist()
            for start in range(0, size - bs + 1, bs):
                yield to_device(collate([ds[i] for i in order[start:start + bs]]), self.device)

    # ------------------------------------------------------------ model and step
    @property
    def prototype(self) -> nn.Module:
        """The model as ``recipe.model()`` builds it under the recipe's seed (do not train it)."""

        def build():
            seed_everything(self.seed)
            model = self.recipe.model()
            if not isinstance(model, nn.Module):
                raise TypeError(f"model() must return an nn.Module; it returned {type(model).__name__}")
            return model

        return self._part("model()", build)

    def new_model(self) -> nn.Module:
        """A fresh copy of the seeded initial model, on the device, in train mode."""
        proto = self.prototype
        try:
            model = copy.deepcopy(proto)
        except Exception:  # not copyable: build it again under the same seed
            seed_everything(self.seed)
            model = self.recipe.model()
        return model.to(self.device).train()

    def train_step(self, model: nn.Module, steps: int | None = None) -> TrainStep:
        """The recipe's real training step for `model`: its optimizer, its schedule, its clipping.

        The schedule spans the real run (``total_steps``), or `steps` when a check trains
        longer than that, so warmup is kept and the decay does not end before the check does.
        """
        return TrainStep.for_recipe(self.recipe, model, max(self.total_steps, steps or 0))

    def forward(self, model: nn.Module, batch: Any) -> tuple[Any, Any]:
        """``recipe.forward(model, batch)`` -> (output, target)."""
        out = self.recipe.forward(model, batch)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"recipe.forward() must return (output, target); it returned {type(out).__name__}")
        return out[0], out[1]

    def loss(self, output: Any, target: Any) -> torch.Tensor:
        return self.recipe.loss(output, target)

    @property
    def default_loss(self) -> bool:
        """Whether the recipe trains with danlu's own loss (danlu.recipe.uses_default_loss)."""
        return uses_default_loss(self.recipe)


def loader_batch_size(loader: Any) -> int | None:
    """A DataLoader's batch size, also when a batch_sampler sets it (the loader then says None)."""
    size = getattr(loader, "batch_size", None) or getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    return int(size) if isinstance(size, int) and size > 0 else None


def _declared_classes(recipe: Recipe) -> int | None:
    for name in ("num_classes", "n_classes"):
        value = getattr(recipe, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    classes = getattr(recipe, "classes", None)
    if isinstance(classes, (list, tuple)) and classes:
        return len(classes)
    return None
