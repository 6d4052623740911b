"""The runs table's filter and sort language (E2, H1): what matches, what does not,
and bad words are errors that say the accepted forms."""

from __future__ import annotations

import math

import pytest

from danlu.ui.query import QueryError, filter_rows, parse_query, sort_rows
from danlu.ui.rows import Row, diagnosis_of, metrics_of, varying_keys


def row(name, status="finished", lr=1e-3, hidden=64, loss=0.5, tags=(), note="", diag=None):
    return Row(id=name + "-id", name=name, status=status, kind="train", recipe="digits.py", note=note,
               tags=list(tags), config={"lr": lr, "hidden": hidden, "opt": "adamw"},
               metrics={"best_val_loss": loss}, diagnosis=diag, created=0.0, ended=None, duration=None)


ROWS = [
    row("a", lr=1e-4, loss=0.3, tags=["baseline"], note="first try"),
    row("b", lr=1e-3, hidden=128, loss=0.2, status="running"),
    row("c", lr=1e-2, loss=float("nan"), status="failed", diag={"label": "diverging", "summary": "", "status": ""}),
    row("d", lr=3e-3, loss=0.4, tags=["baseline", "wide"]),
]


def names(q, **kw):
    return [r.name for r in filter_rows(ROWS, parse_query(q, **kw))]


@pytest.mark.parametrize("q, expected", [
    ("", ["a", "b", "c", "d"]),
    ("status:running", ["b"]),
    ("status:failed,running", ["b", "c"]),
    ("tag:baseline", ["a", "d"]),
    ("tag:baseline tag:wide", ["d"]),
    ("lr:1e-3..5e-3", ["b", "d"]),
    ("lr:..1e-3", ["a", "b"]),
    ("lr>=1e-3", ["b", "c", "d"]),
    ("lr<1e-3", ["a"]),
    ("hidden=128", ["b"]),
    ("hidden:128", ["b"]),
    ("hidden!=128", ["a", "c", "d"]),
    ("opt=AdamW", ["a", "b", "c", "d"]),
    ("best_val_loss<0.35", ["a", "b"]),                 # NaN never passes a comparison
    ("metrics.best_val_loss:0.25..0.45", ["a", "d"]),
    ("config.lr>5e-3", ["c"]),
    ("first", ["a"]),
    ("diverging", ["c"]),
    ('"first try"', ["a"]),
    ("missing_hp>1", []),
])
def test_filters(q, expected):
    assert names(q) == expected


def test_pickers_combine_with_text():
    assert names("lr>1e-4", statuses=["finished"], tags=["baseline"]) == ["d"]


@pytest.mark.parametrize("bad", ["lr>abc", "lr:x..1", 'unclosed "quote', "lr>"])
def test_bad_words_are_errors_with_the_forms(bad):
    with pytest.raises(QueryError, match=r"e\.g\.|quotes|name=value"):
        parse_query(bad)


def test_sort_numbers_with_nan_and_missing_last():
    asc = [r.name for r in sort_rows(ROWS, "metrics.best_val_loss")]
    desc = [r.name for r in sort_rows(ROWS, "-metrics.best_val_loss")]
    assert asc == ["b", "a", "d", "c"] and desc == ["d", "a", "b", "c"]
    assert [r.name for r in sort_rows(ROWS, "-name")] == ["d", "c", "b", "a"]
    assert [r.name for r in sort_rows(ROWS, "config.lr")] == ["a", "b", "d", "c"]
    with pytest.raises(QueryError, match="config.NAME"):
        sort_rows(ROWS, "bogus")


def test_varying_keys_only_what_changed():
    assert varying_keys([{"lr": 1, "seed": 0}, {"lr": 2, "seed": 0}]) == ["lr"]
    assert varying_keys([{"lr": 1}, {"lr": 1, "extra": True}]) == ["extra"]
    assert varying_keys([{"lr": 1, "seed": 0}, {"lr": 1, "seed": 0}]) == []
    assert varying_keys([{"lr": 1}]) == ["lr"]


def test_diagnosis_shapes():
    assert diagnosis_of({"diagnosis": "overfitting"})["label"] == "overfitting"
    assert diagnosis_of({}) is None
    d = diagnosis_of({"diagnosis": {"regime": "plateau", "summary": "flat since 300"}})
    assert d["label"] == "plateau" and d["summary"] == "flat since 300"
    rep = {"findings": [{"id": "T2", "name": "learning", "status": "pass", "summary": "ok"},
                        {"id": "T2", "name": "nan", "status": "fail", "summary": "NaN at 40"}]}
    assert diagnosis_of({"diagnosis": rep})["label"] == "nan"


def test_metrics_keep_numbers_only():
    m = metrics_of({"best_val_loss": 0.2, "device": "cpu", "diagnosis": "x", "nested": {"acc": 0.9},
                    "bad": math.nan, "flag": True})
    assert m["best_val_loss"] == 0.2 and m["nested.acc"] == 0.9
    assert "device" not in m and "diagnosis" not in m and "flag" not in m and m["bad"] == "nan"


def test_row_cache_rebuilds_only_changed_runs():
    from danlu.store.base import RunRecord
    from danlu.ui.rows import RowCache

    a = RunRecord("a", "a", config={"lr": 1}, summary={"best_val_loss": 1.0})
    b = RunRecord("b", "b", config={"lr": 2})
    cache = RowCache()
    (ra, ja), (rb, _) = cache.rows([a, b])
    assert '"name":"a"' in ja
    again = cache.rows([a, b])
    assert again[0][0] is ra and again[1][0] is rb                 # unchanged: same row object
    a.summary = {"best_val_loss": 0.5}
    b.note = "edited"
    (ra2, ja2), (rb2, _) = cache.rows([a, b])
    assert ra2 is not ra and ra2.metrics["best_val_loss"] == 0.5 and '"best_val_loss":0.5' in ja2
    assert rb2 is not rb and rb2.note == "edited"
    nan = RunRecord("n", "n", summary={"best_val_loss": float("nan")})
    assert '"nan"' in cache.rows([nan])[0][1]                      # strict JSON, never NaN
