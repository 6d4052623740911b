"""The runner: stages, selection, settings, skips with reasons, crash isolation, the report."""

from __future__ import annotations

import json

import pytest
import torch
from doctor_helpers import check, finding
from torch import nn
from torch.utils.data import TensorDataset

import danlu
from danlu.checks import STAGES, configure, parse_settings, run_checks
from danlu.checks import checks_of as _checks_of
from danlu.checks import select as _select


def registered():
    return _checks_of("doctor")


def select(only=None, skip=None):
    return _select("doctor", only, skip)
from danlu.errors import DanluError


def test_registry_holds_every_practice_in_stage_order():
    ids = [c.id for c in registered()]
    assert sorted(ids) == sorted(["S13", "D7", "D4", "S1", "S6", "S4", "S7", "S8", "S10", "S9",
                                  "S2", "S3", "S5", "S11", "S12", "S14"])
    stages = [STAGES.index(c.stage) for c in registered()]
    assert stages == sorted(stages)


def test_only_and_skip_select_checks_case_insensitively():
    assert [c.id for c in select(only="s4, S7")] == ["S4", "S7"]
    assert "S12" not in [c.id for c in select(skip="s12")]
    with pytest.raises(DanluError, match="Unknown check id S99"):
        select(only="S99")


def test_settings_are_validated_and_coerced():
    (s1,) = configure(select(only="S1"), parse_settings(["S1.max_params=5e6"]))
    assert s1.max_params == 5_000_000 and isinstance(s1.max_params, int)
    with pytest.raises(DanluError, match="S4 has no setting 'nope'"):
        configure(select(only="S4"), {"S4.nope": 1})
    with pytest.raises(DanluError, match="no check S99"):
        configure(select(only="S4"), {"S99.x": 1})
    with pytest.raises(DanluError, match="expects a float"):
        configure(select(only="S4"), {"S4.ratio_warn": "high"})
    with pytest.raises(DanluError, match="ID.setting=value"):
        parse_settings(["max_params=3"])


def test_recipe_check_settings_apply_and_cli_settings_win():
    from doctor_helpers import recipe_path

    from danlu.recipe import load_recipe_class

    cls = load_recipe_class(recipe_path("big_model"))
    recipe = cls()
    recipe.check_settings = {"S1.max_params": 10_000_000}
    assert run_checks(recipe, only="S1").finding("S1").status == "pass"
    assert run_checks(recipe, only="S1", settings={"S1.max_params": 1000}).finding("S1").status == "warn"


def test_crash_in_data_fails_once_with_user_frame_and_skips_dependents():
    report = check("crash_data", "S13,D7,D4,S1,S4")
    s13 = finding(report, "S13")
    assert s13.status == "fail" and "FileNotFoundError" in s13.summary
    assert "crash_data.py:9 in read_table" in s13.summary
    for cid in ("D7", "D4", "S4"):
        f = finding(report, cid)
        assert f.status == "skip" and "data() failed (see S13)" in f.summary
    assert finding(report, "S1").status == "pass"  # the model does not need the data


def test_crash_inside_a_check_is_a_failure_at_the_user_line_and_others_run():
    report = check("crash_train_forward", "S13,S7,S8,S2")
    assert finding(report, "S13").status == "pass"  # eval mode, batch of 1: fine
    for cid in ("S8", "S2"):
        f = finding(report, cid)
        assert f.status == "fail" and f.summary.startswith("crashed: RuntimeError")
        assert "crash_train_forward.py:18 in forward" in f.evidence["where"]
        assert f"only {cid}" in f.fix
    assert finding(report, "S7").status == "pass"  # eval-mode checks still ran


def test_the_same_crash_in_several_checks_leads_the_report(capsys):
    """One error raised by the recipe in every check that trains is where to start, not a check that
    would explain the others' failures (S9 was named "start here" for an optimizer that crashed)."""
    from danlu.console import console
    from danlu.render import print_report

    report = check("crash_train_forward", "S13,S7,S8,S9,S2")
    root = report.meta["root_cause"]
    assert root["crash"] and root["id"] == "S8" and root["follows"] == ["S9", "S2"]
    assert finding(report, "S2").evidence["follows_from"] == "S8"
    print_report(report, console)
    out = " ".join(capsys.readouterr().out.split())
    assert "start here: S8 gradients crashed; S9, S2 crashed with the same error" in out
    assert "(the same error as S8)" in out
    planted = check("plain_list_layers", "S8,S2,S3").meta["root_cause"]
    assert "crash" not in planted and planted["id"] == "S8"       # failures that are not crashes: as before


def test_crashes_after_a_gating_failure_are_reported_as_consequences():
    report = check("labels_out_of_range", "S13,S8")
    assert finding(report, "S13").status == "fail"
    s8 = finding(report, "S8")
    assert s8.status == "skip" and "because S13 failed" in s8.summary
    assert report.status == "fail"


class _Tokens(danlu.Recipe):
    """Token ids -> embedding bag: integer inputs (D4 skips, S10 perturbs instead of backprop)."""

    mix: bool = False

    def data(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 50, (200, 6), generator=g)
        y = (x[:, 0] % 3).long()
        return TensorDataset(x[:150], y[:150]), TensorDataset(x[150:], y[150:])

    def model(self):
        mix = self.mix

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(50, 16)
                self.head = nn.Linear(16, 3)

            def forward(self, x):
                h = self.emb(x).mean(1)
                if mix:
                    h = h - h.mean(0, keepdim=True)  # BUG: centres over the batch
                return self.head(h)

        return Net()


def test_integer_inputs_skip_d4_with_reason_and_s10_perturbs():
    report = run_checks(_Tokens(), only="D4,S10")
    d4 = finding(report, "D4")
    assert d4.status == "skip" and "token or category ids" in d4.summary
    s10 = finding(report, "S10")
    assert s10.status == "pass" and "changing other samples" in s10.summary
    mixed = run_checks(_Tokens(mix=True), only="S10").finding("S10")
    assert mixed.status == "fail"


def test_report_is_plain_json_with_meta():
    report = check("clean", "S1,S13")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["kind"] == "check" and data["status"] == "pass"
    assert data["meta"]["recipe"].endswith("clean.py:Clean")
    assert data["meta"]["hparams"]["lr"] == 3e-3 and data["meta"]["checks"] == ["S13", "S1"]
    assert all(f["seconds"] >= 0 for f in data["findings"])


def test_progress_in_a_log_is_plain_lines_per_check_and_for_long_parts(capsys, monkeypatch):
    """stderr is not a terminal here (a CI log, a pipe): a line when each check starts, and one
    every PLAIN_EVERY seconds of a long part (0 here: every step), so a slow check shows it works."""
    monkeypatch.setattr("danlu.progress.PLAIN_EVERY", 0.0)
    report = run_checks(_Tokens(), only="S1,S2", progress=True)
    assert report.finding("S1").status == "pass"
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert any(line.startswith("check 1/") and "S1" in line for line in lines)
    assert any(line.startswith("check 2/") and "S2" in line for line in lines)
    assert any(line.strip().startswith("fitting") and "/400" in line for line in lines)
    assert "\r" not in err and "\x1b[" not in err          # no redrawn bars, no escape codes


def test_step_stage_quiet_on_clean_recipes():
    # The fast subset of the clean-recipe guarantee (the full runs are marked slow).
    for name in ("clean", "clean_regression"):
        report = check(name, "S13,D7,D4,S1,S6,S4,S7,S8,S10,S9")
        bad = [(f.id, f.status, f.summary) for f in report.findings if f.status not in ("pass", "info")]
        assert not bad, f"{name}: {bad}"


class _BrokenModel(danlu.Recipe):
    def data(self):
        x = torch.randn(40, 4)
        return TensorDataset(x[:30], (x[:30, 0] > 0).long()), TensorDataset(x[30:], (x[30:, 0] > 0).long())

    def model(self):
        layers = [nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)]
        return nn.Sequential(*layers[5])  # IndexError in the user's model()


def test_crash_in_model_fails_in_s1_and_skips_dependents():
    report = run_checks(_BrokenModel(), only="S13,S1,S4,S8")
    assert finding(report, "S13").status == "pass"  # data checks do not need the model
    s1 = finding(report, "S1")
    assert s1.status == "fail" and "model() raised IndexError" in s1.summary
    assert "test_doctor_runner.py" in s1.evidence["where"]
    for cid in ("S4", "S8"):
        assert finding(report, cid).summary == "skipped: model() failed (see S1)"


class _DictItems(danlu.Recipe):
    """Items are dicts and forward() is overridden, as Hugging Face and many Lightning users write."""

    task = "classification"
    input_name: str = "x"
    shuffled: bool = False    # labels shuffled apart from their inputs: a planted S5 bug

    def data(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(120, 4, generator=g)
        y = (x[:, 0] > 0).long()
        if self.shuffled:
            y = y[torch.randperm(120, generator=g)]
        items = [{self.input_name: x[i], "y": y[i]} for i in range(120)]
        return items[:90], items[90:]

    def model(self):
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, model, batch):
        return model(batch[self.input_name]), batch["y"]


def test_dict_batches_are_changed_through_their_input_key():
    """S5 and S10 find the input of a dict batch by its name (x, input_ids, pixel_values, ...)."""
    report = run_checks(_DictItems(), only="S13,D4,S4,S10,S5")
    assert finding(report, "S13").status == "pass" and finding(report, "S4").status == "pass"
    assert finding(report, "D4").status == "pass"  # the data scan reads dict items by their key names
    assert finding(report, "S10").status == "pass" and finding(report, "S5").status == "pass"
    assert finding(run_checks(_DictItems(shuffled=True), only="S5"), "S5").status == "fail"
    unnamed = run_checks(_DictItems(input_name="signal"), only="S10,S5")
    for cid in ("S10", "S5"):
        f = finding(unnamed, cid)
        assert f.status == "skip" and "none of them is a known input name" in f.summary
