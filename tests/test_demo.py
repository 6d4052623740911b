"""`danlu demo`, the main job: audit, check, train, diagnose, case study, and what to do next."""

from __future__ import annotations

import pytest

from danlu.cli import main
from danlu.store import open_store


@pytest.mark.slow
def test_demo_runs_every_stage_and_stores_its_reports(tmp_path, capsys):
    store_dir = tmp_path / "s"
    assert main(["demo", "--quiet", "--store", str(store_dir)]) == 0
    out = capsys.readouterr().out
    for stage in ("know the data", "sanity checks", "train:", "read the curves", "study the errors", "what next"):
        assert stage in out
    store = open_store(store_dir)
    kinds = {r.kind for r in store.list_runs()}
    assert {"audit", "check", "train"} <= kinds
    trained = store.get_run("last")
    assert trained.kind == "train" and trained.summary["best_val_acc"] >= 0.95
    reports = {r.kind for r in store.list_reports(run_id=trained.id)}
    assert {"diagnosis", "cases"} <= reports
    check = next(r for r in store.list_runs(kind="check"))
    assert check.summary["check"] == "pass"  # the demo recipe is clean: no warn, no fail
    assert f"danlu ui {trained.name}" in out


def test_what_next_keeps_every_command_on_one_line_at_80_columns(monkeypatch, capsys):
    """Run from outside the project, the recipe's path is absolute and long: the command column wrapped
    it over three lines, which cannot be copied. Short commands keep the two-column table."""
    import danlu.console
    from danlu.cli.demo import print_next_steps

    monkeypatch.setattr(danlu.console.console, "width", 80)
    long_path = "/home/someone/.local/lib/python3.12/site-packages/danlu/examples/digits.py"
    command = f"danlu train {long_path} lr=1e-3 -m 'lower lr'"
    print_next_steps([("danlu runs", "the experiment table"), (command, "a second run to compare")])
    lines = capsys.readouterr().out.splitlines()
    assert command in lines and "    a second run to compare" in lines
    print_next_steps([("danlu runs", "the experiment table"),
                      ("danlu train examples/digits.py lr=1e-3 -m 'lower lr'", "a second run to compare")])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("danlu train examples/digits.py lr=1e-3 -m 'lower lr'   a second run") for line in lines)
    assert all(len(line) <= 80 for line in lines)
