"""D1: class distribution, imbalance, and the majority-class baseline (targets, for regression)."""

from __future__ import annotations

import numpy as np

from danlu.baseline import majority_baseline
from danlu.checks.base import Check, CheckResult, SkipCheck, register
from danlu.checks.context import Context
from danlu.report import Finding, Table

__all__ = ["ClassBalance", "class_counts", "class_weights", "IMBALANCE_RATIO", "SHIFT_TV"]

IMBALANCE_RATIO = 3.0
SHIFT_TV = 0.15
_TABLE_ROWS = 30


def class_counts(labels: np.ndarray, classes: list[int]) -> np.ndarray:
    """Count of each class in `classes` among `labels` (labels outside are ignored)."""
    lookup = {c: k for k, c in enumerate(classes)}
    counts = np.zeros(len(classes), dtype=np.int64)
    for value, n in zip(*np.unique(labels, return_counts=True)):
        if int(value) in lookup:
            counts[lookup[int(value)]] = n
    return counts


def class_weights(counts: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights N / (C * n_c), the 'balanced' weighting; 0 for absent classes."""
    total, c = counts.sum(), len(counts)
    return np.where(counts > 0, total / (c * np.maximum(counts, 1)), 0.0)


@register
class ClassBalance(Check):
    """Class distribution, imbalance, and the majority-class baseline (targets, for regression).

    Detects: Class counts per split, the imbalance ratio (largest / smallest class in
    training), classes missing from a split, class proportions that differ between the
    splits, and the accuracy of always predicting the training set's majority class. For
    regression: the target distribution and the error of always predicting the training
    mean.
    Why: 90% accuracy on a 9:1 split is the baseline, not a result (002, 000, 003). A
    class absent from validation is never evaluated; absent from training, never
    learned.
    How: From the integer scalar targets read by the scan.
    Thresholds: Imbalance ratio above IMBALANCE_RATIO (3) warns; a missing class warns;
    a total variation distance between the splits' class proportions above SHIFT_TV
    (0.15) warns when validation has at least 10 samples per class.
    Fix: Class weights in the loss or a WeightedRandomSampler (D7), both given ready to
    paste; a stratified split for missing classes or shifted proportions.
    Cannot see: labels that are in range but wrong (C2's suspicious labels); imbalance
    inside a class (subgroups: C2's slices); targets that are not integer scalars
    (multi-label, dicts) get no class statistics.
    """

    id = "D1"
    families = ("audit",)
    name = "class balance"

    def run(self, ctx: Context) -> CheckResult:
        if ctx.task_or_none == "regression":
            return self._regression(ctx)
        if ctx.task_or_none != "classification":
            raise SkipCheck("the task is unknown (targets are neither integer nor float scalars)")
        labels = {split: scan.labels()[1] for split, scan in ctx.scans.items()}
        if not len(labels["train"]):
            raise SkipCheck("no integer scalar targets in the training split")
        if ctx.num_classes is not None:
            classes = list(range(ctx.num_classes))
        else:
            classes = sorted({int(v) for arr in labels.values() for v in np.unique(arr) if v >= 0})
        counts = {split: class_counts(arr, classes) for split, arr in labels.items()}
        tr = counts["train"]
        present = tr[tr > 0]
        ratio = float(present.max() / present.min()) if len(present) else float("nan")
        majority, base_val = majority_baseline(labels["train"], labels["val"])
        base_train = float(np.mean(labels["train"] == majority))
        seen = {c for cnt in counts.values() for c, n in zip(classes, cnt) if n > 0}
        unused = [c for c in classes if c not in seen]  # e.g. a head wider than the label set
        missing = {split: [c for c, n in zip(classes, cnt) if n == 0 and c in seen] for split, cnt in counts.items()}
        out = CheckResult()

        rows = []
        shown = [k for k, c in enumerate(classes) if c in seen]
        title = "D1 class counts" + ctx.scans["train"].sample_note()
        if len(shown) > _TABLE_ROWS:  # many classes: the rarest and the most common in train
            by_count = sorted(shown, key=lambda k: (tr[k], classes[k]))
            half = _TABLE_ROWS // 2
            shown = by_count[:half] + by_count[-half:]
            title += f" ({half} rarest and {half} most common of {len(seen)} classes)"
        for k in shown:
            c = classes[k]
            row = [c]
            for split in ctx.scans:
                n = int(counts[split][k])
                row += [n, f"{n / max(counts[split].sum(), 1):.1%}"]
            rows.append(row)
        columns = ["class"] + [h for split in ctx.scans for h in (split, f"{split} %")]
        out.tables.append(Table(title, columns, rows))

        weights = class_weights(tr)
        w_text = "[" + ", ".join(f"{w:.3g}" for w in weights) + "]"
        evidence = {
            "classes": classes,
            "counts": {s: c.tolist() for s, c in counts.items()},
            "imbalance_ratio": ratio,
            "majority_class": majority,
            "majority_baseline_val": base_val,
            "majority_baseline_train": base_train,
            "missing": missing,
            "class_weights": weights.tolist(),
            "num_classes_from": ctx.classes[1],
        }
        problems, fixes = [], []
        if ratio > IMBALANCE_RATIO:
            problems.append(f"imbalanced {ratio:.1f}:1 (largest/smallest class in train)")
            fixes.append(
                f"weight the loss: `F.cross_entropy(out, y, weight=torch.tensor({w_text}))`, or resample: "
                "`WeightedRandomSampler(weights=w[train_labels], num_samples=len(train))` with those w"
            )
        for split, miss in missing.items():
            if miss:
                problems.append(f"{split} has no samples of class(es) {_short(miss)}")
        if any(missing.values()):
            fixes.append("use a stratified split (e.g. sklearn's train_test_split(..., stratify=labels))")
        tv = self._shift(counts)
        evidence["train_val_total_variation"] = tv
        if tv is not None and tv > SHIFT_TV and counts["val"].sum() >= 10 * len(classes):
            problems.append(f"class proportions differ between train and val (total variation {tv:.2f})")
            fixes.append("split with stratification so both splits share class proportions")
        evidence["unused_classes"] = unused
        summary = (f"{len(seen)} classes, imbalance {ratio:.1f}:1 in train; "
                   + ("; ".join(problems) if problems else "balanced enough"))
        if unused:
            summary += (f" ({len(classes)} outputs from {ctx.classes[1]}; {len(unused)} class(es) "
                        f"never appear: {_short(unused)})")
        out.findings.append(Finding(
            self.id, self.name, "warn" if problems else "pass", summary, evidence=evidence,
            cause="Skewed or missing classes make accuracy misleading and starve rare classes of gradient."
            if problems else "",
            fix="; ".join(fixes),
        ))
        out.findings.append(Finding(
            self.id, "majority baseline", "info",
            f"always predicting class {majority} scores {base_val:.1%} accuracy on val ({base_train:.1%} on train): "
            "a model must beat this, not 0%",
            evidence={"majority_class": majority, "val_accuracy": base_val, "train_accuracy": base_train},
        ))
        return out

    @staticmethod
    def _shift(counts: dict[str, np.ndarray]) -> float | None:
        a, b = counts["train"], counts["val"]
        if not a.sum() or not b.sum():
            return None
        return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())

    def _regression(self, ctx: Context) -> CheckResult:
        out = CheckResult()
        vals = {s: scan.target[scan.ok & np.isfinite(scan.target)] for s, scan in ctx.scans.items()}
        if not len(vals["train"]):
            raise SkipCheck("no scalar targets to summarise (targets are vectors or missing)")
        mean, median = float(vals["train"].mean()), float(np.median(vals["train"]))
        v = vals["val"]
        mse = float(np.mean((v - mean) ** 2)) if len(v) else float("nan")
        mae = float(np.mean(np.abs(v - median))) if len(v) else float("nan")
        rows = []
        for s, x in vals.items():
            if len(x):
                q = np.quantile(x, [0, 0.05, 0.5, 0.95, 1])
                rows.append([s, len(x), float(x.mean()), float(x.std()), *map(float, q)])
        columns = ["split", "n", "mean", "std", "min", "p5", "median", "p95", "max"]
        out.tables.append(Table("D1 target distribution", columns, rows))
        out.findings.append(Finding(
            self.id, "mean baseline", "info",
            f"regression: always predicting the training mean {mean:.4g} gives val MSE {mse:.4g} "
            f"(the median gives MAE {mae:.4g}): a model must beat this",
            evidence={"train_mean": mean, "train_median": median, "val_mse_of_mean": mse, "val_mae_of_median": mae},
        ))
        return out


def _short(values: list[int], n: int = 10) -> str:
    text = ", ".join(map(str, values[:n]))
    return text + (f" and {len(values) - n} more" if len(values) > n else "")
