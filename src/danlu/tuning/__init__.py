"""Studies: tuning with reason (H1-H6) on Optuna's samplers, pruners, importance and storages.

    danlu study examples/digits.py --vary lr=1e-4..1e-1:log weight_decay=0..0.1 --trials 16
    danlu study show NAME

A study explores first (scrambled Sobol points, the other hyperparameters fixed), says
which hyperparameters matter, flags best values at the edge of their range, warns when
everything matters (a bug, not bad luck), stops hopeless trials early (ASHA/Hyperband
after a stated minimum of steps), grows the scale in stages, and runs its trials in
local processes, on Ray, or on any machine sharing a PostgreSQL storage. Every trial is
an ordinary danlu run.

Modules, one job each: ``space`` (the --vary syntax), ``study`` (record, storage,
create/resume, stale trials), ``objective`` (one trial = one run; the worker loop),
``executors`` (where trials run), ``stages`` (staged scale), ``analysis`` (what the
trials say), ``report`` (the Report and its plots), ``demo`` (`danlu demo --study`).
"""

from __future__ import annotations

from danlu.tuning.demo import run_demo_study
from danlu.tuning.executors import EXECUTORS, Executor, LocalProcesses, RayExecutor, Sequential, get_executor
from danlu.tuning.space import Param, Space, SpaceError, parse_vary
from danlu.tuning.study import Study, StudyError, StudySpec, join_study, prepare_spec

__all__ = [
    "Param",
    "Space",
    "SpaceError",
    "parse_vary",
    "Study",
    "StudySpec",
    "StudyError",
    "prepare_spec",
    "join_study",
    "Executor",
    "Sequential",
    "LocalProcesses",
    "RayExecutor",
    "EXECUTORS",
    "get_executor",
    "run_demo_study",
]
