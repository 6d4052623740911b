"""Reproducibility (S11, E1, E3, E4): seeding, the record every run keeps, code snapshots, diffs.

One module per job:

- seeding.py      seed_everything, rng_state / set_rng_state (checkpoints that resume exactly)
- capture.py      capture(): git state with the uncommitted diff, command, environment
- fingerprint.py  data_fingerprint(): the data version
- snapshot.py     snapshot_code() / load_snapshot() / diff_snapshots(): a copy of each run's code
- diff.py         differences() / diff_runs(): what differs between runs (`danlu diff`, dashboard)
"""

from __future__ import annotations

from danlu.repro.capture import RECORD_VERSION, capture, environment, git_info
from danlu.repro.fingerprint import data_fingerprint
from danlu.repro.seeding import rng_state, seed_everything, set_rng_state
from danlu.repro.snapshot import diff_snapshots, load_snapshot, snapshot_code

__all__ = [
    "RECORD_VERSION",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "capture",
    "git_info",
    "environment",
    "data_fingerprint",
    "snapshot_code",
    "load_snapshot",
    "diff_snapshots",
]
