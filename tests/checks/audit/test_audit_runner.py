"""The audit as a whole: registry, crash isolation, --limit, the sample grid, timing, saving, the CLI."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from audit_planted import ItemDataset, audit, digits, linear, recipe
from torch.utils.data import TensorDataset

from danlu.checks import Check, CheckResult, checks_of, register, select
from danlu.checks import base as checks_base
from danlu.checks.audit.d8_time_estimate import fit_line
from danlu.report import Report

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_registry_lists_checks_in_practice_order():
    ids = [c.id for c in checks_of("audit")]
    assert ids == sorted(ids) and set(ids) == {"D1", "D2", "D3", "D4", "D5", "D6", "D7", "D8"}
    assert [c.id for c in select("audit", only=["d6", "D1"])] == ["D1", "D6"]


def test_a_crashing_check_becomes_a_finding_and_the_rest_still_run():
    @register
    class Broken(Check):
        id = "D9"
        name = "broken on purpose"
        families = ("audit",)

        def run(self, ctx) -> CheckResult:
            raise ZeroDivisionError("planted")

    try:
        xt, yt, xv, yv = digits(100, 30)
        rep = audit(recipe(TensorDataset(xt, yt), TensorDataset(xv, yv)), progress=False, only=["D1", "D9"])
    finally:
        checks_base._REGISTRY.pop("D9")
    crashed = rep.finding("D9")
    assert crashed.status == "fail" and "ZeroDivisionError: planted" in crashed.summary
    assert "test_audit_runner.py" in crashed.evidence["where"]  # a check of the user's own: their frame
    assert rep.finding("D1").status == "pass"


def test_limit_samples_each_split():
    xt, yt, xv, yv = digits(600, 200)
    rep = audit(recipe(TensorDataset(xt, yt), TensorDataset(xv, yv)), limit=100, progress=False, only=["D1", "D5"])
    assert rep.meta["sizes"] == {
        "train": {"size": 600, "audited": 100, "seconds": rep.meta["sizes"]["train"]["seconds"]},
        "val": {"size": 200, "audited": 100, "seconds": rep.meta["sizes"]["val"]["seconds"]},
    }
    assert sum(rep.finding("D1").evidence["counts"]["train"]) == 100
    assert "sampled 100 of 600" in rep.tables[0].title
    with pytest.raises(Exception, match="positive"):
        audit(recipe(TensorDataset(xt, yt), TensorDataset(xv, yv)), limit=0, progress=False)


def test_report_is_json_and_round_trips():
    xt, yt, xv, yv = digits(100, 30)
    rep = audit(recipe(TensorDataset(xt, yt), TensorDataset(xv, yv), model=lambda: linear(64, 10)),
                progress=False, only=["D1", "D4", "D5", "D6"])
    data = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    again = Report.from_dict(data)
    assert [f.id for f in again.findings] == [f.id for f in rep.findings]
    assert data["kind"] == "audit" and data["meta"]["num_classes"] == 10


# -------------------------------------------------------------------- D3
@pytest.fixture(scope="module")
def d3(tmp_path_factory):
    """(recipe, report, image folder) of a D3-only audit of 100 digits (drawing the PNG once)."""
    out = tmp_path_factory.mktemp("d3")
    xt, yt, xv, yv = digits(100, 30)
    r = recipe(TensorDataset(xt, yt), TensorDataset(xv, yv))
    return r, audit(r, progress=False, only=["D3"], out_dir=out), out


def test_sample_grid_png_from_the_training_loader(d3):
    _, rep, out = d3
    f = rep.finding("D3")
    assert rep.images == ["audit/samples_train.png"] and f.evidence["image"] == "audit/samples_train.png"
    png = (out / "audit" / "samples_train.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "batch (32, 1, 8, 8)" in f.summary


def test_sample_table_for_tokens_and_the_unreadable_first_batch():
    items = [(torch.arange(1, 9) * (i + 1), i % 2) for i in range(40)]
    items[0] = RuntimeError("corrupt record")  # the loader's first batch would hit it
    r = recipe(ItemDataset(items), ItemDataset(items[1:10]))
    rep = audit(r, progress=False, only=["D3"])
    f = rep.finding("D3")
    assert f.status == "info" and "token ids" in rep.tables[0].title
    assert len(rep.tables[0].rows) == 12


# -------------------------------------------------------------------- D8
def test_fit_line_separates_fixed_cost_and_per_sample_time():
    assert fit_line(10, 0.5 + 10 * 0.01, 100, 0.5 + 100 * 0.01) == pytest.approx((0.5, 0.01))
    assert fit_line(10, 0.2, 100, 0.1) == (0.0, 0.001)  # noisy: falls back to the larger subset's mean


class SlowItems(ItemDataset):
    def __getitem__(self, i):
        time.sleep(0.001)
        return super().__getitem__(i)


def test_time_estimate_from_subsets():
    xt, yt, xv, yv = digits(500, 100)
    train = SlowItems([(xt[i], int(yt[i])) for i in range(500)])
    r = recipe(train, TensorDataset(xv, yv), model=lambda: linear(64, 10), epochs=3)
    ev = audit(r, progress=False, only=["D8"]).finding("D8").evidence
    # 1/100 and 1/10 of 500 items, rounded up to whole batches of 32
    assert ev["subsets"]["1/100"]["samples"] == 32 and ev["subsets"]["1/10"]["samples"] == 64
    assert 0.0005 < ev["load_seconds_per_sample"] < 0.05        # ~1 ms per item (sleep) plus collate; loose: busy CI
    assert ev["epoch_seconds"] == pytest.approx(
        ev["fixed_seconds_per_pass"] + 500 * (ev["load_seconds_per_sample"] + ev["train_step_seconds_per_sample"]))
    assert ev["total_seconds"] == pytest.approx(3 * (ev["epoch_seconds"] + ev["val_seconds"]))


# ------------------------------------------------------------ saving + CLI
LEAKY = textwrap.dedent('''
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    import danlu

    class Leaky(danlu.Recipe):
        batch_size: int = 16

        def data(self):
            g = torch.Generator().manual_seed(0)
            x, y = torch.randn(120, 6, generator=g), torch.randint(0, 3, (120,), generator=g)
            xv, yv = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
            xv[[2, 9]] = x[[5, 77]]
            return TensorDataset(x, y), TensorDataset(xv, yv)

        def model(self):
            return nn.Linear(6, 3)
''')


def _cli(argv: list[str]) -> int:
    from danlu.cli import main

    return main(argv)


def test_cli_exits_1_on_leakage_and_saves_an_audit_run(tmp_path, capsys):
    from danlu.store import open_store

    path = tmp_path / "leaky.py"
    path.write_text(LEAKY)
    code = _cli(["audit", str(path), "--json", "--only", "D3,D5", "--store", str(tmp_path / "s")])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["status"] == "fail"
    leak = next(f for f in out["findings"] if f["name"] == "train/val leakage")
    assert leak["evidence"]["pair_list"] == [[5, 2], [77, 9]]
    store = open_store(tmp_path / "s")
    (listed,) = store.list_runs(kind="audit")
    run = store.get_run(listed.id)
    assert run.kind == "audit" and run.status == "finished" and run.summary["audit"] == "fail"
    assert run.config["batch_size"] == 16 and run.recipe.endswith("leaky.py:Leaky")
    assert run.repro.get("env"), "an audit run keeps its reproducibility record (E1)"
    (saved,) = store.list_reports(run_id=run.id, kind="audit")
    assert saved.data["meta"]["run_id"] == run.id


def test_cli_clean_recipe_exits_0_and_prints_one_line_per_finding(tmp_path, capsys):
    from danlu.store import open_store

    assert _cli(["audit", str(RECIPES / "tiny.py"), "--quiet", "--only", "D1,D4,D5,D6",
                 "--store", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "data audit of Tiny" in out and "majority baseline" in out and "train/val leakage" in out
    store = open_store(tmp_path / "s")
    (run,) = store.list_runs(kind="audit")
    assert store.list_reports(run_id=run.id, kind="audit")


def test_cli_attaches_to_an_existing_run(tmp_path, capsys):
    from danlu.recipe import load_recipe_class
    from danlu.store import open_store

    store = open_store(tmp_path / "s")
    spec = load_recipe_class(RECIPES / "tiny.py").__danlu_spec__
    train_run = store.create_run(kind="train", recipe=spec, config={"hidden": 8, "batch_size": 32})
    assert _cli(["audit", "--run", train_run.id, "--only", "D1", "--json", "--store", str(tmp_path / "s")]) == 0
    assert len(store.list_runs(kind=None)) == 1
    (saved,) = store.list_reports(run_id=train_run.id, kind="audit")
    assert saved.data["meta"]["hparams"]["hidden"] == 8


def test_keep_report_copies_images(tmp_path, d3):
    from danlu.store import open_store
    from danlu.track import keep_report

    r, rep, out = d3
    store = open_store(tmp_path / "store")
    rid = keep_report(rep, store=store, recipe=r, image_root=out)
    assert (store.run_dir(rid) / "audit" / "samples_train.png").stat().st_size > 0
    run = store.get_run(rid)
    assert run.summary["audit"] == rep.status
    assert run.kind == "audit" and run.status == "finished"


def test_nothing_planted_means_no_fail_on_tiny_recipe():
    from danlu.recipe import load_recipe

    rep = audit(load_recipe(RECIPES / "tiny.py"), progress=False)
    assert rep.status != "fail", [(f.id, f.name, f.status, f.summary) for f in rep.findings if f.status == "fail"]
    assert np.isfinite(rep.finding("D8").evidence["total_seconds"])
