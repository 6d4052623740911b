"""`danlu train RECIPE [k=v ...]`: train a recipe with full tracking (T1, T3, E1-E4)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from danlu.cli.options import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import console, err_console, escape

__all__ = ["register", "run_training", "print_result"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a recipe, tracking every batch",
        description="Train a recipe with per-batch curves, validation probes, checkpoints and a "
        "reproducibility record in the store.",
        epilog="Examples:\n  danlu train examples/digits.py\n"
        "  danlu train examples/digits.py lr=1e-3 hidden=128 -m 'wider head' --tag baseline\n"
        "  danlu train --resume last\n  danlu train --from last epochs=20 -m 'longer'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", nargs="?", help="recipe file: path.py or path.py:ClassName")
    p.add_argument("overrides", nargs="*", metavar="k=v", help="hyperparameter overrides, e.g. lr=1e-3")
    p.add_argument("-m", "--note", default="", help="strategy note: what this run tries (E2)")
    p.add_argument("--tag", action="append", default=[], help="tag the run (repeatable)")
    p.add_argument("--name", default=None, help="run name (default: a generated short name)")
    p.add_argument("--resume", metavar="RUN", default=None,
                   help="continue a stopped or crashed run from its last checkpoint")
    p.add_argument("--from", dest="start_from", metavar="RUN", default=None,
                   help="a new run that starts from RUN's best weights (its recipe unless one is given; "
                   "k=v overrides apply): e.g. to train a finished run longer")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--stop-on", default="", metavar="REGIMES",
                   help="stop early when the live diagnosis sees these regimes, e.g. diverging,nan")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train with N processes (DistributedDataParallel: N GPUs, or N CPU processes with gloo); "
                   "the global batch is batch_size x N. Same as torchrun --nproc_per_node N -m danlu.cli train ...")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from danlu.errors import DanluError
    from danlu.rebuild import recipe_from_run
    from danlu.recipe import load_recipe, parse_overrides

    if args.nproc < 1:
        raise DanluError(f"--nproc must be at least 1, got {args.nproc}.")
    if args.nproc > 1 and not os.environ.get("WORLD_SIZE"):
        return _launch(args)
    store = open_store_from_args(args)
    start_from = None
    if (args.resume or args.start_from) and args.recipe and "=" in args.recipe and not Path(args.recipe).exists():
        args.overrides, args.recipe = [args.recipe, *args.overrides], None   # `--from RUN epochs=20`
    if args.resume and args.start_from:
        raise DanluError("--resume continues a run; --from starts a new one from a run's weights: use one of them.")
    if args.resume:
        record = store.get_run(args.resume)
        if record.status in ("running",):
            raise DanluError(f"Run {record.name} ({record.id}) is still running; stop it before resuming.")
        if record.status in ("finished", "failed"):
            raise DanluError(f"Run {record.name} ({record.id}) is {record.status}; only a stopped or crashed run can "
                             f"be resumed, and its record stays as it is. To train on from its weights, start a new "
                             f"run: `danlu train --from {record.id} epochs=N`.")
        if not record.recipe:
            raise DanluError(f"Run {record.name} was not made by `danlu train`; it has no recipe to resume.")
        recipe = recipe_from_run(store, record, path=args.recipe)
        if args.overrides:
            raise DanluError("--resume continues a run with its recorded hyperparameters; drop the k=v "
                             "overrides, or start a new run without --resume.")
        resume = record.id
    elif args.start_from:
        from danlu.rebuild import checkpoint_of

        record = store.get_run(args.start_from)
        start_from = checkpoint_of(store, record)
        recipe = (load_recipe(args.recipe, parse_overrides(args.overrides)) if args.recipe
                  else recipe_from_run(store, record, overrides=parse_overrides(args.overrides)))
        resume = None
    else:
        if not args.recipe:
            raise DanluError("Give a recipe file (danlu train path.py), --resume RUN or --from RUN.")
        recipe = load_recipe(args.recipe, parse_overrides(args.overrides))
        resume = None
    try:
        result = run_training(recipe, store, args, resume=resume, start_from=start_from,
                              parent=record.id if start_from is not None else None)
    except DanluError as exc:
        if "process(es); resume it with the same number" in str(exc):   # say it in flags
            raise DanluError(f"{exc} On the command line: `--nproc N` to resume, `danlu train --from {resume}` "
                             "for a new run.") from exc
        raise
    except Exception as exc:  # the user's code (or data) failed mid-training: say where, keep the run
        _report_training_error(store, exc, args.recipe or "RECIPE")
        return 1
    if os.environ.get("RANK", "0") != "0":
        pass                                   # rank 0 speaks for the run
    elif args.json:
        print_json(result.__dict__)
    else:
        print_result(store, result)
    if result.stop_reason and result.stop_reason.startswith("interrupted"):
        return 130
    return 0 if result.status == "finished" else 1


def _launch(args: argparse.Namespace) -> int:
    """Start args.nproc copies of this command through PyTorch's launcher (torch.distributed.run);
    rank 0 records the run. Returns 0 when every process succeeded."""
    import subprocess
    import sys

    from danlu.distributed import launch_command

    argv = list(args.argv)
    i = argv.index("--nproc") if "--nproc" in argv else -1
    argv = argv[:i] + argv[i + 2:] if i >= 0 else [a for a in argv if not a.startswith("--nproc=")]
    if args.nproc > 1 and args.device == "auto":
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() < args.nproc:
            err_console.print(f"[yellow]![/] {args.nproc} processes on {torch.cuda.device_count()} GPU(s): some "
                              "processes will share a GPU")
    err_console.print(f"[dim]starting {args.nproc} processes (torch.distributed.run); the global batch is "
                      f"batch_size x {args.nproc}; scale the learning rate with it (T6: linear or sqrt, "
                      "`danlu lr RECIPE batch_size=... --ref RUN`)[/]")
    proc = subprocess.run(launch_command(args.nproc, argv, sys.executable))
    return 0 if proc.returncode == 0 else (130 if proc.returncode in (130, -2) else 1)


def run_training(recipe, store, args, resume=None, callbacks=(), start_from=None, parent=None):
    """Fit with the CLI's options (live diagnosis, --stop-on, progress)."""
    from danlu.engine import fit

    callbacks = list(callbacks)
    live = _live_diagnosis(getattr(args, "stop_on", "")) if os.environ.get("RANK", "0") == "0" else None
    if live is not None:
        callbacks.append(live)
    return fit(
        recipe,
        store=store,
        name=getattr(args, "name", None),
        note=getattr(args, "note", ""),
        tags=getattr(args, "tag", []),
        device=getattr(args, "device", "auto"),
        resume=resume,
        callbacks=callbacks,
        progress=not getattr(args, "quiet", False),
        max_steps=getattr(args, "max_steps", None),
        init_from=start_from,
        parent=parent,
    )


def _report_training_error(store, exc: Exception, recipe_arg: str) -> None:
    """One screen: what failed, where (the last frame in the user's code), the run, the fix."""
    from danlu.errors import user_frame

    where = user_frame(exc)
    run = store.list_runs(limit=1)
    err_console.print(f"[bold red]error:[/] training failed: {escape(type(exc).__name__)}: {escape(str(exc))}")
    if where:
        first, _, line = where.partition("\n")
        err_console.print(f"  at {escape(first)}" + (f": {escape(line.strip())}" if line.strip() else ""))
    if run and run[0].status == "failed":
        err_console.print(f"  run {escape(run[0].name)} ({run[0].id}) is kept with status failed and its curves so far")
    err_console.print(f"  fix: run [bold]danlu check {escape(recipe_arg)}[/] (data interface, labels, NaN, shapes) "
                      f"and [bold]danlu audit {escape(recipe_arg)}[/] to find the cause")


def _live_diagnosis(stop_on: str):
    try:
        from danlu.curves.live import LiveDiagnosis
    except ImportError:  # the diagnosis package is optional at this layer
        if stop_on:
            from danlu.errors import DanluError

            raise DanluError("--stop-on needs the curve diagnosis (danlu.curves), which is not available.") from None
        return None
    regimes = {s.strip() for s in stop_on.split(",") if s.strip()}
    return LiveDiagnosis(stop_on=regimes)


def print_result(store, result) -> None:
    """A short end-of-run summary: outcome, best numbers, where it is, what to try next."""
    from rich.panel import Panel
    from rich.table import Table

    from danlu.console import STATUS_STYLE

    s = result.summary
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    style = STATUS_STYLE.get(result.status, "")
    t.add_row("run", f"{escape(result.name)} ({result.run_id})")
    t.add_row("status", f"[{style}]{result.status}[/]" + (f" — {escape(result.stop_reason)}" if result.stop_reason else ""))
    if "best_val_loss" in s:
        metrics = "  ".join(f"{k[len('best_val_'):]} {v:.4f}" for k, v in s.items()
                            if k.startswith("best_val_") and k != "best_val_loss" and isinstance(v, (int, float)))
        t.add_row("best val loss", f"{s['best_val_loss']:.4f} at epoch {s.get('best_epoch')}  {metrics}")
    t.add_row("steps", f"{result.steps} in {s.get('seconds', 0):.1f}s on {s.get('device', '?')}")
    if s.get("diagnosis"):
        from danlu.curves import regime_title

        t.add_row("diagnosis", escape(regime_title(str(s["diagnosis"]))))
    t.add_row("stored in", escape(str(store.run_dir(result.run_id, create=False))))
    console.print(Panel(t, title="danlu train", expand=False))
    if result.status == "stopped" and result.stop_reason and result.stop_reason.startswith("interrupted"):
        err_console.print(f"resume with: [bold]danlu train --resume {result.run_id}[/]")
