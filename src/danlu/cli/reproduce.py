"""`danlu reproduce RUN`: re-run a recorded run from its code snapshot and compare the curves (E1, E4, S11)."""

from __future__ import annotations

import argparse

from danlu.cli.options import add_json_arg, add_store_arg, print_json
from danlu.console import console, escape

__all__ = ["register", "cmd_reproduce"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="re-run a run from its code snapshot and compare curves point by point",
                       description="Re-runs a recorded run with its snapshotted code, hyperparameters and seed, "
                       "then compares every logged point of the new run with the recorded one.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="largest deviation still counted as reproduced (default 0: bit-identical, as on CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    import danlu
    from danlu.cli.train import print_result
    from danlu.store import open_store

    out = danlu.reproduce(args.run, store=args.store, tolerance=args.tolerance, device=args.device,
                          progress=not args.quiet)
    if args.json:
        print_json(out.to_dict())
        return 0 if out.reproduced else 1
    print_result(open_store(args.store, create=False), out.fit)
    for name, c in out.series.items():
        first = c["first_different_step"]
        console.print(f"  {escape(name):<20} {c['points']:>6} points  max deviation {c['max_deviation']:.3g}"
                      + (f"  (first at step {first})" if first is not None else ""))
    verdict = "[green]reproduced[/]" if out.reproduced else "[red]NOT reproduced[/]"
    console.print(f"{verdict}: largest deviation {out.max_deviation:.3g} over {len(out.series)} series "
                  f"(tolerance {args.tolerance:g}); {out.unmatched} unmatched points")
    return 0 if out.reproduced else 1
