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


def test_a_report_shows_itself_in_a_notebook_and_in_rich(tmp_path):
    """_repr_html_ (Jupyter): status, every finding, cause and fix where it does not pass, the
    tables, the pictures inline from the run's folder; rich: the terminal view."""
    import io

    from rich.console import Console

    from danlu.plots import figure, save

    fig = figure(2, 2)
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    save(fig, tmp_path / "curve.png")
    report = Report("check", "preflight <digits>", [
        Finding("S4", "initial loss", "fail", "loss 9.1 at step 0, expected 2.30", cause="labels off by one",
                fix="use labels 0..C-1"),
        Finding("S2", "overfit one batch", "pass", "loss 0.001 after 60 steps", fix="hidden when passing")],
        tables=[Table("rows", ["a", "b"], [[i, i * 0.5] for i in range(25)])], images=["curve.png", "gone.png"])
    report.folder = str(tmp_path)
    page = report._repr_html_()
    assert "preflight &lt;digits&gt;" in page and "FAIL" in page and "loss 9.1 at step 0" in page
    assert "use labels 0..C-1" in page and "labels off by one" in page and "hidden when passing" not in page
    assert "data:image/png;base64," in page and "picture: gone.png" in page
    assert "5 more rows" in page
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(report)
    text = out.getvalue()
    assert "preflight <digits>" in text and "initial loss" in text and "FAIL" in text
    assert Report.from_dict(report.to_dict()).folder is None           # a local path, never stored
