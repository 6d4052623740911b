"""Bad input and everyday use of the `danlu` command (issue 14): each surprise reproduced, each answer
a message that names the field or run and the fix, an exit code scripts can trust, nothing lost."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from danlu.cli import main

RECIPE = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset
import danlu

class R(danlu.Recipe):
    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-2
    mode: str = "ok"

    def data(self):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
        if self.mode == "three":
            return TensorDataset(x, y), TensorDataset(x, y), TensorDataset(x, y)
        if self.mode == "one":
            return TensorDataset(x, y)
        if self.mode == "empty_val":
            return TensorDataset(x, y), TensorDataset(x[:0], y[:0])
        if self.mode == "nan":
            x[:, 0] = float("nan")
        if self.mode == "crash":
            raise FileNotFoundError("data/train.csv")
        return TensorDataset(x[:48], y[:48]), TensorDataset(x[48:], y[48:])

    def model(self):
        if self.mode == "not_module":
            return lambda x: x
        return nn.Linear(4, 2)
'''


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "r.py"
    path.write_text(RECIPE)
    return path


def s(tmp_path) -> list[str]:
    return ["--store", str(tmp_path / "s")]


def db_digest(tmp_path) -> str:
    return hashlib.sha256((tmp_path / "s" / "danlu.db").read_bytes()).hexdigest()


@pytest.mark.parametrize("override,field", [
    ("epochs=-1", "epochs"), ("batch_size=0", "batch_size"), ("lr=-0.1", "lr"), ("lr=nan", "lr"),
    ("lr=" + "9" * 400, "lr"), ("num_workers=-1", "num_workers"), ("grad_clip=inf", "grad_clip"),
])
def test_values_that_cannot_work_exit_2_before_training(tmp_path, recipe, capsys, override, field):
    assert main(["train", str(recipe), override, "--quiet", *s(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"R.{field} is" in err and "cannot work" in err and "must be" in err
    assert main(["runs", "--json", *s(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []            # no run was started


@pytest.mark.parametrize("mode,words", [
    ("three", "must return (train, val): two datasets; it returned tuple of length 3"),
    ("one", "must return (train, val)"),
    ("empty_val", "an empty validation set"),
    ("not_module", "must return a torch.nn.Module; it returned function"),
])
def test_a_broken_recipe_is_a_failed_run_and_exit_2(tmp_path, recipe, capsys, mode, words):
    assert main(["train", str(recipe), f"mode={mode}", "--quiet", "--name", "broken", *s(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert words in err and "Traceback" not in err
    assert main(["show", "broken", "--json", *s(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "failed" and words.split(";")[0] in shown["summary"]["error"]


def test_a_crash_in_data_is_failed_with_the_users_line_and_never_becomes_last_for_cases(tmp_path, recipe, capsys):
    assert main(["train", str(recipe), "--quiet", "--name", "good", *s(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["train", str(recipe), "mode=crash", "--quiet", "--name", "crashed", *s(tmp_path)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "FileNotFoundError" in err and "r.py" in err
    capsys.readouterr()
    assert main(["show", "crashed", "--json", *s(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "failed" and "r.py" in record["summary"]["error"]
    assert main(["cases", "last", "--json", "--no-save", *s(tmp_path)]) == 0   # 'last' trained run: "good"
    assert json.loads(capsys.readouterr().out)["meta"]["runs"][0] != record["id"]


def test_a_run_whose_loss_is_nan_at_the_end_is_failed_with_exit_1(tmp_path, recipe, capsys):
    assert main(["train", str(recipe), "mode=nan", "--quiet", "--name", "nan", *s(tmp_path)]) == 1
    capsys.readouterr()
    assert main(["show", "nan", "--json", *s(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "failed" and "nan" in record["summary"]["stop_reason"]


def test_max_steps_and_device_are_checked(tmp_path, recipe, capsys):
    assert main(["train", str(recipe), "--max-steps", "-5", "--quiet", *s(tmp_path)]) == 2
    assert "at least 1 step" in capsys.readouterr().err
    assert main(["train", str(recipe), "--device", "potato", "--quiet", *s(tmp_path)]) == 2
    assert "'potato' is not a device" in capsys.readouterr().err


def test_a_flag_named_like_a_hyperparameter_says_how_to_write_it(tmp_path, recipe, capsys):
    assert main(["train", str(recipe), "--epochs", "3", *s(tmp_path)]) == 2
    assert "write it as epochs=3" in capsys.readouterr().err
    assert main(["train", str(recipe), "--mode=nan", *s(tmp_path)]) == 2   # the recipe's own field
    assert "write it as mode=nan" in capsys.readouterr().err
    assert main(["runs", "--no-such-flag"]) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_resume_of_a_finished_run_is_refused_and_the_record_untouched(tmp_path, recipe, capsys):
    assert main(["train", str(recipe), "--quiet", "--name", "done", *s(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["show", "done", "--json", *s(tmp_path)]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["train", "--resume", "done", *s(tmp_path)]) == 2
    assert "danlu train --from" in capsys.readouterr().err
    assert main(["show", "done", "--json", *s(tmp_path)]) == 0
    after = json.loads(capsys.readouterr().out)
    assert {k: after[k] for k in ("status", "summary", "duration", "ended")} == \
        {k: before[k] for k in ("status", "summary", "duration", "ended")}
    # --from: a new run, starting from its weights, child of it
    assert main(["train", "--from", "done", "epochs=2", "--quiet", "--name", "longer", "--json", *s(tmp_path)]) == 0
    longer = json.loads(capsys.readouterr().out)
    assert main(["show", "longer", "--json", *s(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["parent"] == before["id"] and record["config"]["epochs"] == 2 and longer["status"] == "finished"


def test_reading_commands_never_create_a_store(tmp_path, capsys):
    typo = tmp_path / "tpyo"
    assert main(["runs", "--store", str(typo)]) == 0
    assert "no danlu store" in capsys.readouterr().out
    for argv in (["show", "last"], ["diff", "a", "b"], ["diagnose", "last"], ["cases", "last"], ["ui"]):
        assert main([*argv, "--store", str(typo)]) == 2, argv
        assert "no danlu store" in capsys.readouterr().err
    assert not typo.exists()


def test_a_damaged_store_is_called_damaged_with_the_way_to_recover(tmp_path, recipe, capsys):
    import sqlite3

    assert main(["train", str(recipe), "--quiet", *s(tmp_path)]) == 0
    db = tmp_path / "s" / "danlu.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(db, "r+b") as fh:                      # header and first page intact, the rest damaged
        fh.seek(4096 * 2)
        fh.write(b"\xde\xad\xbe\xef" * 8192)
    capsys.readouterr()
    assert main(["runs", *s(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is damaged" in err and ".recover" in err and "not a danlu store" not in err


def test_a_read_only_store_can_be_read_and_says_so_when_written(tmp_path, recipe, capsys, monkeypatch):
    """No write permission (simulated: the suite may run as root, who may write anywhere)."""
    import os

    import danlu.store.sqlite as backend

    assert main(["train", str(recipe), "--quiet", "--name", "kept", *s(tmp_path)]) == 0
    capsys.readouterr()
    digest = db_digest(tmp_path)
    real_access = os.access
    monkeypatch.setattr(backend.os, "access", lambda p, mode: False if mode & os.W_OK else real_access(p, mode))
    assert main(["runs", "--json", *s(tmp_path)]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["kept"]
    assert main(["show", "kept", *s(tmp_path)]) == 0
    assert main(["note", "kept", "new note", *s(tmp_path)]) == 2
    assert "read-only" in capsys.readouterr().err
    assert db_digest(tmp_path) == digest


def test_json_into_a_closed_pipe_ends_quietly(tmp_path, recipe):
    assert main(["train", str(recipe), "--quiet", *s(tmp_path)]) == 0
    proc = subprocess.run(f"{sys.executable} -m danlu.cli runs --json --kind all --store {tmp_path / 's'} | head -1",
                          shell=True, capture_output=True, text=True)
    assert proc.stdout.strip() == "[" and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_runs_fits_80_columns_and_chooses_what_to_show(tmp_path, recipe, capsys):
    from danlu.console import console

    for lr in ("1e-2", "3e-3"):
        assert main(["train", str(recipe), f"lr={lr}", "--quiet", "-m", "a long note " * 10, *s(tmp_path)]) == 0
    capsys.readouterr()
    console.width = 80
    assert main(["runs", *s(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), lines
    header = lines[1].split()
    assert header[:2] == ["name", "status"] and "lr" in header and "best" in header
    assert len([ln for ln in lines if "finished" in ln]) == 2           # one line per run: nothing wraps
    assert main(["runs", "--columns", "name,lr,note", *s(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["name", "lr", "note"]
    assert main(["runs", "--columns", "name,bogus", *s(tmp_path)]) == 2
    assert "Unknown column(s) bogus" in capsys.readouterr().err
    assert main(["runs", "--wide", *s(tmp_path)]) == 0
    assert "a long note a long note a long note" in capsys.readouterr().out


def test_show_renders_fields_not_python_reprs(tmp_path, recipe, capsys):
    assert main(["train", str(recipe), "--quiet", "--name", "one", *s(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["show", "one", *s(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "{'" not in out and "['" not in out
    assert "train: TensorDataset, 48 items" in out


def test_danlu_init_says_where_the_run_is(tmp_path, capsys):
    import danlu

    run = danlu.init({"lr": 0.1}, store=tmp_path / "s")
    run.finish()
    err = capsys.readouterr().err
    assert f"tracking run {run.name}" in err and "danlu show" in err
    quiet = danlu.init({"lr": 0.1}, store=tmp_path / "s", quiet=True)
    quiet.finish()
    assert capsys.readouterr().err == ""


def test_progress_is_plain_lines_when_the_output_is_not_a_terminal(tmp_path, recipe):
    from rich.console import Console

    import danlu
    from danlu.progress import TrainingProgress

    out = io.StringIO()
    progress = TrainingProgress(console=Console(file=out, force_terminal=False, width=80))
    danlu.fit(danlu.load_recipe(recipe, ["epochs=2"]), store=tmp_path / "s", progress=False, callbacks=[progress])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all("\x1b" not in ln and "\r" not in ln for ln in lines)
    assert lines[-1].startswith(progress_name(tmp_path)) and "epoch 2/2" in lines[-1] and "loss" in lines[-1]


def progress_name(tmp_path) -> str:
    from danlu.store import open_store

    return open_store(tmp_path / "s").list_runs()[0].name
