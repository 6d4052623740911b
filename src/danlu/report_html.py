"""A report as HTML for notebooks (Report._repr_html_): findings, tables and pictures inline.

The same content as the terminal view (danlu.render.print_report): a header with the
status and counts, one row per finding with its summary and, when it does not pass, the
cause and the fix; the tables (first rows); and the report's PNG pictures embedded, read
from the run's folder (`Report.folder`) when the report knows it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

from danlu.render import format_value

if TYPE_CHECKING:  # the report model only names the type here (report.py renders through this module)
    from danlu.report import Report

__all__ = ["report_html", "MAX_ROWS"]

#: Rows shown per table in a notebook; the rest are counted.
MAX_ROWS = 20

_COLOUR = {"pass": "#2e7d32", "info": "#1565c0", "skip": "#757575", "warn": "#ef6c00", "fail": "#c62828"}


def _badge(status: str) -> str:
    return (f'<span style="color:#fff;background:{_COLOUR.get(status, "#555")};border-radius:3px;'
            f'padding:0 5px;font-size:85%">{html.escape(status.upper())}</span>')


def report_html(report: Report) -> str:
    e = html.escape
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
    parts = [f'<div class="danlu-report"><h4 style="margin:4px 0">{e(report.title)} {_badge(report.status)}'
             f' <small style="color:#666">{e(counts)}</small></h4>']
    if report.findings:
        rows = []
        for f in report.findings:
            extra = ""
            if f.status in ("warn", "fail"):
                if f.cause:
                    extra += f'<br><small><b>cause:</b> {e(f.cause)}</small>'
                if f.fix:
                    extra += f'<br><small><b>fix:</b> {e(f.fix)}</small>'
            rows.append(f"<tr><td>{_badge(f.status)}</td><td>{e(f.id)}</td><td><b>{e(f.name)}</b></td>"
                        f"<td style='text-align:left'>{e(f.summary)}{extra}</td></tr>")
        parts.append("<table>" + "".join(rows) + "</table>")
    for table in report.tables:
        head = "".join(f"<th>{e(str(c))}</th>" for c in table.columns)
        body = "".join("<tr>" + "".join(f"<td>{e(format_value(v))}</td>" for v in row) + "</tr>"
                       for row in table.rows[:MAX_ROWS])
        more = (f"<tr><td colspan='{len(table.columns)}'><small>{len(table.rows) - MAX_ROWS} more rows</small></td></tr>"
                if len(table.rows) > MAX_ROWS else "")
        parts.append(f"<p><b>{e(table.title)}</b></p><table><tr>{head}</tr>{body}{more}</table>")
    for name in report.images:
        path = Path(report.folder) / name if report.folder else None
        if path is not None and path.is_file() and path.suffix.lower() == ".png":
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f'<p><img alt="{e(name)}" style="max-width:100%" src="data:image/png;base64,{data}"></p>')
        else:
            parts.append(f"<p><small>picture: {e(name)}</small></p>")
    parts.append("</div>")
    return "".join(parts)
