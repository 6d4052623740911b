"""`danlu study`: sensitivity studies, early kills and staged scale (H1-H6), on Optuna.

    danlu study RECIPE --vary lr=1e-5..1e-1:log weight_decay=0..0.1 batch_size=16,32,64,128
                [--fix k=v ...] [--trials N] [--workers N] [--name NAME] [--mode tune|explore|exploit]
                [--prune asha|hyperband|none] [--min-resource STEPS] [--stages 0.01,0.1,1.0]
                [--scientific NAME] [--storage URL] [--ray ADDRESS] [--json]
    danlu study --resume NAME
    danlu study show NAME
    danlu study worker NAME --storage postgresql://...
"""

from __future__ import annotations

import argparse
import shlex
import sys

from danlu.cli.options import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import console, err_console, escape

__all__ = ["register", "cmd_study"]

_SPACE_HELP = """search space (--vary), one token per hyperparameter:
  lr=1e-5..1e-1:log        float range on a log scale
  weight_decay=0..0.1      float range
  hidden=16..256:int       integer range (implied for int fields); :log,int for a log scale
  batch_size=16,32,64,128  choices

examples:
  danlu study examples/digits.py --vary lr=1e-4..1e-1:log hidden=16..128:log,int dropout=0..0.5
  danlu study examples/digits.py --vary lr=1e-4..1e-1:log --stages 0.1,1.0 --workers 2
  danlu study examples/digits.py --mode exploit --trials 16     (narrows the last exploration)
  danlu study show NAME
  danlu study worker NAME --storage postgresql://user:pw@host/db"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="tune with reason: which hyperparameters matter, early kills, staged scale",
        description="Run a study of a recipe: quasi-random exploration (or TPE exploitation) of the varied "
        "hyperparameters with the others fixed, pruning hopeless trials, then importance, range-edge "
        "and hypersensitivity findings. Every trial is an ordinary danlu run. "
        "`danlu study show NAME` prints a study; `danlu study worker NAME` joins one.",
        epilog=_SPACE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", nargs="?", metavar="RECIPE|show|worker", help="recipe file, or the action show / worker")
    p.add_argument("study_name", nargs="?", metavar="NAME", help="study name (for show and worker)")
    p.add_argument("--vary", nargs="+", default=[], metavar="TOKEN", help="hyperparameters to vary (see below)")
    p.add_argument("--fix", nargs="+", default=[], metavar="k=v", help="hyperparameters to fix for every trial")
    p.add_argument("--trials", type=int, default=16, help="trials in the first stage (default 16)")
    p.add_argument("--workers", type=int, default=1, help="trials at once in local processes (default 1)")
    p.add_argument("--name", default=None, help="study name (default: generated)")
    p.add_argument("--mode", choices=["tune", "explore", "exploit"], default="tune",
                   help="tune (default): Sobol points, then TPE on the steps pruning saved until --trials full "
                        "trials' steps are spent; explore: the Sobol points only; exploit: TPE over the ranges an "
                        "exploration narrowed")
    p.add_argument("--from", dest="source", default=None, metavar="STUDY",
                   help="exploit: the exploration to narrow (default: the newest of this recipe)")
    p.add_argument("--prune", choices=["asha", "hyperband", "none"], default="asha",
                   help="stop hopeless trials early (default asha = successive halving)")
    p.add_argument("--min-resource", type=int, default=0, metavar="STEPS",
                   help="no trial is pruned before this many steps (default: a ninth of a trial's steps)")
    p.add_argument("--stages", default="1.0", metavar="F1,F2,...",
                   help="staged scale, e.g. 0.01,0.1,1.0: fractions of the data (or of the steps, --stage-on steps)")
    p.add_argument("--stage-on", choices=["data", "steps"], default="data", help="what --stages scales (default data)")
    p.add_argument("--keep", type=float, default=1 / 3, help="fraction of trials promoted to the next stage (default 1/3)")
    p.add_argument("--scientific", default=None, metavar="NAME",
                   help="a varied hyperparameter to isolate: best trial per value, the others optimised away")
    p.add_argument("--seed", type=int, default=0, help="seed of the quasi-random sequence and of TPE (default 0)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage shared by workers, e.g. postgresql://user:pw@host/db "
                        "(default: a journal file in the store)")
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="run trials as Ray tasks ('local' starts Ray here)")
    p.add_argument("--resume", default=None, metavar="NAME", help="continue a stopped or crashed study")
    p.add_argument("--recipe", dest="recipe_override", default=None, metavar="PATH",
                   help="worker/resume: the recipe file on this machine, if it moved")
    p.add_argument("--wait", type=float, default=600.0, help="worker: seconds to wait for new trials before leaving")
    p.add_argument("--device", default="cpu", help="device of every trial (default cpu)")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    from danlu.errors import DanluError

    if args.target == "show":
        return cmd_show(args)
    if args.target == "worker":
        return cmd_worker(args)
    if args.study_name is not None:
        raise DanluError(f"Unexpected argument '{args.study_name}': give the search space with --vary, "
                         "e.g. danlu study RECIPE --vary lr=1e-5..1e-1:log.")
    return cmd_run(args)


def _name_required(args, action: str) -> str:
    from danlu.errors import DanluError

    if not args.study_name:
        raise DanluError(f"Name the study: danlu study {action} NAME (see `danlu runs` for study names).")
    return args.study_name


def cmd_run(args: argparse.Namespace) -> int:
    from danlu.errors import DanluError
    from danlu.recipe import parse_overrides
    from danlu.tuning.executors import get_executor
    from danlu.tuning.stages import parse_stages
    from danlu.tuning.study import Study, new_study

    if args.workers < 1:
        raise DanluError(f"--workers must be at least 1, got {args.workers}.")
    store = open_store_from_args(args)
    out = err_console if args.json else console
    executor = get_executor(args.workers, args.ray)
    if args.resume:
        study = Study.resume(store, args.resume)
        out.print(f"resuming study [bold]{escape(study.spec.name)}[/]")
    else:
        if not args.target:
            raise DanluError("Give a recipe (danlu study RECIPE --vary ...) or --resume NAME.")
        if not args.vary and args.mode in ("tune", "explore"):
            raise DanluError("Say what to vary: --vary lr=1e-5..1e-1:log weight_decay=0..0.1 (see --help).")
        study = new_study(
            store, args.target, args.vary, fixed=parse_overrides(args.fix), trials=args.trials, name=args.name,
            mode=args.mode, prune=args.prune, min_resource=args.min_resource, stages=parse_stages(args.stages),
            stage_on=args.stage_on, keep=args.keep, scientific=args.scientific, seed=args.seed,
            storage=args.storage, device=args.device, source=args.source, command=shlex.join(["danlu", *sys.argv[1:]]),
        )
        s = study.spec
        out.print(f"study [bold]{escape(s.name)}[/] ({s.mode}): {escape(' '.join(s.vary))}"
                  + (f"  fixed {escape(' '.join(f'{k}={v}' for k, v in s.fixed.items()))}" if s.fixed else ""))
        # the pruning plan is said once, in each stage's line (the study announces it as it starts)
        out.print(f"  a full trial is about {s.budget_steps} steps; {executor.describe(args.workers)}")
        if s.prune != "none" and s.min_resource < 0.1 * s.budget_steps:
            out.print(f"  [yellow]![/] --min-resource {s.min_resource} is under a tenth of a trial: pruning this early "
                      "can kill trials that start slowly but end best")
    report = study.run(executor, args.workers, console=out, recipe=args.recipe_override)
    return _print(report, args, study.spec.name, store.run_dir(study.run_id, create=False))


def _print(report, args, name: str, folder=None) -> int:
    from danlu.render import print_report

    if args.json:
        print_json(report.to_dict())
    else:
        print_report(report, console, folder=folder)
        if report.meta.get("command"):
            console.print("\nreproduce the best trial:")
            # one line, never broken: a command split at the terminal's width runs as two when pasted
            console.print(f"  [bold]{escape(report.meta['command'])}[/]", soft_wrap=True)
        console.print(f"again with: danlu study show {escape(name)}")
    return 1 if report.status == "fail" else 0


def cmd_show(args: argparse.Namespace) -> int:
    from danlu.tuning.study import Study

    name = _name_required(args, "show")
    store = open_store_from_args(args, create=False)
    study = Study.load(store, name)
    report = study.report()
    if not args.json:
        record = store.get_run(study.run_id)
        console.print(f"[dim]status {record.status}; folder {escape(str(store.run_dir(record.id, create=False)))}[/]")
    return _print(report, args, name, store.run_dir(study.run_id, create=False))


def cmd_worker(args: argparse.Namespace) -> int:
    from danlu.tuning.executors import get_executor
    from danlu.tuning.storage import default_storage_url
    from danlu.tuning.study import join_study

    name = _name_required(args, "worker")
    store = open_store_from_args(args)
    url = args.storage or default_storage_url(store)
    if args.storage is None and not hasattr(store, "database_url"):
        err_console.print("[dim]no --storage: joining the study in this store's local journal[/]")
    n = join_study(url, name, store, get_executor(args.workers, args.ray), args.workers,
                   recipe=args.recipe_override, wait=args.wait, console=console)
    if args.json:
        print_json({"study": name, "trials": n})
    else:
        console.print(f"worker ran {n} trials of study {escape(name)}")
    return 0
