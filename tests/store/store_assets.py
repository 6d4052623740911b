"""Write the store asset of the current schema version (PRACTICES #4: old databases kept
as test assets, as Optuna keeps its old .db files).

Run it once per schema version, with the danlu that writes that version, and commit the
result; never regenerate an existing version's file:

    .venv/bin/python tests/store/store_assets.py      # -> tests/assets/store-v<N>/danlu.db

tests/store/test_store_safety.py opens every committed version with today's danlu and
checks that EXPECTED below survives the upgrade.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"

#: What every store asset holds (the test compares against it after migrating).
EXPECTED = {
    "baseline": {
        "status": "finished", "kind": "train", "recipe": "/project/examples/digits.py:Digits",
        "note": "baseline: default hyperparameters", "tags": ["main"],
        "config": {"lr": 0.0003, "hidden": 64, "seed": 0},
        "summary": {"best_val_loss": 0.125, "epoch_of_best": 3, "acc": 0.97},
        "repro": {"git": {"commit": "0123abc", "dirty": False}, "python": "3.11.7"},
    },
    "probe": {"status": "running", "kind": "init", "host": "asset-builder", "tags": ["explore", "wide"]},
}


def loss_at(step: int) -> float:
    """train/loss of "baseline": with a NaN at step 50 and +inf at step 60."""
    if step == 50:
        return math.nan
    if step == 60:
        return math.inf
    return 2.0 / (1 + step)


def build(folder: Path) -> Path:
    from danlu.store import open_store
    from danlu.store.sqlite import SCHEMA_VERSION

    target = folder / f"store-v{SCHEMA_VERSION}"
    if (target / "danlu.db").exists():
        raise SystemExit(f"{target / 'danlu.db'} exists; a committed asset is never regenerated")
    store = open_store(target)
    spec = EXPECTED["baseline"]
    base = store.create_run(name="baseline", kind=spec["kind"], recipe=spec["recipe"], config=spec["config"],
                            note=spec["note"], tags=spec["tags"], command="danlu train examples/digits.py")
    # written as a resumed run writes it (since v2: two chunks, the second replacing steps
    # 70-79 of the first); what reads back is loss_at for every step, in any version
    store.log_points(base.id, [("train/loss", s, loss_at(s) if s < 70 else -1.0, 1.7e9 + s) for s in range(80)])
    store.log_points(base.id, [("train/loss", s, loss_at(s), 1.8e9 + s) for s in range(70, 100)])
    store.log_points(base.id, [("val/loss", s, 1.0 / (1 + s), 1.7e9 + s) for s in range(0, 100, 10)])
    store.save_report(base.id, "doctor", {"kind": "doctor", "findings": [{"id": "S1", "status": "pass"}]})
    store.update_run(base.id, status="finished", summary=spec["summary"], repro=spec["repro"],
                     ended=base.created + 42.0)
    probe = store.create_run(name="probe", kind="init", tags=EXPECTED["probe"]["tags"])
    # a run left "running" by a process on another machine whose heartbeat long stopped
    store.update_run(probe.id, host="asset-builder", pid=1, heartbeat=1.7e9)
    store.log_points(probe.id, [("x", 0, 1.0, 1.7e9)])
    store.close()  # the last connection checkpoints the WAL into danlu.db: one file to commit
    for extra in ("danlu.db-wal", "danlu.db-shm"):
        assert not (target / extra).exists(), extra
    return target / "danlu.db"


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else ASSETS))
