"""Planted-problem datasets and recipes for the audit tests (each check: one that fires, one that stays quiet)."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import danlu
from danlu.store.base import ReportRecord, RunRecord, Store


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8 in [0, 1]
    return x, torch.tensor(d.target, dtype=torch.int64)


def digits(n_train: int = 600, n_val: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint random train/val subsets of sklearn digits: (x_train, y_train, x_val, y_val) (a clean dataset)."""
    x, y = _digits()
    order = torch.as_tensor(np.random.RandomState(seed).permutation(len(y)))
    tr, va = order[:n_train], order[n_train: n_train + n_val]
    return x[tr].clone(), y[tr].clone(), x[va].clone(), y[va].clone()


class ItemDataset(Dataset):
    """Items one by one from a list; an Exception in the list is raised when that index is read."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        if isinstance(item, Exception):
            raise item
        return item


class RandomFlip(Dataset):
    """Wraps a TensorDataset and flips each image horizontally at random (augmentation)."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x + 0.01 * torch.randn_like(x), y


def linear(in_features: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))


def recipe(train: Dataset, val: Dataset, model=None, **class_attrs) -> danlu.Recipe:
    """A recipe instance whose data() returns these datasets; model() builds `model()` when given."""

    def data(self):
        return train, val

    def build(self):
        if model is None:
            raise NotImplementedError("this test recipe has no model")
        return model()

    attrs = {"data": data, "model": build, "__annotations__": {"batch_size": "int"}, "batch_size": 32}
    attrs.update(class_attrs)
    cls = type("Planted", (danlu.Recipe,), attrs)
    return cls()


class MemoryStore(Store):
    """The Store interface in memory (plus a real folder for artefacts), for tests of the CLI glue."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs: dict[str, RunRecord] = {}
        self.reports: list[ReportRecord] = []

    def create_run(self, *, name=None, kind="train", recipe=None, config=None, note="", tags=(), command="",
                   parent=None):
        rid = f"r{len(self.runs) + 1:04d}"
        self.runs[rid] = RunRecord(id=rid, name=name or rid, kind=kind, recipe=recipe, config=dict(config or {}),
                                   note=note, tags=list(tags), command=command, created=time.time())
        return self.runs[rid]

    def update_run(self, run_id, **fields):
        for k, v in fields.items():
            setattr(self.runs[run_id], k, v)

    def set_tags(self, run_id, add=(), remove=()):
        raise NotImplementedError

    def get_run(self, ref):
        return self.runs[ref]

    def list_runs(self, **kw):
        return list(self.runs.values())

    def log_points(self, run_id, points):
        raise NotImplementedError

    def series_names(self, run_id):
        return []

    def read_series(self, run_id, name, start=None, end=None):
        raise NotImplementedError

    def save_report(self, run_id, kind, data):
        self.reports.append(ReportRecord(len(self.reports) + 1, run_id, kind, time.time(), data))
        return len(self.reports)

    def list_reports(self, run_id=None, kind=None):
        return [r for r in self.reports if (run_id is None or r.run_id == run_id) and (kind is None or r.kind == kind)]

    def get_report(self, report_id):
        return self.reports[report_id - 1]


def audit(recipe, *, only=None, limit=None, out_dir=None, progress=False, settings=None):
    """The audit family on a recipe without keeping the report (what danlu.audit runs before saving)."""
    from danlu.checks import run_checks

    return run_checks(recipe, "audit", only=only, scan_limit=limit, out_dir=out_dir, progress=progress,
                      settings=settings)
