"""D6: samples that fail to load, hold NaN/Inf, or carry a label outside the valid range."""

from __future__ import annotations

import numpy as np

from danlu.checks.audit.scan import Problem, SplitScan
from danlu.checks.base import Check, CheckResult, register
from danlu.checks.context import Context
from danlu.report import Finding, Table

__all__ = ["Validity", "label_problems", "box_problems"]

_MAX_LISTED = 1000
_SHOWN = 30


def label_problems(scan: SplitScan, num_classes: int | None) -> list[Problem]:
    """Labels below 0, or at/above num_classes when it is known."""
    pos, labels = scan.labels()
    bad = labels < 0
    if num_classes is not None:
        bad |= labels >= num_classes
    valid = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
    return [Problem(int(scan.indices[p]), f"label {int(v)} outside {valid}")
            for p, v in zip(pos[bad], labels[bad])]


def box_problems(scan: SplitScan, num_classes: int | None) -> list[Problem]:
    """Boxes with zero/negative width or height, non-finite coordinates, or labels out of range."""
    out = []
    for index, boxes, labels in scan.boxes:
        if len(boxes):
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            flat = ~np.isfinite(boxes).all(axis=1) | (w <= 0) | (h <= 0)
            if flat.any():
                k = int(np.flatnonzero(flat)[0])
                out.append(Problem(index, f"{int(flat.sum())} degenerate box(es), e.g. {boxes[k].tolist()} "
                                          "(x2 <= x1 or y2 <= y1; boxes are read as x1, y1, x2, y2)"))
        if labels is not None and labels.size:
            bad = (labels < 0) | ((labels >= num_classes) if num_classes is not None else False)
            if np.any(bad):
                out.append(Problem(index, f"box label {int(labels[bad][0])} out of range"))
    return out


@register
class Validity(Check):
    """Samples that fail to load, hold NaN/Inf, or carry a label outside the valid range.

    Detects: - items whose __getitem__ raises (with the error and the line that raised
    it); inputs or targets holding NaN or Inf; class labels below 0 or at/above the
    number of classes; degenerate boxes (zero or negative width/height) and box labels
    out of range for detection targets; a model whose output size disagrees with the
    recipe's declared class count.
    Why: One unreadable file kills a run hours in; one NaN poisons every weight; an out-
    of-range label crashes cross-entropy on GPU with an unhelpful device assert, or
    silently trains a wrong class on CPU with some losses (000).
    How: From the scan, which reads every item (or the --limit sample) and never stops
    on a bad one. The number of classes comes from the model's output size, else the
    recipe's `num_classes`, else the labels themselves (then only negatives are caught).
    Thresholds: Any invalid sample fails (a CI gate).
    Fix: Repair or drop the listed indices; for labels, map them into 0..C-1 or enlarge
    the model's output layer.
    Cannot see: values that are finite and in range but wrong (a mislabelled sample, a
    corrupt but decodable image); items outside the scanned part with `--limit`.
    """

    id = "D6"
    families = ("audit",)
    name = "invalid samples"

    def run(self, ctx: Context) -> CheckResult:
        out = CheckResult()
        rows: list[list] = []
        categories = [
            ("unreadable samples", lambda s: s.errors,
             "The dataset's __getitem__ raised for these indices (a missing or corrupt file, a bad row).",
             "Fix or remove the listed files/rows; catch and skip them in the dataset only as a last resort."),
            ("NaN/Inf values", lambda s: s.nonfinite,
             "Non-finite values in the data propagate into the loss and every weight.",
             "Repair the listed samples (impute, drop) or fix the preprocessing that produced them "
             "(division by zero, log of 0)."),
        ]
        if ctx.task_or_none == "classification":
            classes = ctx.num_classes
            categories.append((
                "label range", lambda s: label_problems(s, classes),
                "Labels must be class indices 0..C-1 for cross-entropy; others crash it or train nonsense.",
                "Map the labels into 0..C-1 (e.g. subtract 1 from 1-based labels) or give the model "
                "as many outputs as there are classes.",
            ))
        if any(s.boxes for s in ctx.scans.values()):
            classes = ctx.num_classes
            categories.append((
                "boxes", lambda s: box_problems(s, classes),
                "Degenerate boxes give zero or negative areas and NaN losses in box regression.",
                "Drop or repair the listed boxes; check the coordinate format (x1, y1, x2, y2).",
            ))
        for name, get, cause, fix in categories:
            found = {split: get(scan) for split, scan in ctx.scans.items()}
            total = sum(len(v) for v in found.values())
            evidence = {split: {"count": len(v), "problems": [[p.index, p.error] for p in v[:_MAX_LISTED]]}
                        for split, v in found.items()}
            if name == "label range":
                evidence["num_classes"] = ctx.num_classes
                evidence["num_classes_from"] = ctx.classes[1]
            if not total:
                scope = ", ".join(f"{s.n:,} {split}" for split, s in ctx.scans.items())
                extra = (f"; {ctx.num_classes} classes from {ctx.classes[1]}"
                         if name == "label range" and ctx.num_classes else "")
                out.findings.append(Finding(self.id, name, "pass", f"none among {scope} samples{extra}",
                                            evidence=evidence))
                continue
            where = ", ".join(f"{len(v):,} in {split} (first index {v[0].index})" for split, v in found.items() if v)
            first = next(p for v in found.values() for p in v)
            out.findings.append(Finding(
                self.id, name, "fail", f"{total:,} sample(s): {where}; e.g. {first.error}",
                evidence=evidence, cause=cause, fix=fix,
            ))
            for split, v in found.items():
                rows.extend([split, name, p.index, p.error] for p in v[:_SHOWN])
        for note in ctx.classes[2]:
            out.findings.append(Finding(
                self.id, "class count", "warn", note,
                evidence={"num_classes": ctx.num_classes, "from": ctx.classes[1]},
                cause="The model's output size and the recipe's declared number of classes disagree.",
                fix="Make the last layer's size equal the number of classes.",
            ))
        if rows:
            out.tables.append(Table("D6 invalid samples (first of each kind)", ["split", "problem", "index", "error"], rows))
        return out
