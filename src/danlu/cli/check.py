"""`danlu check RECIPE [k=v ...]`: the preflight sanity checks (S1-S13, D4, D7) in under a minute."""

from __future__ import annotations

import argparse

from danlu.cli.options import add_json_arg, add_store_arg, print_json, print_kept_report

__all__ = ["register", "cmd_check"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="run the preflight sanity checks on a recipe (data, model, one step, short training)",
        description="Run the practitioners' sanity experiments on a recipe: data interface, input scale, "
        "model size, train/eval mode, initial loss, outputs vs loss, gradients, batch independence, "
        "NaN/Inf, overfitting one batch and 10 samples, input dependence, determinism and speed. "
        "One line per check; exit status 1 when any check fails.",
        epilog="Examples:\n  danlu check examples/digits.py\n"
        "  danlu check examples/digits.py lr=1e-2 --only S2,S3\n"
        "  danlu check recipe.py --skip S12 --set S1.max_params=5e6 --json\n"
        "  danlu check recipe.py --nproc 2 --only S14     # multi-process training works (DDP, gloo on CPU)\n"
        "  danlu check model.py:LitModel --datamodule model.py:LitData   # a LightningModule\n"
        "  danlu check build.py:make_trainer              # a Hugging Face Trainer set-up\n"
        "Thresholds: see docs/checks.md; change one with --set ID.setting=value.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", help="recipe file: path.py or path.py:ClassName; or path.py:MyLightningModule, or "
                   "path.py:make_trainer (a function returning a transformers Trainer)")
    p.add_argument("overrides", nargs="*", metavar="k=v", help="hyperparameter overrides, e.g. lr=1e-3")
    p.add_argument("--datamodule", metavar="FILE.py:CLASS", default=None,
                   help="the LightningDataModule that feeds a LightningModule")
    p.add_argument("--only", metavar="ID,..", default=None, help="run only these checks, e.g. S4,S7")
    p.add_argument("--skip", metavar="ID,..", default=None, help="skip these checks, e.g. S12")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="ID.name=value",
                   help="change a threshold, e.g. --set S1.max_params=5e6 (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, or auto")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="also test training with N processes (S14: DDP, sharding, the loss's reduction)")
    p.add_argument("--no-save", action="store_true", help="do not save the report in the store")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="show cause/fix/details for every check")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    import danlu
    from danlu.checks import parse_settings

    settings = parse_settings(args.settings)
    if args.nproc > 1:
        settings["S14.nproc"] = args.nproc
    report = danlu.check(
        args.recipe, args.datamodule, overrides=args.overrides, only=args.only, skip=args.skip,
        settings=settings, device=args.device, progress=not (args.quiet or args.json),
        store=args.store, save=not args.no_save,
    )
    if args.json:
        print_json(report.to_dict())
        return 1 if report.status == "fail" else 0
    seconds = report.meta.get("seconds", 0.0)
    report.title += f" ({len(report.findings)} checks in {seconds:.1f} s)"
    print_kept_report(report, args, verbose=args.verbose)
    return 1 if report.status == "fail" else 0
