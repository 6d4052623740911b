"""The shared, lazy context the checks draw on: recipe parts built once, batches cached.

Each part is built on first use and cached: the datasets (``recipe.data()`` under the
recipe's seed, as the engine does), the task, the loaders, a seeded prototype model,
sample batches. A part whose user code raises is remembered as a
:class:`~danlu.checks.doctor.base.DependencyFailed`, so the first check that needs it reports
the crash and every later one is skipped with that reason instead of crashing again.

Checks get fresh copies of the model (``new_model()``) and never mutate cached batches.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import Dataset

from danlu.checks.doctor.base import DependencyFailed, SkipCheck, user_frame
from danlu.batches import to_device
from danlu.recipe import Recipe

__all__ = ["Context", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed like the engine does (danlu.repro), so checks see what training will see."""
    from danlu.repro import seed_everything as _seed

    _seed(seed)


class Context:
    """Lazily built recipe parts shared by every check of one ``danlu check`` run."""

    def __init__(self, recipe: Recipe, device: str | torch.device = "cpu") -> None:
        self.recipe = recipe
        self.device = torch.device(device)
        self.seed = int(getattr(recipe, "seed", 0))
        self._parts: dict[str, Any] = {}
        self._failed: dict[str, DependencyFailed] = {}
        self._batches: dict[tuple, Any] = {}
        #: part name -> id of the check that reported its failure
        self.reported: dict[str, str] = {}
        #: ids of checks that failed so far (the runner fills it)
        self.failed_checks: list[str] = []
        #: ids of gating checks (a failure there explains later crashes)
        self.gates: set[str] = set()

    # ------------------------------------------------------------ building parts
    def _part(self, name: str, build: Callable[[], Any]) -> Any:
        if name in self._failed:
            raise self._failed[name]
        if name not in self._parts:
            try:
                self._parts[name] = build()
            except DependencyFailed as exc:
                self._failed[name] = exc
                raise
            except SkipCheck:
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
        try:
            return len(ds)  # type: ignore[arg-type]
        except TypeError:
            raise SkipCheck(f"the {split} dataset has no len() (an IterableDataset); this check needs "
                            "a map-style dataset") from None

    @property
    def task(self) -> str:
        """'classification' or 'regression' (the recipe's, or inferred from the targets)."""
        return self._part("task", lambda: self.recipe.resolve_task(self.train))

    @property
    def classification(self) -> bool:
        return self.task == "classification"

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
        size = getattr(self.loaders[0], "batch_size", None)
        return int(size or self.recipe.batch_size)

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

    # ------------------------------------------------------------ model
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

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return self.recipe.optimizer(model.parameters())

    def forward(self, model: nn.Module, batch: Any) -> tuple[Any, Any]:
        """``recipe.forward(model, batch)`` -> (output, target)."""
        out = self.recipe.forward(model, batch)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"recipe.forward() must return (output, target); it returned {type(out).__name__}")
        return out[0], out[1]

    def loss(self, output: Any, target: Any) -> torch.Tensor:
        return self.recipe.loss(output, target)
