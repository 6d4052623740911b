"""The case study (practices C2-C4): look at the errors after training.

    from danlu.evaluation import case_study
    report = case_study(recipe, model, val_dataset)        # a danlu.Report of kind "cases"
    report = case_study(recipe, [m1, m2, m3], val_dataset) # ... with the C4 ensemble

`predict` gives per-sample outputs, probabilities and losses on a whole dataset (C3);
`metrics`, `worst`, `label_issues`, `slices` and `ensemble` turn them into numbers;
`case_study` builds the report; `out_of_fold` gives out-of-sample predictions on the
training split (K models, each trained without one fold) for its suspicious labels.
"""

from __future__ import annotations

from danlu.evaluation.case_study import build_report, case_study
from danlu.evaluation.ensemble import ensemble_scores
from danlu.evaluation.label_issues import LabelIssues, find_label_issues
from danlu.evaluation.metrics import ClassMetrics, confusion_matrix, per_class_metrics, residual_summary
from danlu.evaluation.predict import Predictions, predict
from danlu.evaluation.slices import Slice, dataset_metadata, slices
from danlu.evaluation.worst import worst_cases

__all__ = [
    "case_study",
    "build_report",
    "predict",
    "Predictions",
    "confusion_matrix",
    "per_class_metrics",
    "ClassMetrics",
    "residual_summary",
    "worst_cases",
    "find_label_issues",
    "LabelIssues",
    "slices",
    "Slice",
    "dataset_metadata",
    "ensemble_scores",
]
