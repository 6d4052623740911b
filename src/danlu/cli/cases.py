"""`danlu cases RUN [RUN ...]`: study a trained run's errors on the whole validation set (C2, C3, C4)."""

from __future__ import annotations

import argparse

from danlu.cli.options import add_json_arg, add_store_arg, print_json, print_kept_report

__all__ = ["register", "cmd_cases"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cases",
        help="case study of a trained run: per-class metrics, confusions, worst cases, suspicious labels, slices",
        description="Evaluate a run's best checkpoint on the whole validation set (C3): per-class precision, "
        "recall and F1, the confusion matrix, the majority baseline (residuals for regression), the worst "
        "cases, suspicious labels (confident predictions of another class) and the weakest slices (C2). "
        "With several runs, also the ensemble (probability averaging and voting) against each member (C4). "
        "--split train looks for wrong labels in the training data: the run's recipe is trained K more "
        "times, each without one fold, so every training sample is predicted by a model that never saw it. "
        "The report is stored with the (first) run.",
        epilog="Examples:\n  danlu cases last\n  danlu cases brave-otter --top 20\n"
        "  danlu cases run-a run-b run-c      # C4 ensemble of three seeds\n"
        "  danlu cases last --split train     # suspicious training labels (trains 3 fold models)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="id, id prefix, name, or 'last'")
    p.add_argument("--top", type=int, default=10, metavar="K", help="how many worst cases / suspicious labels")
    p.add_argument("--split", choices=("val", "train"), default="val",
                   help="which split to study (default: val); train uses out-of-fold models")
    p.add_argument("--folds", type=int, default=3, metavar="K",
                   help="with --split train: how many fold models to train (default: 3)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--no-save", action="store_true", help="do not store the report with the run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_cases)


def cmd_cases(args: argparse.Namespace) -> int:
    import danlu

    report = danlu.cases(args.runs, top=args.top, split=args.split, folds=args.folds, device=args.device,
                         progress=not (args.quiet or args.json), store=args.store, save=not args.no_save)
    if args.json:
        print_json(report.to_dict())
    else:
        print_kept_report(report, args)
    return 0
