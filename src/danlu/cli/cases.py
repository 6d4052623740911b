"""`danlu cases RUN [RUN ...]`: study a trained run's errors on the whole validation set (C2, C3, C4)."""

from __future__ import annotations

import argparse
import tempfile

from danlu.cli.common import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import err_console, escape

__all__ = ["register", "cmd_cases", "cases_and_save"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cases",
        help="case study of a trained run: per-class metrics, confusions, worst cases, suspicious labels, slices",
        description="Evaluate a run's best checkpoint on the whole validation set (C3): per-class precision, "
        "recall and F1, the confusion matrix, the majority baseline (residuals for regression), the worst "
        "cases, suspicious labels (confident predictions of another class) and the weakest slices (C2). "
        "With several runs, also the ensemble (probability averaging and voting) against each member (C4). "
        "The report is stored with the (first) run.",
        epilog="Examples:\n  danlu cases last\n  danlu cases brave-otter --top 20\n"
        "  danlu cases run-a run-b run-c      # C4 ensemble of three seeds",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="id, id prefix, name, or 'last'")
    p.add_argument("--top", type=int, default=10, metavar="K", help="how many worst cases / suspicious labels")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--no-save", action="store_true", help="do not store the report with the run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_cases)


def cmd_cases(args: argparse.Namespace) -> int:
    from danlu.errors import DanluError
    from danlu.render import print_report

    if args.top < 1:
        raise DanluError(f"--top must be at least 1, got {args.top}.")
    store = open_store_from_args(args, create=False)
    report = cases_and_save(store, args.runs, top=args.top, device=args.device,
                            progress=not (args.quiet or args.json), save=not args.no_save)
    if args.json:
        print_json(report.to_dict())
    else:
        print_report(report)
        if not args.no_save:
            first = report.meta["runs"][0]
            err_console.print(f"[dim]stored with run {escape(first)}; images under "
                              f"{escape(str(store.run_dir(first, create=False)))}[/]")
    return 0


def cases_and_save(store, refs: list[str], *, top: int = 10, device: str | None = None, progress: bool = True,
                   save: bool = True):
    """Case study of the runs `refs` (several: with the C4 ensemble), stored with the first run; returns the Report."""
    import torch

    from danlu.evaluation.runs import load_run, save_cases
    from danlu.evaluation.case_study import build_report, predict_with_progress
    from danlu.errors import DanluError

    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = [load_run(store, ref, device="cpu") for ref in refs]
    if len({r.record.id for r in loaded}) != len(loaded):
        raise DanluError("The same run is named twice; an ensemble needs different runs.")
    preds, names, val = [], [], None
    for run in loaded:
        train, val_k = run.recipe.data()
        run.recipe.resolve_task(train)
        preds.append(predict_with_progress(run.recipe, run.model, val_k, dev, progress, run.record.name))
        names.append(run.record.name)
        val = val if val is not None else val_k
        if len(preds[-1]) != len(preds[0]) or (preds[-1].targets != preds[0].targets).any():
            raise DanluError(f"Run {names[-1]} was validated on other data than {names[0]}; an ensemble (C4) "
                             "needs runs of the same validation set.")
    first = loaded[0].record
    title = (f"case study of {first.name} ({first.id}) on {len(preds[0]):,} validation samples"
             + (f", with an ensemble of {len(preds)} runs" if len(preds) > 1 else ""))
    with tempfile.TemporaryDirectory(prefix="danlu-cases-") as tmp:
        report = build_report(preds, names, val, top_k=top, out_dir=tmp, title=title)
        report.meta["runs"] = [r.record.id for r in loaded]
        report.meta["checkpoints"] = [str(r.checkpoint) for r in loaded]
        if save:
            save_cases(store, first.id, report, tmp)
    return report
