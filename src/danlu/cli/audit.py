"""`danlu audit RECIPE [k=v ...]`: know the data before training (D1-D8).

Exit status 1 when the audit finds leakage or invalid samples (a CI gate), 0 otherwise.
"""

from __future__ import annotations

import argparse

from danlu.cli.options import add_json_arg, add_store_arg, print_json, print_kept_report

__all__ = ["register", "cmd_audit"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="audit a recipe's data: classes, sizes, statistics, duplicates, leakage, bad samples, time",
        description="Read the recipe's training and validation data once and report class balance and the "
        "majority baseline (D1), sizes (D2), samples as the model sees them (D3), normalisation statistics (D4), "
        "duplicates and train/val leakage (D5), unreadable/NaN/out-of-range samples (D6), augmentation and "
        "shuffling (D7) and the estimated training time (D8). Exits 1 on leakage or invalid samples.",
        epilog="Examples:\n  danlu audit examples/digits.py\n  danlu audit my_recipe.py --limit 20000 --json\n"
        "  danlu audit --run last            # the data of a training run, attached to it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", nargs="?", help="recipe file: path.py or path.py:ClassName")
    p.add_argument("overrides", nargs="*", metavar="k=v", help="hyperparameter overrides, e.g. batch_size=128")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="read at most N samples per split (a seeded random sample) for large data")
    p.add_argument("--only", default="", metavar="IDS", help="only these practice IDs, e.g. D5,D6")
    p.add_argument("--skip", default="", metavar="IDS", help="skip these practice IDs, e.g. D8")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="ID.name=value",
                   help="change a threshold, e.g. --set D4.mean_far=5 (repeatable; see docs/audit.md)")
    p.add_argument("--run", default=None, metavar="RUN",
                   help="attach the audit to this run (and audit its recipe when RECIPE is not given)")
    p.add_argument("--no-save", action="store_true", help="do not write the audit to the store")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    import danlu
    from danlu.checks import parse_settings
    from danlu.errors import DanluError

    if not args.recipe and not args.run:
        raise DanluError("Give a recipe file to audit, e.g. `danlu audit examples/digits.py`, or --run RUN.")
    report = danlu.audit(
        args.recipe, overrides=args.overrides, run=args.run, limit=args.limit, only=args.only or None,
        skip=args.skip or None, settings=parse_settings(args.settings), progress=not (args.quiet or args.json),
        store=args.store, save=not args.no_save,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        print_kept_report(report, args)
    return 1 if report.status == "fail" else 0
