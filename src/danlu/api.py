"""The public functions every command calls: a notebook gets exactly what the terminal gets.

    import danlu
    report = danlu.check(MyRecipe())              # `danlu check`   -> Report
    report = danlu.audit(MyRecipe())              # `danlu audit`   -> Report
    result = danlu.fit(MyRecipe())                # `danlu train`   -> FitResult
    report = danlu.diagnose("last")               # `danlu diagnose`-> Report
    report = danlu.cases("last")                  # `danlu cases`   -> Report
    report = danlu.lr_find(MyRecipe())            # `danlu lr`      -> Report
    result = danlu.reproduce("last")              # `danlu reproduce` -> Reproduction
    delta  = danlu.diff("run-a", "run-b")         # `danlu diff`    -> RunDiff

A recipe is a `danlu.Recipe` instance, or a file spec ('path.py' or 'path.py:Class')
with `overrides` ({'lr': '1e-3'}). Runs are named as on the command line: an id, a
unique id prefix, a name, or 'last'. Reports are kept in the store (`store`: a Store,
a folder, or None for $DANLU_HOME / ./.danlu) unless `save=False`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from danlu.errors import DanluError
from danlu.recipe import Recipe
from danlu.report import Report
from danlu.store.base import Store

__all__ = ["check", "audit", "cases", "diagnose", "lr_find", "study", "reproduce", "diff", "Reproduction", "import_logs",
           "export_runs", "located",
           "as_recipe", "as_store", "as_overrides", "compare_series"]

StoreLike = Store | str | Path | None


def as_store(store: StoreLike, create: bool = True) -> Store:
    """A Store from a Store, a folder path, or None (the default store)."""
    from danlu.store import open_store

    return store if isinstance(store, Store) else open_store(store, create=create)


def located(report: Report, store: StoreLike) -> Report:
    """Tell the report where its pictures are (its run's folder), so a notebook shows them inline."""
    run_id = report.meta.get("run_id")
    if run_id and report.folder is None:
        try:
            report.folder = str(as_store(store, create=False).run_dir(run_id, create=False))
        except DanluError:  # no store there: the report still renders, without its pictures
            pass
    return report


def as_recipe(recipe: Any, overrides: Mapping[str, str] | Sequence[str] | None = None,
              datamodule: Any = None) -> Recipe:
    """A recipe instance from an instance, a file spec with command-line style overrides, or
    another framework's set-up: a LightningModule (with `datamodule`), a transformers Trainer,
    or 'file.py:Name' naming a LightningModule class or a function that builds one of those."""
    from danlu.integrations.recipes import foreign_recipe, load_foreign
    from danlu.recipe import Recipe, import_recipe_file, recipe_class_in

    if isinstance(recipe, Recipe):
        if overrides or datamodule is not None:
            raise DanluError("overrides apply to a recipe file; for a Recipe instance, pass the hyperparameters "
                             "to its constructor, e.g. MyRecipe(lr=1e-3).")
        return recipe
    if not isinstance(recipe, (str, Path)):
        if overrides:
            raise DanluError("overrides apply to a file spec; build the object with the values you want")
        found = foreign_recipe(recipe, datamodule)
        if found is None:
            raise DanluError(f"danlu cannot check a {type(recipe).__name__}: give a Recipe, a recipe file, a "
                             "LightningModule (with its datamodule) or a transformers Trainer")
        return found
    module, _, name = import_recipe_file(recipe)
    named = getattr(module, name, None) if name else None
    if datamodule is not None or (named is not None and not (isinstance(named, type) and issubclass(named, Recipe))):
        return load_foreign(module, str(recipe), as_overrides(overrides), datamodule)
    return recipe_class_in(module, recipe).from_strings(as_overrides(overrides))


def as_overrides(overrides: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """{'lr': '1e-3'} from a mapping or from ['lr=1e-3', ...] as typed on the command line."""
    from danlu.recipe import parse_overrides

    if isinstance(overrides, (list, tuple)):
        return parse_overrides(list(overrides))
    return dict(overrides or {})  # type: ignore[arg-type]  # a Mapping here: sequences were parsed above


# ------------------------------------------------------------------ checks
def check(
    recipe: Any,
    datamodule: Any = None,
    *,
    overrides: Mapping[str, str] | Sequence[str] | None = None,
    only: str | Iterable[str] | None = None,
    skip: str | Iterable[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = False,
    store: StoreLike = None,
    save: bool = True,
) -> Report:
    """The doctor's preflight checks (S1-S13, D4, D7) on a recipe; the report is kept as a
    run of kind "check" (its id in ``report.meta["run_id"]``) unless `save` is false.

    `recipe` may also be a LightningModule (its data from `datamodule`, an object or
    'file.py:Class'), a transformers Trainer, or 'file.py:Name' naming either's builder:
    their own training step is checked (see :mod:`danlu.integrations.recipes`)."""
    from danlu.checks import run_checks
    from danlu.track import keep_report

    recipe = as_recipe(recipe, overrides, datamodule)
    with tempfile.TemporaryDirectory(prefix="danlu-check-") as tmp:
        report = run_checks(recipe, "doctor", only=only, skip=skip, settings=settings, device=device,
                            out_dir=tmp if save else None, progress=progress)
        if save:
            keep_report(report, store=as_store(store), recipe=recipe, tags=["check"], image_root=tmp)
    return located(report, store) if save else report


def audit(
    recipe: Recipe | str | Path | None = None,
    *,
    overrides: Mapping[str, str] | Sequence[str] | None = None,
    run: str | None = None,
    limit: int | None = None,
    only: str | Iterable[str] | None = None,
    skip: str | Iterable[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    progress: bool = False,
    store: StoreLike = None,
    save: bool = True,
) -> Report:
    """The data audit (D1-D8) of a recipe, kept as a run of kind "audit", or attached to `run`
    (whose recipe is audited when `recipe` is not given). `limit` reads at most that many
    items per split (a seeded sample)."""
    from danlu.checks import run_checks
    from danlu.rebuild import recipe_from_run
    from danlu.track import keep_report

    if limit is not None and limit < 1:
        raise DanluError(f"limit must be a positive number of samples, got {limit}.")
    target = None
    if run is not None:
        the_store = as_store(store)
        record = the_store.get_run(run)
        target = record.id
        if recipe is None:
            items = dict(as_overrides(overrides))
            recipe = recipe_from_run(the_store, record, overrides=items or None)
            overrides = None
    if recipe is None:
        raise DanluError("audit needs a recipe (a Recipe or a file, e.g. 'examples/digits.py') or a run.")
    recipe = as_recipe(recipe, overrides)
    with tempfile.TemporaryDirectory(prefix="danlu-audit-") as tmp:
        report = run_checks(recipe, "audit", only=only, skip=skip, settings=settings, scan_limit=limit,
                            out_dir=tmp if save else None, progress=progress)
        if save:
            keep_report(report, store=as_store(store), run=target, recipe=recipe, image_root=tmp)
    return located(report, store) if save else report


# ------------------------------------------------------------------ runs
def diagnose(run: str = "last", *, store: StoreLike = None, baseline_loss: float | None = None,
             save: bool = True, plot: bool = True) -> Report:
    """Read a run's curves into a regime with evidence and the fix (T2-T4); kept with the run."""
    from danlu.curves.diagnosis import diagnose_run

    return located(diagnose_run(as_store(store, create=False), run, baseline_loss=baseline_loss, save=save,
                                plot=plot), store)


def cases(
    runs: str | Sequence[str] = "last",
    *,
    top: int = 10,
    split: str = "val",
    folds: int = 3,
    device: str | None = None,
    progress: bool = False,
    store: StoreLike = None,
    save: bool = True,
) -> Report:
    """Case study of a trained run on its whole validation set (C2, C3), and with several runs
    the ensemble against each member (C4); kept with the first run.

    split="train" studies the training split instead, with out-of-sample predictions: `folds`
    models of the run's recipe, each trained without one fold (stored as runs tagged
    "out-of-fold"), so suspicious labels in the training data can be found (C2).
    """
    import torch

    from danlu.baseline import dataset_targets
    from danlu.evaluation.case_study import build_report, predict_with_progress
    from danlu.evaluation.out_of_fold import out_of_fold
    from danlu.rebuild import load_trained
    from danlu.track import keep_report

    if top < 1:
        raise DanluError(f"top must be at least 1, got {top}.")
    if split not in ("val", "train"):
        raise DanluError(f"split must be 'val' or 'train', got {split!r}.")
    refs = [runs] if isinstance(runs, str) else list(runs)
    if split == "train" and len(refs) != 1:
        raise DanluError("The training split is studied for one run at a time (its out-of-fold models are "
                         "trained from that run's recipe); name one run.")
    the_store = as_store(store, create=False)
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = [load_trained(the_store, ref, device="cpu") for ref in refs]
    if len({r.record.id for r in loaded}) != len(loaded):
        raise DanluError("The same run is named twice; an ensemble needs different runs.")
    first = loaded[0].record
    fold_runs: list[str] = []
    if split == "train":
        pred, data, fold_runs = out_of_fold(loaded[0].recipe, the_store, folds=folds, parent=first.id,
                                            name=f"{first.name}-oof", device=dev, progress=progress)
        preds, names = [pred], [first.name]
        title = (f"case study of {first.name} ({first.id}) on its {len(pred):,} training samples, each predicted "
                 f"by one of {folds} models trained without it")
    else:
        preds, names, data = [], [], None
        for run in loaded:
            train, val_k = run.recipe.data()
            run.recipe.resolve_task(train)
            preds.append(predict_with_progress(run.recipe, run.model, val_k, dev, progress, run.record.name))
            targets = dataset_targets(train)
            preds[-1].train_targets = targets.numpy() if targets is not None else None
            names.append(run.record.name)
            data = data if data is not None else val_k
            if len(preds[-1]) != len(preds[0]) or (preds[-1].targets != preds[0].targets).any():
                raise DanluError(f"Run {names[-1]} was validated on other data than {names[0]}; an ensemble (C4) "
                                 "needs runs of the same validation set.")
        title = (f"case study of {first.name} ({first.id}) on {len(preds[0]):,} validation samples"
                 + (f", with an ensemble of {len(preds)} runs" if len(preds) > 1 else ""))
    assert data is not None
    with tempfile.TemporaryDirectory(prefix="danlu-cases-") as tmp:
        report = build_report(preds, names, data, top_k=top, out_dir=tmp, title=title,
                              split="training" if split == "train" else "validation")
        report.meta["runs"] = [r.record.id for r in loaded]
        report.meta["checkpoints"] = [str(r.checkpoint) for r in loaded]
        report.meta["split"] = split
        if fold_runs:
            report.meta["fold_runs"] = fold_runs
        if save:
            keep_report(report, store=the_store, run=first.id, image_root=tmp)
    return located(report, the_store) if save else report


def lr_find(
    recipe: Recipe | str | Path,
    *,
    overrides: Mapping[str, str] | Sequence[str] | None = None,
    scan: bool = False,
    lrs: Sequence[float] | None = None,
    steps: int | None = None,
    start: float = 1e-7,
    end: float = 10.0,
    ref: str | None = None,
    scale_only: bool = False,
    device: str = "auto",
    progress: bool = False,
    store: StoreLike = None,
    save: bool = True,
) -> Report:
    """Find a learning rate (T4, T6): the range test (default, leaves no trace), or with `scan`
    short real runs at a few LRs; with `ref`, also the reference run's LR rescaled to this
    recipe's batch size. Kept as a run of kind "lr" unless `save` is false."""
    from danlu.lr import DEFAULT_SCAN_LRS, batch_scaling_finding, lr_range_test, lr_scan
    from danlu.track import keep_report, open_tool_run

    recipe = as_recipe(recipe, overrides)
    if scale_only and not ref:
        raise DanluError("scale_only rescales a reference run's LR; name the reference run (ref=RUN).")
    the_store = as_store(store) if (save or scan or ref) else None
    run = open_tool_run(the_store, "lr", recipe, note="LR scan" if scan else "LR range test") if save else None
    try:
        if scale_only:
            report = Report(kind="lr", title="LR for a new batch size")
        elif scan:
            report = lr_scan(recipe, lrs or DEFAULT_SCAN_LRS, steps=steps, store=the_store, device=device,
                             parent=run.id if run else None, progress=progress)
        else:
            plot = run.dir / "lr_range.png" if run else None
            report = lr_range_test(recipe, device=device, start=start, end=end, steps=steps or 100,
                                   plot_path=plot)
        if ref:
            assert the_store is not None
            reference = the_store.get_run(ref)
            if "lr" not in reference.config or "batch_size" not in reference.config:
                raise DanluError(f"Run {reference.name} ({reference.id}) has no lr and batch_size in its config; "
                                 "pick a run made by `danlu train` (or logged with both in its config).")
            report.findings.append(batch_scaling_finding(float(reference.config["lr"]),
                                                         int(reference.config["batch_size"]),
                                                         int(recipe.batch_size), ref_name=f"run {reference.name}"))
    except BaseException as exc:
        if run is not None:
            run.finish("failed", {"error": f"{type(exc).__name__}: {exc}"})
        raise
    if run is not None:
        summary = {k: report.meta[k] for k in ("suggestion", "confidence", "best_lr") if report.meta.get(k) is not None}
        keep_report(report, run=run, summary=summary)
    return located(report, run.store) if run is not None else report


@dataclass
class Reproduction:
    """A re-run of a recorded run from its code snapshot, compared point by point (E1, S11)."""

    recorded: str                                   # run id of the original
    new: str                                        # run id of the re-run
    tolerance: float
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    fit: Any = None                                 # the re-run's FitResult

    @property
    def max_deviation(self) -> float:
        return max((c["max_deviation"] for c in self.series.values()), default=math.inf)

    @property
    def unmatched(self) -> int:
        return sum(c["only_recorded"] + c["only_new"] for c in self.series.values())

    @property
    def reproduced(self) -> bool:
        return bool(self.series) and self.max_deviation <= self.tolerance and self.unmatched == 0

    def to_dict(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "new": self.new, "max_deviation": self.max_deviation,
                "reproduced": self.reproduced, "tolerance": self.tolerance, "series": self.series}


def compare_series(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Point-by-point comparison of two (steps, values) series on their common steps."""
    (sa, va), (sb, vb) = a, b
    common, ia, ib = np.intersect1d(sa, sb, return_indices=True)
    x, y = va[ia], vb[ib]
    both_nan = np.isnan(x) & np.isnan(y)
    dev = np.where(both_nan, 0.0, np.abs(x - y))
    dev = np.where(np.isnan(dev), math.inf, dev)
    out: dict[str, Any] = {"points": int(len(common)), "only_recorded": int(len(sa) - len(common)),
           "only_new": int(len(sb) - len(common)), "max_deviation": float(dev.max()) if len(dev) else 0.0}
    bad = np.nonzero(dev > 0)[0]
    out["first_different_step"] = int(common[bad[0]]) if len(bad) else None
    return out


def reproduce(run: str, *, store: StoreLike = None, tolerance: float = 0.0, device: str = "auto",
              progress: bool = False) -> Reproduction:
    """Re-run a recorded run with its own code snapshot, hyperparameters and seed, then compare
    every logged point of the new run with the recorded one (0 tolerance: bit-identical)."""
    from danlu.engine import fit
    from danlu.monitor import RESOURCE_PREFIX
    from danlu.rebuild import recipe_from_run

    the_store = as_store(store, create=False)
    record = the_store.get_run(run)
    recipe = recipe_from_run(the_store, record, from_snapshot=True)
    result = fit(recipe, store=the_store, note=f"reproduction of {record.name}", tags=["reproduce"],
                 device=device, progress=progress, parent=record.id)
    out = Reproduction(record.id, result.run_id, tolerance, fit=result)
    new_series = set(the_store.series_names(result.run_id))
    for name in the_store.series_names(record.id):
        if name.startswith(RESOURCE_PREFIX):  # CPU, memory, data wait: measurements of the machine, not results
            continue
        if name in new_series:
            out.series[name] = compare_series(the_store.read_series(record.id, name),
                                              the_store.read_series(result.run_id, name))
    return out


def diff(run_a: str, run_b: str, *, store: StoreLike = None):
    """What differs between two runs: hyperparameters, code, environment, data, outcome (E1, E4)."""
    from danlu.repro.diff import diff_runs

    the_store = as_store(store, create=False)
    return diff_runs(the_store, the_store.get_run(run_a), the_store.get_run(run_b))


def import_logs(path: str | Path, format: str = "tensorboard", *, store: StoreLike = None,
                name: str | None = None, tags: Sequence[str] = ()):
    """Read TensorBoard event files, Lightning CSV logs or JSON lines into runs (one per source
    folder or file), so diagnose, runs, diff and the dashboard work on them; returns what each became."""
    from danlu.integrations import import_logs as run_import

    return run_import(as_store(store), path, format, name=name, tags=tags)


def export_runs(runs: Sequence[str], format: str, out: str | Path, *, store: StoreLike = None) -> list[Path]:
    """Write runs' curves and hyperparameters as TensorBoard event files, CSV, JSON lines or Parquet."""
    from danlu.integrations import export_runs as run_export

    return run_export(as_store(store, create=False), list(runs), format, out)


def study(recipe: str | Path, vary: Sequence[str], *, fixed: Mapping[str, str] | None = None, trials: int = 16,
          mode: str = "tune", prune: str = "asha", workers: int = 1, name: str | None = None, seed: int = 0,
          store: StoreLike = None, **options: Any) -> Report:
    """`danlu study`: which hyperparameters matter, then the best (H1-H6). `recipe` is a file
    ("examples/digits.py" or "path.py:Class": trials rebuild it, in other processes too);
    `vary` the --vary tokens ("lr=1e-4..1e-1:log"); other options as `danlu.tuning.study.new_study`
    takes them (min_resource, stages, stage_on, keep, scientific, storage, device, source).
    Returns the study's Report, kept as a run of kind "study"."""
    from danlu.tuning.executors import get_executor
    from danlu.tuning.study import new_study

    the_store = as_store(store)
    created = new_study(the_store, str(recipe), list(vary), fixed=dict(fixed or {}), trials=trials, name=name,
                        mode=mode, prune=prune, seed=seed, **options)
    report = created.run(get_executor(workers), workers)
    report.meta.setdefault("run_id", created.run_id)
    return located(report, the_store)
