"""`danlu reproduce RUN`: re-run a recorded run from its code snapshot and compare the curves (E1, E4, S11)."""

from __future__ import annotations

import argparse
import math

import numpy as np

from danlu.cli.common import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import console, escape

__all__ = ["register", "load_recorded_recipe", "compare_series"]


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


def load_recorded_recipe(store, record):
    """The run's recipe class, loaded from its own code snapshot (E4), not today's files."""
    from danlu.errors import DanluError
    from danlu.repro import load_snapshot

    if not record.recipe:
        raise DanluError(f"Run {record.name} was not made by `danlu train`; there is no recipe to re-run.")
    code = store.run_dir(record.id, create=False) / "code"
    class_name = record.recipe.rpartition(":")[2] or None
    try:
        return load_snapshot(code, class_name)
    except FileNotFoundError:
        raise DanluError(
            f"Run {record.name} has no code snapshot in {code}; it cannot be re-run from its own code. "
            f"Re-run it from the current code with: danlu train {record.recipe} "
            + " ".join(f"{k}={v}" for k, v in record.config.items())
        ) from None


def compare_series(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> dict:
    """Point-by-point comparison of two (steps, values) series on their common steps."""
    (sa, va), (sb, vb) = a, b
    common, ia, ib = np.intersect1d(sa, sb, return_indices=True)
    x, y = va[ia], vb[ib]
    both_nan = np.isnan(x) & np.isnan(y)
    dev = np.where(both_nan, 0.0, np.abs(x - y))
    dev = np.where(np.isnan(dev), math.inf, dev)
    out = {"points": int(len(common)), "only_recorded": int(len(sa) - len(common)),
           "only_new": int(len(sb) - len(common)), "max_deviation": float(dev.max()) if len(dev) else 0.0}
    bad = np.nonzero(dev > 0)[0]
    out["first_different_step"] = int(common[bad[0]]) if len(bad) else None
    return out


def cmd_reproduce(args: argparse.Namespace) -> int:
    from danlu.cli.train import print_result
    from danlu.engine import fit

    store = open_store_from_args(args)
    record = store.get_run(args.run)
    recipe = load_recorded_recipe(store, record)(**record.config)
    result = fit(recipe, store=store, note=f"reproduction of {record.name}", tags=["reproduce"],
                 device=args.device, progress=not args.quiet, parent=record.id)
    comparison = {}
    for name in store.series_names(record.id):
        if name in store.series_names(result.run_id):
            comparison[name] = compare_series(store.read_series(record.id, name),
                                              store.read_series(result.run_id, name))
    worst = max((c["max_deviation"] for c in comparison.values()), default=math.inf)
    missing = sum(c["only_recorded"] + c["only_new"] for c in comparison.values())
    ok = bool(comparison) and worst <= args.tolerance and missing == 0
    if args.json:
        print_json({"recorded": record.id, "new": result.run_id, "max_deviation": worst,
                    "reproduced": ok, "series": comparison})
    else:
        print_result(store, result)
        for name, c in comparison.items():
            console.print(f"  {escape(name):<20} {c['points']:>6} points  max deviation {c['max_deviation']:.3g}"
                          + (f"  (first at step {c['first_different_step']})" if c["first_different_step"] is not None else ""))
        verdict = "[green]reproduced[/]" if ok else "[red]NOT reproduced[/]"
        console.print(f"{verdict}: largest deviation {worst:.3g} over {len(comparison)} series "
                      f"(tolerance {args.tolerance:g}); {missing} unmatched points")
    return 0 if ok else 1
