"""`case_study(recipe, model(s), dataset)`: the whole-set evaluation and the error analysis as one Report.

C3 whole-set numbers against the majority (or mean) baseline; C2 per-class metrics,
confusion matrix, worst cases, suspicious labels (confident learning, with the count chance
alone gives; danlu.evaluation.label_issues) and slices; C4 the ensemble of several models
against each member. Pictures go under `out_dir`/cases/ when an out_dir is given: the
confusion matrix, the residual histogram, and the worst and suspicious cases drawn as the
data kind calls for (images as a grid, sequences as line plots; feature vectors and token
ids stay in the table).

The functions take a recipe, models and a dataset, never the store, so they can be
used and tested without one; danlu.rebuild loads trained runs from the store for `danlu.cases`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from danlu.baseline import majority_baseline
from danlu.checks.audit.inputs import as_array, feature_axis, input_kind, split_item, to_chw
from danlu.evaluation.ensemble import ensemble_scores
from danlu.evaluation.label_issues import find_label_issues
from danlu.evaluation.metrics import confusion_matrix, per_class_metrics, residual_summary
from danlu.evaluation.predict import Predictions, predict
from danlu.evaluation.slices import MIN_SLICE, dataset_metadata, slices
from danlu.evaluation.worst import worst_cases
from danlu.plots import (
    PLOTS_MISSING,
    plotting_available,
    save_histogram,
    save_image_grid,
    save_matrix,
    save_series_grid,
)
from danlu.recipe import Recipe
from danlu.report import Finding, Report, Table

__all__ = ["case_study", "build_report", "predict_with_progress"]

_FULL_MATRIX = 12     # print the whole confusion matrix up to this many classes
_TABLE_CLASSES = 30
#: Suspicious labels warn when at least this many are very likely wrong (chance explains a tenth of them).
_SURE_WARN = 3


def case_study(
    recipe: Recipe,
    models: nn.Module | Sequence[nn.Module],
    dataset: Dataset,
    *,
    names: Sequence[str] | None = None,
    top_k: int = 10,
    out_dir: str | Path | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> Report:
    """Evaluate one model (or several, for C4) on every sample of `dataset` and study the errors."""
    models = [models] if isinstance(models, nn.Module) else list(models)
    names = list(names) if names else ([f"model {k + 1}" for k in range(len(models))] if len(models) > 1 else ["model"])
    preds = [predict_with_progress(recipe, m, dataset, device, progress, name) for m, name in zip(models, names)]
    return build_report(preds, names, dataset, top_k=top_k, out_dir=out_dir)


def predict_with_progress(recipe: Recipe, model: nn.Module, dataset: Dataset, device, progress: bool,
                          name: str) -> Predictions:
    """`predict` with a rich progress bar on stderr when `progress` is true."""
    if not progress:
        return predict(recipe, model, dataset, device=device)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from danlu.console import err_console

    with Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                  console=err_console, transient=True) as prog:
        task = prog.add_task(f"evaluating {name}", total=len(dataset))
        return predict(recipe, model, dataset, device=device, advance=lambda n: prog.advance(task, n))


def build_report(
    preds: list[Predictions],
    names: list[str],
    dataset: Dataset,
    *,
    top_k: int = 10,
    out_dir: str | Path | None = None,
    title: str | None = None,
    split: str = "validation",
) -> Report:
    """The case-study report of preds[0] (plus C4 when there are several members) on `split`
    ("validation", or "training" for out-of-fold predictions)."""
    p = preds[0]
    for other, name in zip(preds[1:], names[1:]):
        if len(other) != len(p) or not np.array_equal(other.targets, p.targets):
            raise ValueError(f"{name} was evaluated on other targets than {names[0]}: an ensemble needs the same "
                             "validation set for every member.")
    report = Report(kind="cases", title=title or f"case study of {names[0]} on {len(p):,} {split} samples")
    out = Path(out_dir) if out_dir is not None else None
    metadata = dataset_metadata(dataset)
    if p.task == "classification":
        probs = p.probs
        if len(preds) > 1 and all(o.probs is not None and o.probs.shape == p.probs.shape for o in preds):
            probs = np.mean([o.probs for o in preds], axis=0)   # out of sample for every member
        _classification(report, p, dataset, top_k, out, split)
        _suspicious(report, p, probs, dataset, top_k, out, members=len(preds))
    else:
        _regression(report, p, dataset, top_k, out, split)
    _slices(report, p, metadata)
    if len(preds) > 1:
        _ensemble(report, preds, names)
    report.meta = {"task": p.task, "samples": len(p), "members": names, "top_k": top_k,
                   "metadata_keys": sorted(metadata)}
    return report


# --------------------------------------------------------- classification
def _classification(report: Report, p: Predictions, dataset: Dataset, top_k: int, out: Path | None,
                    split: str) -> None:
    c = p.num_classes
    cm = confusion_matrix(p.targets, p.predicted, c)
    m = per_class_metrics(cm)
    train = p.train_targets if p.train_targets is not None else p.targets
    majority, base = majority_baseline(train, p.targets)
    beats = m.accuracy > base + 0.01
    report.findings.append(Finding(
        "C3", f"whole {split} set", "pass" if beats else "warn",
        f"accuracy {m.accuracy:.1%} on all {len(p):,} {split} samples (majority baseline {base:.1%}: always "
        f"class {majority}, the most common in {'training' if p.train_targets is not None else split}); "
        f"macro F1 {m.macro_f1:.3f}; mean loss {p.losses.mean():.4g}" + _recipe_metrics(p),
        evidence={"accuracy": m.accuracy, "macro_f1": m.macro_f1, "macro_precision": m.macro_precision,
                  "macro_recall": m.macro_recall, "loss": float(p.losses.mean()), "samples": len(p),
                  "majority_class": majority, "majority_baseline": base, "recipe_metrics": p.metrics or {}},
        cause="" if beats else "The model does no better than always predicting the most common class.",
        fix="" if beats else "Check the labels and the input pipeline (`danlu audit`, `danlu check`: S5 input "
                             "dependence), then train longer or with class weights (D1).",
    ))

    present = np.flatnonzero(m.support > 0)
    weak = [k for k in present if m.support[k] >= 5 and (m.recall[k] == 0 or m.f1[k] < 0.5 * m.macro_f1)]
    worst_k = int(present[np.argmin(m.f1[present])]) if len(present) else 0
    report.findings.append(Finding(
        "C2", "per-class metrics", "warn" if weak else "info",
        f"weakest class {worst_k}: F1 {m.f1[worst_k]:.3f} (precision {m.precision[worst_k]:.3f}, recall "
        f"{m.recall[worst_k]:.3f}, {m.support[worst_k]} samples); F1 ranges {m.f1[present].min():.3f}-"
        f"{m.f1[present].max():.3f}" + (f"; {len(weak)} class(es) far below the others: {weak[:10]}" if weak else ""),
        evidence={"precision": m.precision.tolist(), "recall": m.recall.tolist(), "f1": m.f1.tolist(),
                  "support": m.support.tolist(), "weak_classes": [int(k) for k in weak]},
        cause="Some classes are rarely or never recognised." if weak else "",
        fix="Look at those classes' worst cases and confusions; weight or resample them (D1, D7); get more "
            "examples of them." if weak else "",
    ))
    order = sorted(range(c), key=lambda k: (m.support[k] == 0, m.f1[k], k))[:_TABLE_CLASSES]
    report.tables.append(Table("C2 per-class metrics (weakest first)",
                               ["class", "support", "precision", "recall", "F1"],
                               [[k, int(m.support[k]), float(m.precision[k]), float(m.recall[k]), float(m.f1[k])]
                                for k in order]))

    off = cm.copy()
    np.fill_diagonal(off, 0)
    pairs = sorted(((int(off[i, j]), i, j) for i, j in zip(*np.nonzero(off))), key=lambda t: (-t[0], t[1], t[2]))
    images = []
    if out is not None and plotting_available():
        path, rel = _image(out, "confusion.png")
        save_matrix(cm, [str(k) for k in range(c)], path, title=f"confusion matrix ({len(p):,} {split} samples)")
        images.append(rel)
    top = ", ".join(f"{i}→{j} ({n})" for n, i, j in pairs[:3])
    report.findings.append(Finding(
        "C2", "confusion matrix", "info",
        (f"most confused (true→predicted): {top}" if pairs else "no confusions: every sample is right")
        + (f"; saved to {images[0]}" if images else ""),
        evidence={"matrix": cm.tolist(), "top_pairs": [[i, j, n] for n, i, j in pairs[:20]], "image": images[:1]},
    ))
    if c <= _FULL_MATRIX:
        report.tables.append(Table("C2 confusion matrix (rows: true class, columns: predicted)",
                                   ["true \\ pred"] + [str(k) for k in range(c)],
                                   [[k] + cm[k].tolist() for k in range(c)]))
    else:
        report.tables.append(Table("C2 most confused pairs", ["true", "predicted", "count"],
                                   [[i, j, n] for n, i, j in pairs[:20]]))
    report.images.extend(images)

    worst = worst_cases(p, top_k)
    _cases_finding(report, "worst cases", p, dataset, worst, out, "worst.png",
                   f"the {len(worst)} highest-loss samples: losses {p.losses[worst].max():.3g} down to "
                   f"{p.losses[worst].min():.3g}" if len(worst) else "no samples")



def _suspicious(report: Report, p: Predictions, probs: np.ndarray, dataset: Dataset, top_k: int,
                out: Path | None, members: int) -> None:
    """Suspicious labels by confident learning, against what the model's own uncertainty gives by chance."""
    issues = find_label_issues(probs, p.targets)
    shown = issues.indices[:top_k]
    n, sure = len(issues), issues.sure
    whose = f"the ensemble of {members}'s" if members > 1 else "the model's"
    if not n:
        summary = ("no label looks wrong: confident learning finds no sample placed in another class as "
                   "confidently as that class's own samples")
    elif sure:
        level = float(issues.self_confidence[sure - 1])
        summary = (f"{n} label(s) look doubtful by confident learning, chance explains about "
                   f"{min(issues.expected_by_chance, n):.0f} of them; the first {sure} (p(label) <= {level:.2g}) are "
                   f"very likely wrong (chance: {issues.chance[sure - 1]:.1f}); check first: {shown.tolist()}")
    else:
        summary = (f"{n} label(s) look doubtful by confident learning, but chance explains about "
                   f"{min(issues.expected_by_chance, n):.0f} of them ({whose} own uncertainty, calibrated): no clear "
                   f"sign of wrong labels; lowest p(label) first: {shown.tolist()}")
    _cases_finding(report, "suspicious labels", p, dataset, shown, out, "suspicious.png", summary,
                   extra={"candidates": issues.indices.tolist()[:1000],
                          "self_confidence": issues.self_confidence.tolist()[:1000],
                          "chance": [round(float(v), 3) for v in issues.chance[:1000]],
                          "expected_by_chance": issues.expected_by_chance, "very_likely_wrong": sure,
                          "temperature": issues.temperature, "method": "confident learning (prune by noise rate)",
                          "probabilities": "ensemble average" if members > 1 else "model"},
                   column=("p(label)", dict(zip(issues.indices.tolist(), issues.self_confidence.tolist()))),
                   status="warn" if sure >= _SURE_WARN else "info",
                   cause=f"{sure} labels are far less likely than the model's uncertainty explains." if sure >= _SURE_WARN
                   else "", fix="Look at the listed samples and correct their labels (the table and the grid show "
                   "them); relabel or drop, then retrain." if sure >= _SURE_WARN else "")


def _cases_finding(report: Report, name: str, p: Predictions, dataset: Dataset, idx: np.ndarray, out: Path | None,
                   image: str, summary: str, extra: dict | None = None,
                   column: tuple[str, dict] | None = None, status: str = "info", cause: str = "",
                   fix: str = "") -> None:
    rows = []
    for i in idx.tolist():
        row = [i, _value(p.targets[i]), _value(p.predicted[i])]
        if p.task == "classification":
            row += [float(p.confidence[i])]
        if column is not None:
            row += [round(float(column[1][i]), 4)]
        row += [float(p.losses[i]), _describe_input(dataset, i)]
        rows.append(row)
    columns = ["index", "target", "predicted"] + (["confidence"] if p.task == "classification" else []) \
        + ([column[0]] if column is not None else []) + ["loss", "input"]
    images = []
    if len(idx) and out is not None:
        view = _input_view(dataset, idx)
        if view is not None and plotting_available():
            path, rel = _image(out, image)
            titles = [f"#{i} y={_value(p.targets[i])} p={_value(p.predicted[i])}"
                      + (f" {p.confidence[i]:.2f}" if p.task == "classification" else "") for i in idx.tolist()]
            kind, arrays = view
            draw = save_image_grid if kind == "image" else save_series_grid
            draw(arrays, titles, path, title=f"{name} (input as the dataset returns it)",
                 colors=["#b00020"] * len(titles))
            images.append(rel)
    evidence = {"indices": idx.tolist(), **(extra or {}), "image": images[:1]}
    if out is not None and not plotting_available():
        evidence["note"] = PLOTS_MISSING
    report.findings.append(Finding("C2", name, status, summary + (f"; picture saved to {images[0]}" if images else ""),
                                   evidence=evidence, cause=cause, fix=fix))
    if rows:
        report.tables.append(Table(f"C2 {name}", columns, rows))
    report.images.extend(images)


# -------------------------------------------------------------- regression
def _regression(report: Report, p: Predictions, dataset: Dataset, top_k: int, out: Path | None,
                split: str) -> None:
    s = residual_summary(p.outputs, p.targets)
    beats = s["rmse"] < 0.99 * s["baseline_rmse"]
    report.findings.append(Finding(
        "C3", f"whole {split} set", "pass" if beats else "warn",
        f"MAE {s['mae']:.4g}, RMSE {s['rmse']:.4g}, R² {s['r2']:.3f} on all {s['n']:,} {split} samples "
        f"(predicting the mean: RMSE {s['baseline_rmse']:.4g})" + _recipe_metrics(p),
        evidence={**s, "recipe_metrics": p.metrics or {}},
        cause="" if beats else "The model does no better than predicting the mean of the targets.",
        fix="" if beats else "Check targets and inputs (`danlu audit`, `danlu check`), target scaling, and the loss.",
    ))
    resid = (np.asarray(p.outputs, np.float64) - np.asarray(p.targets, np.float64)).reshape(-1)
    biased = s["n"] >= 20 and abs(s["mean"]) > 0.5 * s["std"]
    images = []
    if out is not None and plotting_available():
        path, rel = _image(out, "residuals.png")
        save_histogram(resid, path, title="residuals (prediction - target)", xlabel="residual")
        images.append(rel)
    report.findings.append(Finding(
        "C2", "residuals", "warn" if biased else "info",
        f"residual mean {s['mean']:.4g} (bias), std {s['std']:.4g}; 90% within {s['p5']:.4g}..{s['p95']:.4g}"
        + (f"; histogram saved to {images[0]}" if images else ""),
        evidence={**s, "image": images[:1]},
        cause="Predictions are systematically off in one direction." if biased else "",
        fix="Check target scaling/offsets between train and validation and the output layer's bias." if biased else "",
    ))
    report.tables.append(Table("C2 residual quantiles", ["p1", "p5", "p25", "median", "p75", "p95", "p99"],
                               [[s["p1"], s["p5"], s["p25"], s["p50"], s["p75"], s["p95"], s["p99"]]]))
    report.images.extend(images)
    worst = worst_cases(p, top_k)
    _cases_finding(report, "worst cases", p, dataset, worst, out, "worst.png",
                   f"the {len(worst)} largest errors: losses {p.losses[worst].max():.4g} down to "
                   f"{p.losses[worst].min():.4g}" if len(worst) else "no samples")


# ------------------------------------------------------------------ slices
def _slices(report: Report, p: Predictions, metadata: dict[str, list]) -> None:
    found = slices(p, metadata)
    metric = "accuracy" if p.task == "classification" else "MAE"
    flagged = [s for s in found if s.flagged]
    groups = sorted({s.group for s in found})
    if not found:
        report.findings.append(Finding("C2", "slices", "skip", "no slices: no classes, lengths or metadata"))
        return
    w = found[0]
    summary = (f"weakest slice {w.name}: {metric} {w.score:.4g} over {w.n} samples; slices by "
               + ", ".join(groups))
    if flagged:
        summary = f"{len(flagged)} slice(s) clearly below the rest, weakest {w.name}: {metric} {w.score:.4g} " \
                  f"(n={w.n}); slices by " + ", ".join(groups)
    report.findings.append(Finding(
        "C2", "slices", "warn" if flagged else "info", summary,
        evidence={"metric": metric, "groups": groups,
                  "slices": [[s.group, s.name, s.n, s.score, s.loss, s.flagged] for s in found],
                  "min_slice": MIN_SLICE},
        cause="The aggregate number hides a group of samples the model fails on." if flagged else "",
        fix="Look at that slice's worst cases; collect or weight more of its samples; check its preprocessing."
        if flagged else "",
    ))
    report.tables.append(Table(f"C2 slices, weakest first ({metric})", ["slice", "n", metric, "loss", "flagged"],
                               [[s.name, s.n, s.score, s.loss, s.flagged] for s in found[:25]]))


# ---------------------------------------------------------------- ensemble
def _ensemble(report: Report, preds: list[Predictions], names: list[str]) -> None:
    scores = ensemble_scores(preds, names)
    members = scores[: len(preds)]
    combos = scores[len(preds):]
    if preds[0].task == "classification":
        best = max(members, key=lambda s: s.accuracy)
        text = ", ".join(f"{s.name} {s.accuracy:.1%}" for s in combos)
        summary = (f"ensemble of {len(preds)}: {text} vs best member {best.name} {best.accuracy:.1%} "
                   f"(worst {min(s.accuracy for s in members):.1%})")
        rows = [[s.name, s.accuracy, s.loss if np.isfinite(s.loss) else "-"] for s in scores]
        columns = ["model", "accuracy", "loss (NLL)"]
    else:
        best = min(members, key=lambda s: s.mae)
        text = ", ".join(f"{s.name} MAE {s.mae:.4g}" for s in combos)
        summary = f"ensemble of {len(preds)}: {text} vs best member {best.name} MAE {best.mae:.4g}"
        rows = [[s.name, s.mae, s.loss] for s in scores]
        columns = ["model", "MAE", "MSE"]
    report.findings.append(Finding(
        "C4", "ensemble", "info", summary,
        evidence={"scores": [s.__dict__ for s in scores]},
    ))
    report.tables.append(Table("C4 ensemble against each member", columns, rows))


# ----------------------------------------------------------------- helpers
def _image(out: Path, name: str) -> tuple[Path, str]:
    rel = f"cases/{name}"
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, rel


def _value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.round(4).tolist() if v.size <= 4 else f"array{tuple(v.shape)}"
    if isinstance(v, (np.floating, float)):
        return round(float(v), 4)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _describe_input(dataset: Dataset, i: int) -> str:
    """One short cell for the table, by data kind: image size, sequence shape and first values, ids."""
    try:
        x = split_item(dataset[i])[0]
    except Exception as exc:
        return f"<unreadable: {type(exc).__name__}>"
    if isinstance(x, str):
        return x if len(x) <= 60 else x[:57] + "..."
    a = as_array(x)
    if a is None:
        text = repr(x)
        return text if len(text) <= 60 else text[:57] + "..."
    kind = input_kind(a.shape, a.dtype)
    if kind == "image":
        return f"image {'x'.join(map(str, a.shape))}"
    flat = a.reshape(-1)
    head = ", ".join(f"{v:.3g}" if a.dtype.kind == "f" else str(v) for v in flat[:6])
    values = f"[{head}{', ...' if flat.size > 6 else ''}]"
    if kind == "sequence":
        return f"sequence {'x'.join(map(str, a.shape))} {values}"
    if kind == "tokens":
        return f"{a.shape[0]} tokens {values}"
    return values


def _input_view(dataset: Dataset, idx: np.ndarray) -> tuple[str, np.ndarray] | None:
    """The samples' inputs as a picture calls for them: ("image", (B, C, H, W)) for same-size images,
    ("sequence", (B, F, T)) for same-shape sequences; None for feature vectors, tokens and the rest."""
    arrays = []
    for i in idx.tolist():
        try:
            a = as_array(split_item(dataset[i])[0])
        except Exception:
            return None
        if a is None:
            return None
        arrays.append(a)
    if len({(a.shape, a.dtype.kind) for a in arrays}) != 1:
        return None
    kind = input_kind(arrays[0].shape, arrays[0].dtype)
    batch = np.stack(arrays)
    if kind == "image":
        return "image", to_chw(batch)
    if kind == "sequence":
        return "sequence", batch if feature_axis(arrays[0].shape) == 0 else np.swapaxes(batch, 1, 2)
    return None


def _recipe_metrics(p: Predictions) -> str:
    """The recipe's own metrics on the whole set, as the run's summary records them (val_<name>)."""
    if not p.metrics:
        return ""
    return "; the recipe's metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in p.metrics.items())
