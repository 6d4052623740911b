"""What one study trial costs beyond its training (issue 16), on a task small enough that it shows.

Times, per trial, the breast-cancer MLP of benchmarks/study_efficiency.py (150 steps):

- plain:        the plain loop an Optuna objective holds (no store, no record);
- danlu trial:  danlu.fit as a study worker runs it (git and environment asked once per
                worker, data() loaded once per worker, last.pt written once at the end);
- (the same, with data() called for every trial, as before issue 16's data reuse);
- danlu run:    danlu.fit as `danlu train` runs it (full record every time, last.pt every epoch).

and what one record in the study's journal file costs (a trial writes about 20: parameters,
reports, outcome), with Optuna's JournalFileBackend (an fsync per record) and with danlu's
(flushed to the operating system, not fsync'd: danlu.tuning.storage).

    python benchmarks/trial_overhead.py --repeat 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study_efficiency as bench  # noqa: E402

from danlu.data_reuse import reusing_data  # noqa: E402
from danlu.engine import fit  # noqa: E402
from danlu.repro.capture import reusing_sections  # noqa: E402

PARAMS = {"lr": 1e-3, "hidden": 32, "dropout": 0.1}


def _time(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    task = bench.TASKS["cancer"]
    recipe = bench._recipe(task, PARAMS)
    store = tempfile.mkdtemp(prefix="danlu-bench-")
    fit(recipe, store=store, progress=False)              # warm-up: imports, first-call costs
    bench._plain_fit(task, PARAMS)
    rows = {"plain": _time(lambda: bench._plain_fit(task, PARAMS), args.repeat)}
    with reusing_sections(), reusing_data():
        rows["danlu trial"] = _time(lambda: fit(recipe, store=store, progress=False, resumable=False), args.repeat)
    with reusing_sections():
        rows["  data() each trial"] = _time(lambda: fit(recipe, store=store, progress=False, resumable=False),
                                            args.repeat)
    rows["danlu run"] = _time(lambda: fit(recipe, store=store, progress=False), args.repeat)
    print(f"{'per trial (150 steps)':<22} {'median s':>9} {'min s':>7} {'x plain':>8}")
    base = statistics.median(rows["plain"])
    for name, times in rows.items():
        print(f"{name:<22} {statistics.median(times):>9.3f} {min(times):>7.3f} {statistics.median(times) / base:>8.2f}")
    _journal_records(store)
    return 0


def _journal_records(folder: str, records: int = 2000) -> None:
    """Milliseconds per trial user attribute written to a journal file (write, then read back)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from danlu.tuning.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kinds = {"optuna (fsync)": lambda p: JournalStorage(JournalFileBackend(p)),
             "danlu": lambda p: open_storage(f"journal:{p}")}
    print(f"\n{'journal record':<22} {'ms':>9}")
    for name, make in kinds.items():
        storage = make(str(Path(folder) / f"{name.split()[0]}.journal"))
        trial = optuna.create_study(storage=storage).ask()
        start = time.perf_counter()
        for i in range(records):
            storage.set_trial_user_attr(trial._trial_id, f"k{i % 20}", i)
        print(f"{name:<22} {(time.perf_counter() - start) / records * 1e3:>9.3f}")


if __name__ == "__main__":
    sys.exit(main())
