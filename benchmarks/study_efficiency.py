"""How much training danlu's explore+prune needs, beside a full grid and plain random search.

For each task, three ways of searching the same hyperparameters:

- grid:    every combination of a few values per hyperparameter, each trained fully;
- random:  uniformly random points (log scale where the range is), each trained fully;
- danlu:   `danlu study` in explore mode: scrambled Sobol points, ASHA pruning after the
           stated minimum resource (a ninth of a trial's steps).

The measure is compute in training steps: how many steps each method spends (in its own
trial order) until its best validation loss so far is within 1% of the grid's best
(H1, H4). Target (issue 7): danlu needs at most a quarter of the grid's steps.

    python benchmarks/study_efficiency.py                  # both tasks, 2 worker processes
    python benchmarks/study_efficiency.py --task digits --workers 4 --out results.json

Tasks: examples/digits.py (small CNN, sklearn digits) and Cancer below (an MLP on
sklearn's breast-cancer table). Trials use one torch thread each, so `--workers`
changes only the wall time, never the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu

ROOT = Path(__file__).resolve().parents[1]


class Cancer(danlu.Recipe):
    """Breast-cancer diagnosis from 30 measurements (sklearn's bundled table), a small MLP."""

    hidden: int = 32
    dropout: float = 0.1
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 32
    probe_every: int = 5
    patience: int = 0

    def data(self):
        import numpy as np
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        x = torch.tensor(data.data, dtype=torch.float32)
        y = torch.tensor(data.target, dtype=torch.int64)
        order = torch.as_tensor(np.random.RandomState(7).permutation(len(y)))
        val, train = order[: len(y) // 5], order[len(y) // 5:]
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        x = (x - mean) / std
        return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])

    def model(self):
        return nn.Sequential(nn.Linear(30, self.hidden), nn.ReLU(), nn.Dropout(self.dropout),
                             nn.Linear(self.hidden, 2))


@dataclass
class Task:
    name: str
    recipe: str
    fixed: dict[str, str]
    grid: dict[str, list]
    vary: list[str]


TASKS = {
    "digits": Task(
        "digits", str(ROOT / "examples" / "digits.py"),
        {"epochs": "4", "probe_every": "10", "patience": "0"},
        {"lr": [3e-4, 1e-3, 3e-3, 1e-2], "hidden": [16, 48, 128], "dropout": [0.0, 0.4]},
        ["lr=1e-4..3e-2:log", "hidden=16..128:log,int", "dropout=0..0.5"],
    ),
    "cancer": Task(
        "cancer", f"{Path(__file__).resolve()}:Cancer",
        {},
        {"lr": [1e-4, 3e-4, 1e-3, 3e-3], "hidden": [8, 32, 128], "dropout": [0.0, 0.4]},
        ["lr=3e-5..1e-2:log", "hidden=8..128:log,int", "dropout=0..0.5"],
    ),
}


@dataclass
class Result:
    method: str
    trials: list[tuple[int, float | None]] = field(default_factory=list)  # (steps, final val loss or None)

    @property
    def steps(self) -> int:
        return sum(s for s, _ in self.trials)

    @property
    def best(self) -> float:
        return min((v for _, v in self.trials if v is not None), default=math.inf)

    def steps_to_reach(self, target: float) -> int | None:
        used = 0
        for steps, value in self.trials:
            used += steps
            if value is not None and value <= target:
                return used
        return None


def _fit(recipe: str, fixed: dict, params: dict, store: str) -> tuple[int, float | None]:
    torch.set_num_threads(1)
    from danlu.engine import fit
    from danlu.recipe import load_recipe_class
    from danlu.tuning.spec import build_recipe

    r = fit(build_recipe(load_recipe_class(recipe), fixed, params), store=store, progress=False, capture=False,
            tags=["benchmark"])
    return r.steps, r.summary.get("best_val_loss")


def run_full(task: Task, configs: list[dict], store: str, workers: int, method: str) -> Result:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        outs = list(pool.map(_fit, [task.recipe] * len(configs), [task.fixed] * len(configs), configs,
                             [store] * len(configs)))
    return Result(method, outs)


def random_configs(task: Task, n: int, seed: int) -> list[dict]:
    import optuna

    from danlu.recipe import load_recipe_class
    from danlu.tuning.space import parse_vary

    space = parse_vary(task.vary, load_recipe_class(task.recipe))
    sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append({p.name: p.suggest(trial) for p in space})
        study.tell(trial, 0.0)
    return out


def run_danlu(task: Task, n: int, store: str, workers: int, seed: int) -> Result:
    from danlu.store import open_store
    from danlu.tuning import get_executor
    from danlu.tuning.storage import load_optuna_study
    from danlu.tuning.study import new_study

    s = open_store(store)
    study = new_study(s, task.recipe, task.vary, fixed=task.fixed, trials=n, prune="asha", seed=seed,
                      name=f"bench-{task.name}-{seed}-{int(time.time())}")
    study.run(get_executor(workers), workers)
    trials = sorted(load_optuna_study(study.storage, study.spec.name, 0).get_trials(deepcopy=False),
                    key=lambda t: t.number)
    return Result("danlu explore+asha", [(int(t.user_attrs.get("steps") or 0),
                                          t.value if t.user_attrs.get("outcome") == "complete" else None)
                                         for t in trials])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=[*TASKS, "all"], default="all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=24, help="trials for random and danlu (the grid has 24)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat random and danlu with this many seeds")
    parser.add_argument("--store", default=None, help="store folder (default: a temporary one)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    store = args.store or tempfile.mkdtemp(prefix="danlu-bench-")
    tasks = list(TASKS.values()) if args.task == "all" else [TASKS[args.task]]
    report = []
    for task in tasks:
        t0 = time.time()
        names = list(task.grid)
        grid = [dict(zip(names, combo)) for combo in itertools.product(*task.grid.values())]
        g = run_full(task, grid, store, args.workers, "grid")
        target = g.best * 1.01
        rows = [("grid", g.steps, g.steps, g.best, len(grid))]
        for seed in range(args.seeds):
            r = run_full(task, random_configs(task, args.trials, seed), store, args.workers, "random")
            d = run_danlu(task, args.trials, store, args.workers, seed)
            rows.append((f"random (seed {seed})", r.steps_to_reach(target), r.steps, r.best, args.trials))
            rows.append((f"danlu explore+asha (seed {seed})", d.steps_to_reach(target), d.steps, d.best, args.trials))
        print(f"\n{task.name}: grid best val loss {g.best:.4f}; target (within 1%) {target:.4f}; "
              f"{time.time() - t0:.0f} s")
        print(f"{'method':<30} {'steps to target':>16} {'/ grid':>8} {'total steps':>12} {'best val loss':>14} {'trials':>7}")
        for method, reach, total, best, n in rows:
            share = f"{reach / g.steps:.0%}" if reach is not None else "-"
            print(f"{method:<30} {reach if reach is not None else 'not reached':>16} {share:>8} {total:>12} {best:>14.4f} {n:>7}")
        report.append({"task": task.name, "grid_best": g.best, "target": target, "grid_steps": g.steps,
                       "rows": [dict(zip(["method", "steps_to_target", "total_steps", "best", "trials"], r)) for r in rows]})
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
