"""The `danlu` command: verbs, exit codes, --json, errors that say what and where (issue 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from danlu.cli import main


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_help_lists_verbs(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for verb in ("train", "runs", "show", "diff", "tag", "note", "reproduce", "demo"):
        assert verb in out


def test_wrong_flag_exits_2(capsys):
    assert main(["runs", "--no-such-flag"]) == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_bad_override_exit_2_and_names_field(tmp_path, tiny_path, capsys):
    assert main(["train", str(tiny_path), "hiddn=3", "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "hiddn" in err and "Valid fields" in err
    assert main(["train", str(tiny_path), "hidden=wide", "--store", str(tmp_path / "s")]) == 2
    assert "Tiny.hidden expects int" in capsys.readouterr().err


def test_missing_recipe_and_unknown_run(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.py"), "--store", str(tmp_path / "s")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["show", "nosuchrun", "--store", str(tmp_path / "s")]) == 2
    assert "nosuchrun" in capsys.readouterr().err


def test_train_runs_show_diff_tag_note(tmp_path, tiny_path, capsys):
    s = ["--store", str(tmp_path / "s")]
    assert main(["train", str(tiny_path), "--quiet", "-m", "baseline", "--tag", "base", "--name", "one", *s]) == 0
    assert main(["train", str(tiny_path), "hidden=8", "--quiet", "--name", "two", *s]) == 0
    capsys.readouterr()
    assert main(["runs", "--json", *s]) == 0
    runs = _json(capsys)
    assert [r["name"] for r in runs] == ["two", "one"]
    assert runs[1]["note"] == "baseline" and runs[1]["tags"] == ["base"]
    assert runs[0]["summary"]["best_val_acc"] > 0.5

    assert main(["runs", *s]) == 0
    table = capsys.readouterr().out
    assert "hidden" in table and "lr" not in table.split("\n")[2]  # only varying hparams are columns

    assert main(["runs", "--tag", "base", "--json", *s]) == 0
    assert [r["name"] for r in _json(capsys)] == ["one"]

    assert main(["diff", "one", "two", "--json", *s]) == 0
    d = _json(capsys)
    hparams = {x["key"]: x["values"] for x in d["differences"] if x["section"] == "hyperparameters"}
    assert hparams == {"hidden": [16, 8]} and d["code"] == {}
    assert main(["diff", "one", "two", *s]) == 0
    text = capsys.readouterr().out
    assert "hidden" in text and "code snapshot: identical" in text

    assert main(["tag", "two", "mainline", *s]) == 0
    assert main(["note", "two", "half width", *s]) == 0
    capsys.readouterr()
    assert main(["show", "two", "--json", *s]) == 0
    shown = _json(capsys)
    assert shown["tags"] == ["mainline"] and shown["note"] == "half width"
    assert len(shown["series"]["train/loss"]["values"]) == 18 and "best.pt" in shown["checkpoints"]
    assert main(["show", "last", *s]) == 0
    assert "train/loss" in capsys.readouterr().out


def test_reproduce_is_exact_on_cpu(tmp_path, tiny_path, capsys):
    s = ["--store", str(tmp_path / "s")]
    assert main(["train", str(tiny_path), "epochs=2", "--quiet", "--name", "orig", *s]) == 0
    capsys.readouterr()
    assert main(["reproduce", "orig", "--quiet", "--json", *s]) == 0
    out = _json(capsys)
    assert out["reproduced"] is True and out["max_deviation"] == 0.0
    assert out["series"]["train/loss"]["points"] == 12


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "danlu.cli", "runs", "--store", str(tmp_path / "s")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "no danlu store" in proc.stdout and not (tmp_path / "s").exists()


def test_failure_in_training_is_one_clear_screen_and_the_run_is_kept(tmp_path, capsys):
    recipe = tmp_path / "badlabels.py"
    recipe.write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\nimport danlu\n\n"
        "class Bad(danlu.Recipe):\n    epochs: int = 1\n"
        "    def data(self):\n"
        "        x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))\n"
        "        y[7] = 5  # out of range for 3 outputs (D6)\n"
        "        return TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])\n"
        "    def model(self):\n        return nn.Linear(4, 3)\n"
    )
    s = ["--store", str(tmp_path / "s")]
    assert main(["train", str(recipe), "--quiet", "--name", "bad", *s]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "training failed: IndexError" in err and "recipe.py" in err and "danlu check" in err
    assert "Traceback" not in err
    assert main(["show", "bad", "--json", *s]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "failed"


def test_runs_columns_show_what_changed_not_where_runs_wrote():
    """A Hugging Face run records ~100 TrainingArguments; output_dir, logging_dir and run_name
    differ in every run, yet they are not what was tuned: `danlu runs` keeps its columns for
    the hyperparameters that changed (and for age and time, which they used to push out)."""
    from danlu.cli.runs import varying_hparams
    from danlu.store.base import RunRecord

    runs = [RunRecord(id=f"{i:08x}", name=f"hf-{i}", config={
        "learning_rate": [1e-4, 3e-4, 1e-3][i % 3], "optim": ["adamw_torch", "sgd"][i % 2],
        "output_dir": f"/scratch/alice/hf-{i}", "logging_dir": f"runs/hf-{i}/logs", "run_name": f"sweep-{i:03d}",
        "seed": 42}) for i in range(8)]
    assert varying_hparams(runs) == ["learning_rate", "optim"]
    few = runs[:3]             # three runs trying three optimisers: still what changed
    for r, opt in zip(few, ("adamw_torch", "sgd", "adafactor")):
        r.config["optim"] = opt
    assert varying_hparams(few) == ["learning_rate", "optim", "run_name"]
