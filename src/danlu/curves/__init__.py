"""Reading the curves (T1-T4): diagnosis into named regimes and live warnings.

- :func:`diagnose` / :func:`diagnose_run`: curves -> a "diagnosis" Report (regimes with
  evidence and the practices' fixes); rules are small units in a registry (rules.py).
- :class:`LiveDiagnosis`: engine callback; current regime for the progress display, one
  warning per change, `--stop-on diverging,nan`.
"""

from __future__ import annotations

from danlu.baseline import baseline_loss, dataset_targets
from danlu.curves.diagnosis import curves_from_store, diagnose, diagnose_run, headline, primary_finding, regime_title
from danlu.curves.live import STOPPABLE, LiveDiagnosis, LiveStatus, parse_stop_on
from danlu.curves.rules import REGIMES, DiagnosisRule, get_rules, register
from danlu.curves.series import Curves, Series, Trend, trend

__all__ = [
    "Curves",
    "Series",
    "Trend",
    "trend",
    "diagnose",
    "diagnose_run",
    "curves_from_store",
    "headline",
    "regime_title",
    "primary_finding",
    "DiagnosisRule",
    "register",
    "get_rules",
    "REGIMES",
    "LiveDiagnosis",
    "LiveStatus",
    "STOPPABLE",
    "parse_stop_on",
    "baseline_loss",
    "dataset_targets",
]
