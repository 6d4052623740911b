"""The local study storage (danlu.tuning.storage): the journal file many workers share."""

from __future__ import annotations

import multiprocessing as mp

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from danlu.tuning.storage import open_storage

WRITES = 30


def _writer(url: str, tag: str) -> None:
    storage = open_storage(url)
    study = optuna.load_study(study_name="shared", storage=storage)
    for i in range(WRITES):
        trial = study.ask()
        trial.set_user_attr("writer", tag)
        study.tell(trial, float(i))


def test_two_processes_append_every_record_and_optuna_reads_them_back(tmp_path):
    """Records are appended under the journal's lock and not fsync'd (docs/study.md): two
    processes writing at once must still leave every trial whole, readable by Optuna's own
    journal reader, as a crash-safe store needs."""
    url = f"journal:{tmp_path / 'studies.journal'}"
    optuna.create_study(study_name="shared", storage=open_storage(url))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    plain = JournalStorage(JournalFileBackend(str(tmp_path / "studies.journal")))
    trials = optuna.load_study(study_name="shared", storage=plain).get_trials()
    assert len(trials) == 2 * WRITES
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.user_attrs["writer"] for t in trials) == ["a"] * WRITES + ["b"] * WRITES
    assert len({t.number for t in trials}) == 2 * WRITES
