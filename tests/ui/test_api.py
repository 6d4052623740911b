"""The JSON API the pages use (issue 5), through Starlette's TestClient, against every
store implementation (STYLE 3)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ui_sample import XSS


def test_runs_table_rows_and_columns(client, sample):
    d = client.get("/api/runs").json()
    assert d["total"] == d["matched"] == 5
    assert {r["name"] for r in d["runs"]} == {"baseline", "wide", "live", "broken", XSS}
    assert d["varying"] == ["hidden", "lr"]                       # seed, batch_size... never change
    assert "best_val_loss" in d["metrics"]
    assert d["statuses"] == {"finished": 3, "running": 1, "failed": 1}
    base = next(r for r in d["runs"] if r["name"] == "baseline")
    assert base["note"] == "the default recipe" and base["tags"] == ["baseline"]
    assert base["diagnosis"]["label"] == "learning normally" and base["diagnosis"]["regime"] == "learning"
    assert base["duration"] > 0 and base["created"] > 0
    assert base["primary"][0] in ("acc", "loss") and isinstance(base["primary"][1], float)
    assert d["kind"] == "train" and d["kinds"]["train"] >= 4
    assert "repro" not in base                                    # table rows stay small
    # newest first by default
    assert d["runs"][0]["name"] == XSS


def test_runs_filter_sort_page(client):
    d = client.get("/api/runs", params={"q": "lr>=1e-3", "sort": "config.lr"}).json()
    assert [r["name"] for r in d["runs"]] == ["wide", "live", "broken"]
    assert d["varying"] == ["hidden", "lr"]
    assert [r["name"] for r in client.get("/api/runs", params={"status": "running"}).json()["runs"]] == ["live"]
    assert [r["name"] for r in client.get("/api/runs", params={"tag": "mainline"}).json()["runs"]] == ["wide"]
    page = client.get("/api/runs", params={"sort": "name", "limit": 2, "offset": 1}).json()
    assert page["matched"] == 5 and [r["name"] for r in page["runs"]] == ["baseline", "broken"]  # "<script>" sorts first
    bad = client.get("/api/runs", params={"q": "lr>abc"})
    assert bad.status_code == 400 and "e.g." in bad.json()["error"]
    assert client.get("/api/runs", params={"sort": "nope"}).status_code == 400


def test_run_page_data(client, sample):
    rid = sample.ids["baseline"]
    d = client.get(f"/api/runs/{rid}").json()
    assert d["name"] == "baseline" and d["config"]["hidden"] == 64
    assert set(d["series"]) == {"train/loss", "lr", "val/loss", "val/acc", "val/probe_loss"}
    assert [c["name"] for c in d["checkpoints"]] == ["best.pt", "last.pt"]
    assert d["checkpoints"][0]["path"] == f"{rid}/checkpoints/best.pt"
    assert d["repro"]["git"]["diff"].startswith("diff --git")
    assert {r["kind"] for r in d["reports"]} == {"check", "diagnosis"}
    assert d["diagnosis"]["label"] == "learning normally" and d["diagnosis"]["report_id"] == sample.report_ids["diagnosis"]
    assert d["metrics"]["best_val_loss"] > 0
    # by name, by prefix, "last"
    assert client.get("/api/runs/baseline").json()["id"] == rid
    assert client.get(f"/api/runs/{rid[:6]}").json()["id"] == rid
    missing = client.get("/api/runs/no-such-run")
    assert missing.status_code == 404 and "error" in missing.json()


def test_run_page_reads_without_creating_folders(client, sample):
    rid = sample.ids["wide"]
    folder = sample.store.root / "runs" / rid
    assert not folder.exists()
    assert client.get(f"/api/runs/{rid}").json()["checkpoints"] == []
    assert not folder.exists()                                    # read-only: no run_dir(create=True)


def test_chart_joins_series_on_one_axis_within_budget(client, sample):
    rid = sample.ids["baseline"]
    d = client.get("/api/chart", params={"s": [f"{rid}:train/loss", f"{rid}:val/loss", f"{rid}:val/probe_loss"],
                                         "points": 100}).json()
    assert len(d["x"]) <= 100
    loss, val, probe = d["series"]
    assert loss["total"] == 300 and loss["method"] == "minmax"
    assert val["total"] == 5 and val["shown"] == 5                # short curves keep every point
    assert probe["total"] == 20 and probe["shown"] == 20
    assert all(len(s["values"]) == len(d["x"]) for s in d["series"])
    assert sum(v is not None for v in val["values"]) == 5         # null where a curve did not log
    assert d["x"] == sorted(d["x"]) and d["x_min"] == 0 and d["x_max"] == 299


def test_chart_zoom_window_and_errors(client, sample):
    rid = sample.ids["baseline"]
    d = client.get("/api/chart", params={"s": f"{rid}:train/loss", "start": 100, "end": 149}).json()
    assert d["x"] == list(range(100, 150)) and d["series"][0]["method"] == "none"
    assert client.get("/api/chart").status_code == 400
    assert client.get("/api/chart", params={"s": "nocolon"}).status_code == 400
    assert client.get("/api/chart", params={"s": f"{rid}:x", "start": "abc"}).status_code == 400
    assert client.get("/api/chart", params={"s": f"{rid}:x", "method": "bogus"}).status_code == 400
    assert client.get("/api/chart", params={"s": "missing:train/loss"}).status_code == 404
    empty = client.get("/api/chart", params={"s": f"{rid}:not/logged"}).json()
    assert empty["x"] == [] and empty["series"][0]["total"] == 0


def test_chart_nan_travels_as_null(client, sample):
    store = sample.store
    run = store.create_run(name="diverged")
    store.log_points(run.id, [("train/loss", i, float("nan") if i >= 30 else 1.0, 0.0) for i in range(50)])
    d = client.get("/api/chart", params={"s": f"{run.id}:train/loss"}).json()
    s = d["series"][0]
    assert s["nonfinite"] == 20 and s["first_nonfinite"] == 30
    assert s["values"][30] is None and s["values"][0] == 1.0


def test_chart_live_run_sees_new_points(client, sample):
    rid = sample.ids["live"]
    q = {"s": f"{rid}:train/loss", "points": 5000}
    before = client.get("/api/chart", params=q).json()["series"][0]["total"]
    sample.store.log_points(rid, [("train/loss", 300 + i, 0.01, 0.0) for i in range(10)])
    after = client.get("/api/chart", params=q).json()
    assert after["series"][0]["total"] == before + 10 and after["x"][-1] == 309


def test_chart_finished_run_cached_then_reread_when_status_changes(client, sample):
    rid = sample.ids["wide"]
    q = {"s": f"{rid}:train/loss", "points": 5000}
    n = client.get("/api/chart", params=q).json()["series"][0]["total"]
    sample.store.log_points(rid, [("train/loss", 1000, 0.5, 0.0)])
    assert client.get("/api/chart", params=q).json()["series"][0]["total"] == n   # cached
    sample.store.update_run(rid, status="running")                                 # resumed
    assert client.get("/api/chart", params=q).json()["series"][0]["total"] == n + 1


@pytest.mark.slow
def test_chart_million_points_under_budget_and_fast(ui_store):
    """Writing a million points takes seconds; benchmarks/ui_speed.py measures the same path."""
    from starlette.testclient import TestClient

    from danlu.ui.app import create_app

    run = ui_store.create_run(name="long")
    n = 1_000_000
    v = np.random.default_rng(0).normal(size=n)
    v[777_777] = 100.0
    ui_store.log_points(run.id, [("train/loss", i, float(x), 0.0) for i, x in enumerate(v)])
    ui_store.update_run(run.id, status="finished")
    with TestClient(create_app(ui_store)) as c:
        q = {"s": f"{run.id}:train/loss"}
        first = c.get("/api/chart", params=q).json()              # reads the store once
        t = time.perf_counter()
        d = c.get("/api/chart", params=q).json()
        seconds = time.perf_counter() - t
    assert len(d["x"]) <= 2000 and d["series"][0]["total"] == n
    assert max(v for v in d["series"][0]["values"] if v is not None) == 100.0   # the spike survives
    assert first["x"] == d["x"]
    assert seconds < 0.1


def test_compare_lists_what_differs(client, sample):
    a, b = sample.ids["baseline"], sample.ids["wide"]
    d = client.get("/api/compare", params={"ids": f"{a},{b}"}).json()
    assert [r["name"] for r in d["runs"]] == ["baseline", "wide"]
    diffs = {(x["section"], x["key"]): x["values"] for x in d["differences"]}
    assert diffs[("hyperparameters", "hidden")] == [64, 128]
    assert diffs[("hyperparameters", "lr")] == [3e-4, 1e-3]
    assert diffs[("environment", "env.torch")] == ["2.13.0", "2.12.0"]
    assert ("hyperparameters", "seed") not in diffs                # equal values are not differences
    assert ("outcome", "best_val_loss") in diffs
    assert sorted(d["series"]["train/loss"]) == sorted([a, b])
    assert client.get("/api/compare").status_code == 400
    assert client.get("/api/compare", params={"ids": "nope"}).status_code == 404


def test_compare_code_and_packages():
    from danlu.repro.diff import differences
    from danlu.store.base import RunRecord

    r1 = RunRecord("a", "a", repro={"git": {"commit": "1" * 40, "diff": "x\n" * 300},
                                    "env": {"packages": ["numpy==2.0", "torch==2.13.0"]},
                                    "captured_at": "t1", "hparams": {"lr": 1}})
    r2 = RunRecord("b", "b", repro={"git": {"commit": "2" * 40, "diff": ""},
                                    "env": {"packages": ["numpy==2.1", "torch==2.13.0"]},
                                    "captured_at": "t2", "hparams": {"lr": 1}})
    diffs = {(d.section, d.key): d for d in differences([r1, r2])}
    assert set(diffs) == {("code", "git.commit"), ("code", "git.diff"), ("environment", "env.packages.numpy")}
    assert diffs[("code", "git.diff")].values[0].startswith("300 lines, sha256") and not diffs[("code", "git.diff")].full
    assert differences([r1, r1]) == []


def test_edit_note_and_tags_is_the_only_write(client, sample):
    store = sample.store
    rid = sample.ids["wide"]
    if hasattr(store, "writes"):
        store.writes.clear()                                      # forget what populate() wrote
    for path in ["/api/runs", f"/api/runs/{rid}", "/api/reports", "/api/compare?ids=" + rid,
                 f"/api/chart?s={rid}:train/loss"]:
        assert client.get(path).status_code == 200
    if hasattr(store, "writes"):
        assert store.writes == []
    r = client.patch(f"/api/runs/{rid}", json={"note": "try wider", "tags": ["mainline", "best"]})
    assert r.status_code == 200 and r.json()["note"] == "try wider"
    fresh = store.get_run(rid)
    assert fresh.note == "try wider" and sorted(fresh.tags) == ["best", "mainline"]
    row = next(r for r in client.get("/api/runs").json()["runs"] if r["id"] == rid)
    assert row["note"] == "try wider" and sorted(row["tags"]) == ["best", "mainline"]
    r = client.patch(f"/api/runs/{rid}", json={"tags": []})
    assert store.get_run(rid).tags == [] and store.get_run(rid).note == "try wider"


@pytest.mark.parametrize("body, fragment", [
    ({"status": "finished"}, "nothing else"),
    ({"note": 3}, "note must be text"),
    ({"tags": "a,b"}, "list"),
    ({"tags": ["has space"]}, "no spaces"),
    ({"note": "x" * 10_001}, "at most"),
    ({}, "nothing else"),
])
def test_edit_rejects_anything_else(client, sample, body, fragment):
    r = client.patch(f"/api/runs/{sample.ids['wide']}", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"]


def test_edit_needs_json(client, sample):
    r = client.patch(f"/api/runs/{sample.ids['wide']}", content=b"note=x",
                     headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert client.post("/api/runs", json={}).status_code == 405


def test_reports(client, sample):
    d = client.get("/api/reports").json()["reports"]
    assert [r["kind"] for r in d] == ["diagnosis", "check"] and d[1]["status"] == "fail"
    assert d[1]["run_name"] == "baseline"
    assert [r["kind"] for r in client.get("/api/reports", params={"kind": "check"}).json()["reports"]] == ["check"]
    one = client.get(f"/api/reports/{sample.report_ids['check']}").json()
    assert one["report"]["findings"][1]["fix"] == "set dropout to 0 for this check"
    assert one["report"]["images"] == ["curves.png"] and one["run_id"] == sample.ids["baseline"]
    img = client.get(f"/api/files/{sample.ids['baseline']}/curves.png")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert client.get("/api/reports/999").status_code == 404
    assert client.get("/api/reports/abc").status_code == 404


def test_checkpoint_download(client, sample):
    r = client.get(f"/api/files/{sample.ids['baseline']}/checkpoints/best.pt")
    assert r.status_code == 200 and r.content == b"best-checkpoint"
    assert "attachment" in r.headers["content-disposition"]
    assert r.headers["content-type"] == "application/octet-stream"


def test_openapi_documents_every_route(client):
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/runs", "/api/runs/{run}", "/api/chart", "/api/compare", "/api/reports",
            "/api/reports/{report}", "/api/files/{path}"} <= set(doc["paths"])
    assert "patch" in doc["paths"]["/api/runs/{run}"]
    assert all(op["summary"] for ops in doc["paths"].values() for op in ops.values())


def test_page_and_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    for asset in ["app.js", "app.css", "charts.js", "vendor/uplot/uPlot.esm.js", "vendor/uplot/uPlot.min.css",
                  "vendor/uplot/LICENSE"]:
        assert client.get("/static/" + asset).status_code == 200, asset
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/nope").status_code == 404
