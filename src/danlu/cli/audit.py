"""`danlu audit RECIPE [k=v ...]`: know the data before training (D1-D8).

Exit status 1 when the audit finds leakage or invalid samples (a CI gate), 0 otherwise.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile

from danlu.cli.common import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import console, err_console, escape

__all__ = ["register", "cmd_audit", "audit_and_save"]


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
    p.add_argument("--run", default=None, metavar="RUN",
                   help="attach the audit to this run (and audit its recipe when RECIPE is not given)")
    p.add_argument("--no-save", action="store_true", help="do not write the audit to the store")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from danlu.errors import DanluError
    from danlu.recipe import load_recipe, load_recipe_class, parse_overrides
    from danlu.render import print_report

    store = None if args.no_save and not args.run else open_store_from_args(args)
    run_id = None
    if args.run:
        record = store.get_run(args.run)
        run_id = record.id
        if args.recipe:
            recipe = load_recipe(args.recipe, parse_overrides(args.overrides))
        elif record.recipe:
            recipe = load_recipe_class(record.recipe)(**record.config)
            if args.overrides:
                recipe = type(recipe).from_strings({**{k: str(v) for k, v in record.config.items()},
                                                     **parse_overrides(args.overrides)})
        else:
            raise DanluError(f"Run {record.name} ({record.id}) has no recipe; give the RECIPE file to audit.")
    elif not args.recipe:
        raise DanluError("Give a recipe file to audit, e.g. `danlu audit examples/digits.py`.")
    else:
        recipe = load_recipe(args.recipe, parse_overrides(args.overrides))
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None

    report, run_id = audit_and_save(None if args.no_save else store, recipe, limit=args.limit, only=only,
                                    progress=not (args.quiet or args.json), run_id=run_id)
    if args.json:
        print_json(report.to_dict())
    else:
        print_report(report)
        if run_id and not args.no_save:
            folder = store.run_dir(run_id, create=False)
            err_console.print(f"[dim]saved with run {escape(run_id)}; images under {escape(str(folder))}[/]")
        elif report.images:
            console.print("[dim]images were not kept (--no-save)[/]")
    return 1 if report.status == "fail" else 0


def audit_and_save(store, recipe, *, limit: int | None = None, only: list[str] | None = None,
                   progress: bool = True, run_id: str | None = None):
    """Audit `recipe` and keep the report (and its images) in `store`; returns (report, run id or None).

    Without run_id the audit becomes a run of kind "audit"; with one it is attached to
    that run. store=None audits without saving (the images are then discarded).
    """
    from danlu.checks.audit import audit
    from danlu.checks.audit.save import save_audit

    with tempfile.TemporaryDirectory(prefix="danlu-audit-") as tmp:
        report = audit(recipe, limit=limit, progress=progress, out_dir=tmp, only=only)
        if store is not None:
            run_id = save_audit(store, recipe, report, tmp, run_id=run_id, command=shlex.join(sys.argv))
    return report, run_id
