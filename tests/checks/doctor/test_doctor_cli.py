"""`danlu check`: exit codes, --json, --only/--skip/--set, saving to the store."""

from __future__ import annotations

import json

from doctor_helpers import recipe_path

from danlu.cli import main


def _check_parser():
    import argparse

    from danlu.cli import check as check_cli

    parser = argparse.ArgumentParser(prog="danlu")
    sub = parser.add_subparsers(dest="command")
    check_cli.register(sub)
    return parser


def run_cli(argv):
    """Run `danlu check ...` through the check verb (independent of COMMANDS registration)."""
    from danlu.errors import DanluError

    args = _check_parser().parse_args(["check", *argv])
    try:
        return args.func(args)
    except DanluError as exc:
        return exc.exit_code


def test_json_output_and_exit_zero(capsys):
    rc = run_cli([str(recipe_path("clean")), "--only", "S13,S1", "--json", "--no-save"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["kind"] == "check" and [f["id"] for f in data["findings"]] == ["S13", "S1"]


def test_failing_check_exits_one_and_prints_cause_and_fix(capsys):
    rc = run_cli([str(recipe_path("sum_loss")), "--only", "S7", "--no-save", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "S7" in out and "fail" in out and "cause:" in out and "fix:" in out


def test_overrides_and_settings(capsys):
    rc = run_cli([str(recipe_path("big_model")), "hidden=100", "--only", "S1", "--no-save", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["findings"][0]["status"] == "pass"
    rc = run_cli([str(recipe_path("big_model")), "--only", "S1", "--set", "S1.max_params=100",
                  "--no-save", "--json"])
    assert json.loads(capsys.readouterr().out)["findings"][0]["status"] == "warn" and rc == 0


def test_bad_usage_exits_two(capsys):
    assert run_cli([str(recipe_path("clean")), "--only", "S99", "--no-save"]) == 2
    assert run_cli([str(recipe_path("clean")), "--set", "S1.nope=1", "--no-save"]) == 2


def test_report_saved_as_a_check_run(tmp_path, capsys):
    from danlu.store import open_store

    store_dir = tmp_path / "store"
    rc = run_cli([str(recipe_path("clean")), "lr=0.01", "--only", "S1,S4", "--store", str(store_dir), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    store = open_store(store_dir)
    run = store.get_run(data["meta"]["run_id"])
    assert run.kind == "check" and run.recipe.endswith("clean.py:Clean")
    assert run.config["lr"] == 0.01 and run.summary["check"] == "pass"
    assert run.repro.get("hparams", {}).get("lr") == 0.01 or "error" in run.repro
    (rec,) = store.list_reports(run.id, kind="check")
    assert [f["id"] for f in rec.data["findings"]] == ["S1", "S4"]


def test_check_verb_is_registered_in_the_cli(capsys):
    import pytest

    from danlu.cli import COMMANDS

    if "danlu.cli.check" not in COMMANDS:
        pytest.skip("danlu.cli.check not yet in danlu.cli.COMMANDS (the lead adds it)")
    rc = main(["check", str(recipe_path("clean")), "--only", "S1", "--no-save", "--quiet"])
    assert rc == 0 and "S1" in capsys.readouterr().out
