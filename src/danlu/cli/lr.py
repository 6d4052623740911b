"""`danlu lr RECIPE`: find a learning rate: an LR range test, or the coarse scan (T4, T6)."""

from __future__ import annotations

import argparse

from danlu.cli.options import add_json_arg, add_store_arg, print_json, print_kept_report
from danlu.console import console, err_console, escape

__all__ = ["register", "cmd_lr", "parse_lrs"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lr",
        help="find a learning rate: LR range test (default) or the coarse scan (--scan)",
        description="LR range test: sweep the LR exponentially over training batches, smooth the loss, "
        "stop at divergence, and suggest the LR where the loss falls fastest, with that range and a "
        "confidence; model, optimizer and RNG states are restored exactly. --scan: short real runs at "
        "1e-1, 1e-2, 1e-3, 1e-4, each diagnosed (NaN -> ÷10, slow -> ×5-10), and the best with why. "
        "--ref RUN: the LR for this recipe's batch size from a reference run's, by the linear and "
        "square-root rules. The report and plot are stored as a run of kind 'lr'.",
        epilog="Examples:\n  danlu lr examples/digits.py\n  danlu lr examples/digits.py batch_size=256 --ref last\n"
        "  danlu lr examples/digits.py --scan --lrs 1e-1,1e-2,1e-3 --steps 200",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", help="recipe file: path.py or path.py:ClassName")
    p.add_argument("overrides", nargs="*", metavar="k=v", help="hyperparameter overrides, e.g. batch_size=128")
    p.add_argument("--scan", action="store_true", help="the coarse scan: short runs at a few LRs (T4)")
    p.add_argument("--lrs", default=None, metavar="LR,..", help="LRs for --scan (default 1e-1,1e-2,1e-3,1e-4)")
    p.add_argument("--steps", type=int, default=None,
                   help="range test: sweep length (default 100); scan: max steps per run (default: 2 epochs)")
    p.add_argument("--start", type=float, default=1e-7, help="range test: first LR (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="range test: last LR (default 10)")
    p.add_argument("--ref", metavar="RUN", default=None,
                   help="reference run: rescale its LR to this recipe's batch size (T6)")
    p.add_argument("--scale-only", action="store_true", help="with --ref: only the batch-size rescaling")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: auto)")
    p.add_argument("--no-save", action="store_true", help="do not store the report and plot")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_lr)


def parse_lrs(text: str | None):
    from danlu.errors import DanluError
    from danlu.lr import DEFAULT_SCAN_LRS

    if not text:
        return DEFAULT_SCAN_LRS
    try:
        lrs = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise DanluError(f"--lrs takes comma-separated numbers, e.g. --lrs 1e-1,1e-2,1e-3 (got '{text}').") from None
    if not lrs or min(lrs) <= 0:
        raise DanluError(f"--lrs needs positive learning rates, e.g. --lrs 1e-1,1e-2,1e-3 (got '{text}').")
    return lrs


def cmd_lr(args: argparse.Namespace) -> int:
    import danlu

    if not args.json and args.scan:
        err_console.print("[dim]coarse scan: a short run per LR ...[/]")
    report = danlu.lr_find(args.recipe, overrides=args.overrides, scan=args.scan,
                           lrs=parse_lrs(args.lrs) if args.scan else None, steps=args.steps, start=args.start,
                           end=args.end, ref=args.ref, scale_only=args.scale_only, device=args.device,
                           store=args.store, save=not args.no_save)
    if args.json:
        print_json(report.to_dict())
    else:
        _print(report, args)
    return 1 if report.status == "fail" else 0


def _print(report, args) -> None:
    from danlu.render import terminal_plot

    points = report.meta.get("points")
    if points:
        lrs = [lr for lr, v in zip(points["lr"], points["smoothed"]) if v is not None]
        ys = [v for v in points["smoothed"] if v is not None]
        marks = {"suggested": report.meta.get("suggestion")}
        top = 1.5 * ys[0] if ys and ys[0] > 0 else None  # keep the descent readable past divergence
        console.print(escape(terminal_plot(lrs, ys, logx=True, width=60, height=10, marks=marks, ymax=top,
                                           xlabel="learning rate (smoothed training loss)")))
    print_kept_report(report, args)
