"""Terminal views of the shared report model and of curves (sparklines).

Every producer's Report (check, diagnosis, lr, audit, cases, study) prints through
`print_report`, so all of them look alike: one line per finding, cause and fix below
the ones that did not pass, then the tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.table import Table as RichTable

from danlu.console import STATUS_STYLE, console, escape
from danlu.report import Report

__all__ = ["print_report", "sparkline", "format_value", "terminal_plot"]

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
    root = report.meta.get("root_cause")
    if root:
        verb = "warns" if root.get("status") == "warn" else "fails"
        con.print(f" [bold]start here:[/] {escape(root['id'])} {escape(root['name'])} {verb}; "
                  f"{escape(', '.join(root['follows']))} probably "
                  f"{'follow' if len(root['follows']) > 1 else 'follows'} from it")
    for f in report.findings:
        st = STATUS_STYLE.get(f.status, "")
        follows = f.evidence.get("follows_from") if isinstance(f.evidence, dict) else None
        con.print(
            f" [{st}]{_ICON.get(f.status, '?')} {f.status:<4}[/] [bold]{escape(f.id):<4}[/] "
            f"{escape(f.name)}: {escape(f.summary)}" + (f" [dim](probably follows from {follows})[/]" if follows else "")
        )
        if follows and not verbose:
            continue
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


# Braille cell: 2 columns x 4 rows of dots; bit of dot (col, row).
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def terminal_plot(
    x: Sequence[float],
    y: Sequence[float],
    *,
    width: int = 60,
    height: int = 12,
    logx: bool = False,
    marks: dict[str, float] | None = None,
    xlabel: str = "",
    ymax: float | None = None,
) -> str:
    """A braille line plot (each character holds 2x4 dots); `marks` draw labelled vertical lines;
    values above `ymax` are drawn at the top edge (so a divergence tail does not flatten the rest)."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys) & ((xs > 0) if logx else True)
    xs, ys = xs[ok], ys[ok]
    if len(xs) < 2:
        return "(not enough points to plot)"
    if ymax is not None and math.isfinite(ymax):
        ys = np.minimum(ys, ymax)
    tx = np.log10(xs) if logx else xs
    x0, x1 = float(tx.min()), float(tx.max())
    y0, y1 = float(ys.min()), float(ys.max())
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    w, h = width * 2, height * 4
    grid = np.zeros((height, width), dtype=np.int64)

    def put(px: int, py: int) -> None:
        if 0 <= px < w and 0 <= py < h:
            grid[py // 4, px // 2] |= _DOT[px % 2][py % 4]

    px = np.round((tx - x0) / (x1 - x0) * (w - 1)).astype(int)
    py = np.round((y1 - ys) / (y1 - y0) * (h - 1)).astype(int)
    for i in range(len(px)):
        put(px[i], py[i])
        if i:  # join neighbours so the line stays continuous
            steps = max(abs(px[i] - px[i - 1]), abs(py[i] - py[i - 1]))
            for t in range(1, steps):
                put(round(px[i - 1] + (px[i] - px[i - 1]) * t / steps),
                    round(py[i - 1] + (py[i] - py[i - 1]) * t / steps))
    labels = []
    for label, value in (marks or {}).items():
        if value is None or not math.isfinite(value) or (logx and value <= 0):
            continue
        v = math.log10(value) if logx else value
        col = int(round((v - x0) / (x1 - x0) * (w - 1)))
        if 0 <= col < w:
            for row in range(0, h, 2):
                put(col, row)
            labels.append(f"┆ {label} = {value:.2g}")
    lines = []
    for r in range(height):
        axis = f"{y1:>9.3g} ┤" if r == 0 else (f"{y0:>9.3g} ┤" if r == height - 1 else " " * 10 + "│")
        lines.append(axis + "".join(chr(0x2800 + int(c)) for c in grid[r]))
    lo = f"{10 ** x0:.0e}" if logx else f"{x0:.4g}"
    hi = f"{10 ** x1:.0e}" if logx else f"{x1:.4g}"
    lines.append(" " * 10 + "└" + "─" * width)
    lines.append(" " * 11 + lo + " " * max(1, width - len(lo) - len(hi)) + hi)
    if xlabel:
        lines.append(" " * 11 + xlabel.center(width))
    lines.extend(" " * 11 + line for line in labels)
    return "\n".join(lines)
