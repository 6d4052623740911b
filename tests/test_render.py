"""Terminal rendering: every table fits the terminal without wrapping a word, values read as text."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from danlu.render import Column, fit_columns, format_value, print_report, print_table
from danlu.report import Finding, Report, Table


def console(width: int = 80) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=False, highlight=False), out


def test_format_value_reads_as_text():
    assert format_value(-1.3083000183105469) == "-1.308"
    assert format_value(np.float32(0.1)) == "0.1"
    assert format_value({"train": {"size": 500, "type": "TensorDataset"}, "ok": True}) == \
        "train: (size: 500, type: TensorDataset), ok: True"
    assert format_value(["a", 1.23456, None]) == "a, 1.235, -"
    assert format_value(float("nan")) == "nan" and format_value(np.int64(3)) == "3"


def test_wide_table_fits_80_columns_by_cutting_and_leaving_out_the_least_important():
    columns = [Column("name", 100, min_width=10), Column("status", 90, shrink=False),
               *[Column(f"hparam_{k}", 60 - k) for k in range(12)], Column("note", 30, min_width=10)]
    rows = [["a-rather-long-run-name-that-goes-on", "finished", *[f"{k * 1.2345:.4f}" for k in range(12)],
             "a note that is far too long for the table " * 3]]
    con, out = console(80)
    dropped = print_table("runs", columns, rows, con, hint="--wide shows them")
    lines = out.getvalue().splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), lines
    assert dropped and "note" in dropped and "name" not in dropped     # lowest priorities go first
    note = out.getvalue()[out.getvalue().index("not shown:"):]
    assert "--wide shows them" in note
    body = [line for line in lines if line.startswith("a-rather")]
    assert len(body) == 1 and "…" in body[0]                            # one line per row, cut with an ellipsis


def test_no_limit_keeps_every_column_whole():
    columns = [Column("name"), Column("note")]
    keep, widths = fit_columns(columns, [["x", "y" * 300]], None)
    assert keep == [0, 1] and widths == [4, 300]
    con, out = console(80)
    print_table("", columns, [["x", "y" * 300]], con, width=None)
    assert "y" * 300 in out.getvalue()


def test_columns_of_equal_importance_share_the_room():
    columns = [Column("key", 90, shrink=False), Column("a", 80), Column("b", 80)]
    keep, widths = fit_columns(columns, [["k", "x" * 100, "y" * 100]], 60)
    assert keep == [0, 1, 2] and abs(widths[1] - widths[2]) <= 1 and sum(widths) + 4 == 60


def test_middle_cut_keeps_the_end_of_a_name():
    con, out = console(40)
    print_table("", [Column("name", 100, min_width=12, middle=True), Column("x", 90, shrink=False)],
                [["study-vivid-quartz-62.s1.t12", "y" * 20]], con)
    line = next(ln for ln in out.getvalue().splitlines() if ln.startswith("study"))
    assert ".t12" in line and "…" in line


def test_findings_wrap_under_their_text_not_under_the_status():
    report = Report(kind="check", title="check Tiny")
    report.findings.append(Finding("S1", "model size", "pass", "word " * 40))
    report.tables.append(Table("T", ["a", "b"], [[1.23456789, "x" * 200]]))
    con, out = console(80)
    print_report(report, con)
    lines = out.getvalue().splitlines()
    start = next(i for i, ln in enumerate(lines) if "model size" in ln)
    indent = lines[start].index("model size")
    assert lines[start + 1].startswith(" " * indent) and lines[start + 1].strip().startswith("word")
    assert all(len(line.rstrip()) <= 80 for line in lines)
