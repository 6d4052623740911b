"""Finding a learning rate (T4, T6); these train, so they live apart from the curve reader.

- :func:`lr_range_test` (finder.py): an exponential LR sweep that leaves no trace.
- :func:`lr_scan` (coarse.py): short real runs at a few LRs, each diagnosed.
- :func:`scale_lr` (scaling.py): the LR for a new batch size, linear and square-root rules.
"""

from __future__ import annotations

from danlu.lr.coarse import DEFAULT_SCAN_LRS, lr_scan
from danlu.lr.finder import SweepResult, analyse_sweep, lr_range_test
from danlu.lr.scaling import batch_scaling_finding, scale_lr

__all__ = ["lr_range_test", "analyse_sweep", "SweepResult", "lr_scan", "DEFAULT_SCAN_LRS", "scale_lr",
           "batch_scaling_finding"]
