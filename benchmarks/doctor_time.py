"""Time of the full `danlu check` on a recipe (default: examples/digits.py), check by check.

    .venv/bin/python benchmarks/doctor_time.py [RECIPE] [--repeat 3] [--threads N]

The issue's target: every check on examples/digits.py with no fail and no warn, in at
most 60 s on a 2-core CPU. Prints each check's status and seconds, the total of each
repetition and the median, and exits 1 if any check warns or fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from danlu.checks import run_checks
from danlu.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=str(ROOT / "examples" / "digits.py"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    totals, per_check, quiet = [], {}, True
    for i in range(args.repeat):
        recipe = load_recipe(args.recipe)  # fresh recipe each time: nothing cached between runs
        start = time.perf_counter()
        report = run_checks(recipe)
        totals.append(time.perf_counter() - start)
        for f in report.findings:
            per_check.setdefault(f.id, []).append(f.seconds)
            if f.status in ("warn", "fail"):
                quiet = False
                print(f"  run {i + 1}: {f.id} {f.status}: {f.summary}")
    print(f"{Path(args.recipe).name}: {len(per_check)} checks, {args.repeat} runs, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'check':<6}{'status':<8}{'median s':>10}")
    for f in report.findings:
        print(f"{f.id:<6}{f.status:<8}{statistics.median(per_check[f.id]):>10.3f}")
    print(f"total: median {statistics.median(totals):.1f} s (runs: {', '.join(f'{t:.1f}' for t in totals)}); "
          f"{'no warn, no fail' if quiet else 'NOT QUIET'}")
    return 0 if quiet else 1


if __name__ == "__main__":
    sys.exit(main())
