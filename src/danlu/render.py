"""Terminal views of the shared report model and of curves (sparklines).

Every producer's Report (check, diagnosis, lr, audit, cases, study) prints through
`print_report`, so all of them look alike: one line per finding, cause and fix below
the ones that did not pass, then the tables.
"""

from __future__ import annotations

import math
from typing import Sequence

from rich.table import Table as RichTable

from danlu.console import STATUS_STYLE, console, escape
from danlu.report import Report

__all__ = ["print_report", "sparkline", "format_value"]

_BLOCKS = "▁▂▃▄▅▆▇█"
_ICON = {"pass": "✓", "info": "i", "skip": "-", "warn": "!", "fail": "✗"}


def format_value(value) -> str:
    """Numbers in 4 significant digits, everything else as text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def sparkline(values: Sequence[float], width: int = 60) -> str:
    """A one-line unicode plot; buckets are averaged, non-finite points show as '×'."""
    vals = list(values)
    if not vals:
        return ""
    if len(vals) > width:
        size = len(vals) / width
        buckets = [vals[int(i * size): max(int((i + 1) * size), int(i * size) + 1)] for i in range(width)]
        vals = [
            (sum(b) / len(b)) if all(math.isfinite(v) for v in b) else math.nan
            for b in buckets
        ]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return "×" * len(vals)
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    return "".join(
        _BLOCKS[min(7, int((v - lo) / span * 7.999))] if math.isfinite(v) else "×" for v in vals
    )


def print_report(report: Report, con=None, verbose: bool = False) -> None:
    """Print a report: a header, one line per finding, the tables."""
    con = con or console
    counts = report.counts()
    style = STATUS_STYLE.get(report.status, "")
    tally = "  ".join(f"[{STATUS_STYLE[s]}]{n} {s}[/]" for s, n in counts.items() if n)
    con.print(f"[bold]{escape(report.title)}[/]  [{style}]{report.status.upper()}[/]  {tally}")
    for f in report.findings:
        st = STATUS_STYLE.get(f.status, "")
        con.print(
            f" [{st}]{_ICON.get(f.status, '?')} {f.status:<4}[/] [bold]{escape(f.id):<4}[/] "
            f"{escape(f.name)}: {escape(f.summary)}"
        )
        if f.status in ("warn", "fail") or verbose:
            if f.cause:
                con.print(f"        [dim]cause:[/] {escape(f.cause)}")
            if f.fix:
                con.print(f"        [dim]fix:[/]   {escape(f.fix)}")
            if f.details and (verbose or f.status == "fail"):
                for line in f.details.strip().splitlines()[-6:]:
                    con.print(f"        [dim]{escape(line)}[/]")
    for table in report.tables:
        rt = RichTable(title=escape(table.title), title_justify="left", show_edge=False)
        for col in table.columns:
            rt.add_column(escape(str(col)))
        for row in table.rows:
            rt.add_row(*[escape(format_value(v)) for v in row])
        con.print(rt)
    for image in report.images:
        con.print(f" [dim]image:[/] {escape(image)}")
