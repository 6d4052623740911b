"""`danlu diagnose RUN` and `danlu lr RECIPE`: exit codes, JSON, what is stored with the run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import danlu.cli as cli
from danlu.cli import main

VERBS = ["danlu.cli.diagnose", "danlu.cli.lr"]


@pytest.fixture(autouse=True)
def _verbs(monkeypatch):
    """Until the lead lists them in COMMANDS, add the two verbs for these tests."""
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + [v for v in VERBS if v not in cli.COMMANDS])


def _init_run(store, train, val=None, name="mine", key="loss", val_key="val_loss"):
    """A run from a user's own loop (danlu.init), logged with the names people use."""
    import danlu

    with danlu.init(config={"lr": 1e-3, "batch_size": 32}, name=name, store=store) as run:
        for step, value in enumerate(train, start=1):
            row = {key: float(value)}
            if val is not None and step % 100 == 0:
                row[val_key] = float(val[step // 100 - 1])
            run.log(row, step=step)
    return run.id


def test_diagnose_an_init_run_stores_report_and_regime(store, synth, capsys):
    c = synth.overfit(seed=0)
    run_id = _init_run(store, c.train.values, c.val.values)
    code = main(["diagnose", run_id, "--store", str(store.root), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["kind"] == "diagnosis" and out["meta"]["regime"] == "overfitting"
    assert out["meta"]["series"] == {"train": "loss", "val": "val_loss", "lr": None}
    assert store.get_run(run_id).summary["diagnosis"] == "overfitting"
    reports = store.list_reports(run_id, kind="diagnosis")
    assert len(reports) == 1 and reports[0].data["meta"]["regime"] == "overfitting"
    assert (store.run_dir(run_id) / "diagnosis.png").exists() and out["images"] == ["diagnosis.png"]


def test_diagnose_healthy_run_prints_and_exits_0(store, synth, capsys):
    run_id = _init_run(store, synth.healthy(seed=2).train.values, key="train/loss")
    code = main(["diagnose", run_id, "--store", str(store.root), "--no-plot"])
    text = capsys.readouterr().out
    assert code == 0 and "learning" in text and "┤" in text  # the braille curve


def test_diagnose_a_run_without_a_loss_says_what_to_log(store, capsys):
    import danlu

    with danlu.init(config={}, name="acc-only", store=store) as run:
        for step in range(20):
            run.log({"acc": 0.5}, step=step)
    code = main(["diagnose", run.id, "--store", str(store.root)])
    err = capsys.readouterr().err
    assert code == 2 and "train/loss" in err and "acc" in err


def test_lr_range_test_cli_stores_a_run_with_report_and_png(store, tiny_path, capsys):
    code = main(["lr", str(tiny_path), "--steps", "50", "--store", str(store.root), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["kind"] == "lr" and out["meta"]["suggestion"] > 0
    run = store.get_run(out["meta"]["run_id"])
    assert run.kind == "lr" and run.status == "finished" and run.summary["suggestion"] == out["meta"]["suggestion"]
    assert (store.run_dir(run.id) / "lr_range.png").exists()
    assert store.list_reports(run.id, kind="lr")


def test_lr_terminal_plot_and_batch_rescaling_from_a_reference_run(store, tiny_path, capsys):
    ref = _init_run(store, np.linspace(2, 1, 50), name="ref")
    code = main(["lr", str(tiny_path), "batch_size=128", "--ref", ref, "--steps", "40",
                 "--store", str(store.root)])
    text = capsys.readouterr().out
    assert code == 0
    assert "suggested" in text and "LR range test" in text
    assert "batch 32 → 128" in text and "linear rule 0.004" in text and "square-root rule 0.002" in text


def test_lr_scale_only_needs_ref(store, tiny_path, capsys):
    assert main(["lr", str(tiny_path), "--scale-only", "--store", str(store.root)]) == 2
    assert main(["lr", str(tiny_path), "--lrs", "1e-1,x", "--scan", "--store", str(store.root)]) == 2
    assert "comma-separated" in capsys.readouterr().err


def test_lr_scale_only_with_ref(store, tiny_path, capsys):
    ref = _init_run(store, np.linspace(2, 1, 50), name="ref2")
    code = main(["lr", str(tiny_path), "batch_size=8", "--ref", ref, "--scale-only", "--json",
                 "--store", str(store.root)])
    out = json.loads(capsys.readouterr().out)
    f = out["findings"][0]
    assert code == 0 and f["id"] == "T6"
    assert math.isclose(f["evidence"]["linear"], 2.5e-4) and math.isclose(f["evidence"]["sqrt"], 5e-4)


def test_train_stop_on_rejects_an_unknown_regime(store, tiny_path, capsys):
    code = main(["train", str(tiny_path), "--stop-on", "diverging,exploding", "--quiet", "--store", str(store.root)])
    assert code == 2 and "choose among" in capsys.readouterr().err
