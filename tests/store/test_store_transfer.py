"""`danlu push` / `danlu pull` (issue 15): runs copied between stores with nothing lost and
nothing twice, into every backend of conftest.BACKENDS (SQLite, and PostgreSQL when CI
starts one): the record, every curve bit for bit, the reports, the run folder's files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from danlu.cli import main
from danlu.errors import StoreError
from danlu.store import Store, open_store
from danlu.store.transfer import copy_runs


def _offline_run(store: Store, name: str = "laptop-run") -> str:
    run = store.create_run(name=name, config={"lr": 1e-3}, note="offline", tags=["laptop"])
    folder = store.run_dir(run.id)
    (folder / "best.pt").write_bytes(b"weights" * 100)
    (folder / "code").mkdir()
    (folder / "code" / "recipe.py").write_text("print('hi')\n")
    values = [2.0, 1.5, float("nan"), float("inf"), -0.0, 0.5]
    store.log_points(run.id, [("train/loss", i, v, 1.7e9 + i) for i, v in enumerate(values)])
    store.log_points(run.id, [("val/loss", 10, 1.25, 1.7e9 + 10)])
    store.save_report(run.id, "diagnosis", {"title": "healthy", "images": [str(folder / "curve.png")]})
    store.update_run(run.id, status="finished", ended=run.created + 5,
                     summary={"best_val_loss": 1.25, "checkpoints": {"best": str(folder / "best.pt")}})
    return run.id


def test_a_run_is_copied_whole_and_again_adds_nothing(tmp_path, store):
    source = open_store(tmp_path / "laptop")
    run_id = _offline_run(source)
    first = copy_runs(source, store, ["laptop-run"])
    assert [(c.state, c.series, c.points, c.reports, c.files) for c in first] == [("new", 2, 7, 1, 2)]
    got, want = store.get_run(run_id), source.get_run(run_id)
    assert (got.name, got.config, got.note, got.tags, got.status, got.created) == \
           (want.name, want.config, want.note, want.tags, want.status, want.created)
    target_dir = store.run_dir(run_id, create=False)
    assert got.summary["checkpoints"]["best"] == str(target_dir / "best.pt")       # points into the target
    assert (target_dir / "best.pt").read_bytes() == b"weights" * 100 and (target_dir / "code" / "recipe.py").exists()
    steps, values = store.read_series(run_id, "train/loss")
    assert steps.tolist() == list(range(6))
    assert np.array_equal(values, source.read_series(run_id, "train/loss")[1], equal_nan=True)
    assert math.copysign(1.0, values[4]) == -1.0                                    # bytes, kept bit for bit
    assert store.list_reports(run_id=run_id)[0].data["images"] == [str(target_dir / "curve.png")]

    again = copy_runs(source, store, [run_id])
    assert [(c.state, c.series, c.reports, c.files) for c in again] == [("unchanged", 0, 0, 0)]
    assert len(store.list_reports(run_id=run_id)) == 1 and len(store.list_runs()) == 1

    source.save_report(run_id, "cases", {"title": "worst errors"})      # studied later on the laptop
    source.log_points(run_id, [("train/loss", 6, 0.25, 1.7e9 + 6)])
    later = copy_runs(source, store, [run_id])
    assert [(c.state, c.series, c.reports) for c in later] == [("updated", 1, 1)]
    assert len(store.list_reports(run_id=run_id)) == 2 and store.read_series(run_id, "train/loss")[0][-1] == 6


def test_a_name_the_target_uses_for_another_run_is_kept_apart(tmp_path, store):
    source = open_store(tmp_path / "laptop")
    run_id = _offline_run(source)
    theirs = store.create_run(name="laptop-run")
    store.update_run(theirs.id, status="finished")
    copied = copy_runs(source, store, [run_id])[0]
    assert copied.name == f"laptop-run-{run_id[:4]}" and copied.renamed_from == "laptop-run"
    assert store.get_run("laptop-run").id == theirs.id and store.get_run(run_id).name == copied.name
    assert copy_runs(source, store, [run_id])[0].state == "unchanged"       # still the same run, not a third


def test_a_running_run_is_refused(tmp_path, store):
    source = open_store(tmp_path / "laptop")
    run = source.create_run(name="still-going")
    with pytest.raises(StoreError, match="still running"):
        copy_runs(source, store, [run.id])


def test_push_and_pull_from_the_command_line(tmp_path, capsys):
    laptop, team, other = tmp_path / "laptop", tmp_path / "team", tmp_path / "other"
    run_id = _offline_run(open_store(laptop))
    assert main(["push", "laptop-run", "--to", str(team), "--store", str(laptop), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "new"
    assert main(["pull", run_id[:6], "--from", str(team), "--store", str(other)]) == 0
    out = capsys.readouterr().out
    assert "new" in out and "laptop-run" in out
    assert main(["push", "laptop-run", "--to", str(team), "--store", str(laptop)]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert main(["push", "no-such-run", "--to", str(team), "--store", str(laptop)]) != 0
