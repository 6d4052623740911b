"""The LR range test against ground truth (issue 4, T4).

    .venv/bin/python benchmarks/lr_finder.py [--seeds 0 1]

For each seed: the finder's suggested LR on examples/digits.py, then full runs of the recipe
at a 5-point log grid of LRs; prints the grid's best LR (lowest best validation loss), the
ratio between suggestion and grid best (target <= 3), and whether the swept model came back
bit-identical.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from danlu.engine import fit  # noqa: E402
from danlu.lr import lr_range_test  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402

GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
DIGITS = ROOT / "examples" / "digits.py"


def one_seed(seed: int, store: Path) -> dict:
    recipe = load_recipe(DIGITS, [f"seed={seed}"])
    torch.manual_seed(seed)
    model = recipe.model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    report = lr_range_test(recipe, model=model, optimizer=recipe.optimizer(model.parameters()))
    sweep_s = time.perf_counter() - t0
    untouched = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    scores = {}
    for lr in GRID:
        res = fit(load_recipe(DIGITS, [f"lr={lr}", f"seed={seed}"]), store=store, progress=False, capture=False)
        scores[lr] = res.summary["best_val_loss"]
    best = min(scores, key=scores.get)
    suggestion = report.meta["suggestion"]
    return {"seed": seed, "suggestion": suggestion, "confidence": report.meta.get("confidence"),
            "grid_best": best, "ratio": max(suggestion, best) / min(suggestion, best),
            "scores": scores, "untouched": untouched, "sweep_s": sweep_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_seed(s, Path(tmp) / "store") for s in args.seeds]
    print("grid: " + ", ".join(f"{lr:g}" for lr in GRID) + " (full runs of examples/digits.py, best val loss)")
    print(f"{'seed':>4} {'suggested':>10} {'conf':>6} {'grid best':>10} {'ratio':>6} {'untouched':>9} "
          f"{'sweep s':>8}  grid val losses")
    for r in rows:
        losses = " ".join(f"{lr:g}:{v:.4f}" for lr, v in r["scores"].items())
        print(f"{r['seed']:>4} {r['suggestion']:>10.3g} {r['confidence']:>6} {r['grid_best']:>10g} "
              f"{r['ratio']:>6.2f} {str(r['untouched']):>9} {r['sweep_s']:>8.2f}  {losses}")


if __name__ == "__main__":
    main()
