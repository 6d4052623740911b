"""The shared report model: status roll-up and a strict-JSON round trip."""

from __future__ import annotations

import json
import math

from danlu.report import Finding, Report, Table


def _f(status):
    return Finding(id="S1", name="x", status=status, summary="s")


def test_status_roll_up():
    assert Report("check", "t").status == "pass"
    assert Report("check", "t", [_f("pass"), _f("skip"), _f("info")]).status == "pass"
    assert Report("check", "t", [_f("skip"), _f("skip")]).status == "skip"
    assert Report("check", "t", [_f("pass"), _f("warn"), _f("skip")]).status == "warn"
    assert Report("check", "t", [_f("warn"), _f("fail")]).status == "fail"


def test_round_trip_is_strict_json():
    rep = Report("audit", "t", [Finding("D1", "n", "warn", "s", evidence={"ratio": math.inf, "k": (1, 2)},
                                        cause="c", fix="f")],
                 tables=[Table("tbl", ["a"], [[math.nan]])], images=["a.png"], meta={"run_id": "x"})
    text = json.dumps(rep.to_dict(), allow_nan=False)
    back = Report.from_dict(json.loads(text))
    assert back.status == "warn" and back.findings[0].evidence == {"ratio": "inf", "k": [1, 2]}
    assert back.tables[0].rows == [["nan"]] and back.images == ["a.png"]
