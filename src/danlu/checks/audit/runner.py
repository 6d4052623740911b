"""`audit(recipe)`: read the recipe's data once, run every registered check, return one Report.

Order of work: build the datasets; pick the items (all, or a seeded `limit` sample per
split); scan each split once (danlu.checks.audit.scan) with a progress bar; settle the task
and the number of classes; run the checks (danlu.checks.audit.checks), each isolated so a
crash in one is a finding, not the end of the audit.
"""

from __future__ import annotations

import random
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, Subset

from danlu.checks.audit.base import AuditContext, registered_checks
from danlu.checks.audit.scan import SplitScan, describe_error, scan_split
from danlu.errors import RecipeError
from danlu.recipe import Recipe
from danlu.report import Finding, Report

__all__ = ["audit", "NEAR_MAX"]

#: Near-duplicate search looks at most this many samples per split (a seeded random sample).
NEAR_MAX = 10_000


def audit(
    recipe: Recipe,
    limit: int | None = None,
    progress: bool = True,
    *,
    out_dir: str | Path | None = None,
    only: list[str] | None = None,
) -> Report:
    """Audit a recipe's training and validation data (practices D1-D8) and return the report.

    limit: read at most this many items per split (a seeded random sample) for large data.
    out_dir: folder for images (the sample grid); paths in the report are relative to it.
    only: practice IDs of the checks to run (default: all).
    """
    if limit is not None and limit < 1:
        raise RecipeError(f"--limit must be a positive number of samples, got {limit}.")
    started = time.perf_counter()
    _seed(recipe.seed)
    try:
        train, val = recipe.data()
    except RecipeError:
        raise
    except Exception as exc:
        raise RecipeError(f"{type(recipe).__name__}.data() failed: {describe_error(exc)}") from exc

    for name, ds in (("training", train), ("validation", val)):
        if isinstance(ds, IterableDataset) or not hasattr(ds, "__len__"):
            raise RecipeError(f"The audit reads map-style datasets (with __len__ and __getitem__); the {name} set of "
                              f"{type(recipe).__name__} is a {type(ds).__name__}. Audit a map-style version of it.")
    with _progress(progress) as bar:
        rng = np.random.default_rng(recipe.seed)
        scans: dict[str, SplitScan] = {}
        for name, ds in (("train", train), ("val", val)):
            size = len(ds)
            idx = np.arange(size) if limit is None or limit >= size else np.sort(rng.choice(size, limit, replace=False))
            mask = np.zeros(len(idx), dtype=bool)
            mask[rng.choice(len(idx), min(NEAR_MAX, len(idx)), replace=False)] = True
            scans[name] = scan_split(name, ds, idx, embed_mask=mask, advance=bar(f"reading {name}", len(idx)))
        task = _task(recipe, scans["train"])
        ctx = AuditContext(recipe=recipe, train=train, val=val, scans=scans, task=task, limit=limit,
                           out_dir=Path(out_dir) if out_dir is not None else None, progress=bar)
        if task == "classification":
            _settle_classes(ctx)

        report = Report(kind="audit", title=f"data audit of {type(recipe).__name__}")
        checks = registered_checks(only)
        advance = bar("checks", len(checks))
        for check in checks:
            t0 = time.perf_counter()
            try:
                result = check.run(ctx)
            except Exception as exc:
                result = None
                report.findings.append(Finding(
                    check.id, check.name, "warn", f"the check crashed: {describe_error(exc)}",
                    details="".join(traceback.format_exception(exc)[-6:]),
                    cause="A bug in the audit, or data it does not understand.",
                    fix="Report it with the traceback; the other checks ran.",
                ))
            if result is not None:
                for f in result.findings:
                    f.seconds = round(time.perf_counter() - t0, 4)
                report.findings.extend(result.findings)
                report.tables.extend(result.tables)
                report.images.extend(result.images)
            advance(1)

    report.meta = {
        "recipe": getattr(type(recipe), "__danlu_spec__", type(recipe).__name__),
        "hparams": recipe.hparams(),
        "task": task,
        "num_classes": ctx.num_classes,
        "num_classes_from": ctx.classes_source,
        "limit": limit,
        "sizes": {name: {"size": s.size, "audited": s.n, "seconds": round(s.seconds, 4)} for name, s in scans.items()},
        "seconds": round(time.perf_counter() - started, 3),
    }
    return report


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _task(recipe: Recipe, train: SplitScan) -> str | None:
    """The recipe's declared task, else the one its training targets imply (None when unknown)."""
    if recipe.task is not None:
        return recipe.resolve_task(None)  # validates the declared value
    scalar = train.ok & ~np.isnan(train.target)
    if not scalar.any():
        return None
    task = "classification" if train.target_int[scalar].mean() >= 0.5 else "regression"
    recipe.task = task  # the recipe's loss and metrics read it, as they do under the engine
    return task


def _settle_classes(ctx: AuditContext) -> None:
    """Number of classes: the model's output size, else the recipe's declared count, else the labels."""
    declared = _declared_classes(ctx.recipe)
    from_model, why = _model_classes(ctx)
    if from_model is not None:
        ctx.num_classes, ctx.classes_source = from_model, "the model's output size"
        if declared is not None and declared != from_model:
            ctx.class_notes.append(
                f"the model has {from_model} outputs but the recipe declares {declared} classes")
    elif declared is not None:
        ctx.num_classes, ctx.classes_source = declared, "the recipe's declared number of classes"
    else:
        labels = [s.labels()[1] for s in ctx.scans.values()]
        top = max((int(a.max()) for a in labels if len(a)), default=-1)
        ctx.num_classes = None
        ctx.classes_source = f"the labels (max label {top}; model output not available: {why})"


def _declared_classes(recipe: Recipe) -> int | None:
    for name in ("num_classes", "n_classes"):
        value = getattr(recipe, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    classes = getattr(recipe, "classes", None)
    if isinstance(classes, (list, tuple)) and classes:
        return len(classes)
    return None


def _model_classes(ctx: AuditContext) -> tuple[int | None, str]:
    """The class dimension of the model's output on one training item (eval mode, no grad)."""
    scan = ctx.scans["train"]
    good = np.setdiff1d(np.flatnonzero(scan.ok), scan.bad_positions)
    if not len(good):
        return None, "no readable training item"
    try:
        loader = ctx.recipe.loaders(Subset(ctx.train, [int(scan.indices[good[0]])]), ctx.val)[0]
        batch = next(iter(loader))
        model = ctx.recipe.model()
        model.eval()
        with torch.no_grad():
            out, _ = ctx.recipe.forward(model, batch)
    except Exception as exc:
        return None, describe_error(exc)
    if not isinstance(out, torch.Tensor) or out.ndim < 2:
        return None, "the model's output has no class dimension"
    c = int(out.shape[1])
    return (2 if c == 1 else c), ""


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], Any]]]:
    """Yields bar(description, total) -> advance(n); rich bars on stderr, or no-ops."""
    if not enabled:
        yield lambda description, total: (lambda n: None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from danlu.console import err_console

    with Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as prog:
        def bar(description: str, total: int) -> Callable[[int], None]:
            task = prog.add_task(description, total=max(total, 1))
            return lambda n: prog.advance(task, n)

        yield bar
