"""Every command on the team store (issue 15): `--store postgresql://...` (and DANLU_STORE)
for train, runs, show, diff, reproduce, diagnose, cases and the dashboard's API, with the
artefacts under the root given in the URL. Needs a PostgreSQL server (CI starts one)."""

from __future__ import annotations

import json
import os
import time

import pytest

from danlu.cli import main

POSTGRES = os.environ.get("DANLU_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not POSTGRES, reason="DANLU_TEST_POSTGRES_URL is unset: start PostgreSQL with "
                                "`.ci/start-postgres.sh` and export the URL it prints")


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_every_command_works_on_a_postgres_store(tmp_path, tiny_path, capsys, monkeypatch):
    url = f"{POSTGRES}?schema=cmd{os.getpid()}{int(time.time())}&artifacts={tmp_path / 'shared'}"
    s = ["--store", url]
    assert main(["train", str(tiny_path), "--quiet", "--name", "one", *s]) == 0
    monkeypatch.setenv("DANLU_STORE", url)                     # the environment picks it too
    assert main(["train", str(tiny_path), "hidden=8", "--quiet", "--name", "two"]) == 0
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    runs = _json(capsys)
    assert [r["name"] for r in runs] == ["two", "one"] and all(r["status"] == "finished" for r in runs)
    assert main(["show", "one", "--json", *s]) == 0
    shown = _json(capsys)
    assert len(shown["series"]["train/loss"]["values"]) == 18
    assert "best.pt" in shown["checkpoints"]
    assert (tmp_path / "shared" / "runs" / shown["id"] / "checkpoints" / "best.pt").is_file()            # under the shared root
    assert main(["diff", "one", "two", "--json", *s]) == 0
    assert {x["key"] for x in _json(capsys)["differences"] if x["section"] == "hyperparameters"} == {"hidden"}
    assert main(["reproduce", "one", "--quiet", "--json", *s]) == 0
    assert _json(capsys)["reproduced"] is True
    assert main(["diagnose", "one", "--no-plot", *s]) in (0, 1)
    assert main(["cases", "one", "--no-save", *s]) in (0, 1)
    out = capsys.readouterr().out
    assert "one" in out and "password" not in out

    from starlette.testclient import TestClient

    from danlu.store import open_store
    from danlu.ui.app import create_app

    store = open_store(url)
    with TestClient(create_app(store)) as client:
        listed = client.get("/api/runs").json()["runs"]
        assert {r["name"] for r in listed} >= {"one", "two"}
    store.close()
