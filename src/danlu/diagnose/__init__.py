"""Reading the curves (T1-T6): diagnosis into named regimes, live warnings, the LR finder.

- :func:`diagnose` / :func:`diagnose_run`: curves -> a "diagnosis" Report (regimes with
  evidence and the practices' fixes); rules are small units in a registry (rules.py).
- :class:`LiveDiagnosis`: engine callback; current regime for the progress display, one
  warning per change, `--stop-on diverging,nan`.
- :func:`lr_range_test`, :func:`lr_scan`, :func:`scale_lr`: finding a learning rate (T4, T6).
"""

from __future__ import annotations

from danlu.diagnose.baseline import baseline_loss, dataset_targets
from danlu.diagnose.curves import Curves, Series, Trend, trend
from danlu.diagnose.diagnosis import curves_from_store, diagnose, diagnose_run, headline, primary_finding
from danlu.diagnose.live import STOPPABLE, LiveDiagnosis, LiveStatus, parse_stop_on
from danlu.diagnose.lr_finder import analyse_sweep, lr_range_test, lr_scan, scale_lr
from danlu.diagnose.rules import REGIMES, DiagnosisRule, get_rules, register

__all__ = [
    "Curves",
    "Series",
    "Trend",
    "trend",
    "diagnose",
    "diagnose_run",
    "curves_from_store",
    "headline",
    "primary_finding",
    "DiagnosisRule",
    "register",
    "get_rules",
    "REGIMES",
    "LiveDiagnosis",
    "LiveStatus",
    "STOPPABLE",
    "parse_stop_on",
    "lr_range_test",
    "lr_scan",
    "analyse_sweep",
    "scale_lr",
    "baseline_loss",
    "dataset_targets",
]
