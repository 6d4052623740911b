"""Studies: tuning with reason (H1-H6) on Optuna's samplers, pruners, importance and storages.

    danlu study examples/digits.py --vary lr=1e-4..1e-1:log weight_decay=0..0.1 --trials 16
    danlu study show NAME

A study explores first (scrambled Sobol points, the other hyperparameters fixed), says
which hyperparameters matter, flags best values at the edge of their range, warns when
everything matters (a bug, not bad luck), stops hopeless trials early (ASHA/Hyperband
after a stated minimum of steps), grows the scale in stages, and runs its trials in
local processes, on Ray, or on any machine sharing a PostgreSQL storage. Every trial is
an ordinary danlu run.

Modules, one job each: ``space`` (the --vary syntax), ``spec`` (what defines a study),
``storage`` (Optuna storages, the trial queue, stale trials), ``study`` (the study run:
create, resume, run stages), ``objective`` (one trial = one run; the worker loop),
``executors`` (where trials run), ``stages`` (staged scale), ``analysis`` (what the
trials say), ``summary`` (the Report and its plots).
"""

from __future__ import annotations

from danlu.tuning.executors import EXECUTORS, Executor, LocalProcesses, RayExecutor, Sequential, get_executor
from danlu.tuning.space import Param, Space, SpaceError, parse_vary
from danlu.tuning.spec import StudyError, StudySpec, prepare_spec
from danlu.tuning.study import Study, join_study, new_study

__all__ = [
    "Param",
    "Space",
    "SpaceError",
    "parse_vary",
    "Study",
    "StudySpec",
    "StudyError",
    "prepare_spec",
    "new_study",
    "join_study",
    "Executor",
    "Sequential",
    "LocalProcesses",
    "RayExecutor",
    "EXECUTORS",
    "get_executor",
]
