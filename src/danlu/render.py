"""Terminal views of the shared report model, of tables and of curves (sparklines, plots).

Every producer's Report (check, diagnosis, lr, audit, cases, study) prints through
`print_report`, so all of them look alike: one line per finding, cause and fix below
the ones that did not pass, then the tables. Every table danlu prints goes through
`print_table`, which fits it to the terminal (80 columns in a pipe or a CI log): cells
never wrap, long ones end in an ellipsis, and when even that is too wide the least
important columns are left out and named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rich import box
from rich.table import Table as RichTable
from rich.text import Text

from danlu.console import STATUS_STYLE, console, escape

if TYPE_CHECKING:  # the report model only names the type here (report.py renders through this module)
    from danlu.report import Report

__all__ = ["print_report", "print_table", "print_fields", "Column", "fit_columns", "sparkline", "format_value",
           "terminal_plot"]

_BLOCKS = "▁▂▃▄▅▆▇█"
_ICON = {"pass": "✓", "info": "i", "skip": "-", "warn": "!", "fail": "✗"}


def format_value(value, digits: int = 4) -> str:
    """A value as a person reads it: numbers in `digits` significant digits, lists as "a, b, c",
    mappings as "key: value, ..." (nested ones in parentheses), everything else as text."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(value) if not math.isfinite(value) else f"{value:.{digits}g}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_nested(v, digits)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_nested(v, digits) for v in value)
    return "-" if value is None else str(value)


def _nested(value, digits: int) -> str:
    text = format_value(value, digits)
    return f"({text})" if isinstance(value, (Mapping, list, tuple)) and value else text


@dataclass
class Column:
    """One column of a terminal table: which matter most, which may be cut short."""

    name: str
    priority: int = 50        # when the table is too wide, the lowest priorities are left out first
    shrink: bool = True       # may be cut (with an ellipsis) down to min_width
    min_width: int = 8
    justify: str = "left"
    middle: bool = False      # cut in the middle ("study-vivi…62-t3": names whose end tells them apart)


_GAP = 2  # the space between two columns


def _width(cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else len(str(cell))


def fit_columns(columns: Sequence[Column], rows: Sequence[Sequence], width: int | None) -> tuple[list[int], list[int]]:
    """(indices of the columns kept, their widths) so the table fits `width` characters (None: no limit).

    The lowest priorities are left out until the others fit at their smallest (shrinkable columns
    at min_width, the rest whole); the room left goes back to the shrinkable columns, most
    important first, up to their full width.
    """
    natural = [max([len(c.name)] + [_width(r[i]) for r in rows]) for i, c in enumerate(columns)]
    keep = list(range(len(columns)))
    if width is None:
        return keep, natural
    smallest = [min(n, max(c.min_width, len(c.name))) if c.shrink else n for c, n in zip(columns, natural)]

    def need(kept: list[int]) -> int:
        return sum(smallest[i] for i in kept) + _GAP * (len(kept) - 1)

    while len(keep) > 1 and need(keep) > width:
        keep.remove(min(keep, key=lambda k: (columns[k].priority, -k)))
    widths = {i: smallest[i] for i in keep}
    room = width - need(keep)
    for priority in sorted({columns[i].priority for i in keep}, reverse=True):
        group = [i for i in keep if columns[i].priority == priority]
        while room > 0:  # columns of equal priority share the room evenly
            hungry = [i for i in group if widths[i] < natural[i]]
            if not hungry:
                break
            share = max(1, room // len(hungry))
            for i in hungry:
                extra = min(share, natural[i] - widths[i], room)
                widths[i] += extra
                room -= extra
    return keep, [widths[i] for i in keep]


def print_fields(fields: Sequence[tuple[str, str]], con=None, indent: int = 2) -> None:
    """Aligned "key  value" lines; a long value wraps under itself, not under the key."""
    con = con or console
    grid = RichTable.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="dim")
    grid.add_column()
    for key, value in fields:
        grid.add_row(" " * indent + key, Text(value))
    con.print(grid)


def print_table(title: str, columns: Sequence[Column | str], rows: Sequence[Sequence], con=None, *,
                width: int | None = -1, hint: str = "") -> list[str]:
    """Print rows (cells: text or rich Text) fitted to the terminal; return the names of columns left out.

    width=-1 fits the console's width, None never cuts (--wide). `hint` follows the note on left-out
    columns (e.g. "--wide shows them").
    """
    con = con or console
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    cells = [[c if isinstance(c, Text) else str(c) for c in row] for row in rows]
    limit = con.width if width == -1 else width
    keep, widths = fit_columns(cols, cells, limit)
    table = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for i, w in zip(keep, widths):
        table.add_column(escape(cols[i].name), no_wrap=True, overflow="ellipsis", max_width=w,
                         min_width=min(w, len(cols[i].name)), justify=cols[i].justify)  # type: ignore[arg-type]
    full = sum(widths) + _GAP * (len(widths) - 1)
    if limit is None and full > con.width:  # --wide: a console as wide as the table (rich caps at its own width)
        from rich.console import Console

        con = Console(file=con.file, width=full, highlight=False, force_terminal=con.is_terminal,
                      no_color=con.no_color)
    if title:
        con.print(Text(title, style="bold"), width=max(full, len(title)) if limit is None else max(limit, 20), crop=False)
    for row in cells:
        out = []
        for i, w in zip(keep, widths):
            cell = row[i]
            if cols[i].middle and isinstance(cell, str) and len(cell) > w > 3:
                head = (w - 1 + 1) // 2
                cell = cell[:head] + "…" + cell[len(cell) - (w - 1 - head):]
            out.append(cell if isinstance(cell, Text) else Text(cell))
        table.add_row(*out)
    con.print(table, width=full if limit is None else max(limit, 20), crop=limit is not None)
    dropped = [cols[i].name for i in range(len(cols)) if i not in keep]
    if dropped:
        names = ", ".join(dropped[:6]) + (f" and {len(dropped) - 6} more" if len(dropped) > 6 else "")
        con.print(f"[dim]not shown: {escape(names)}" + (f"; {escape(hint)}" if hint else "") + "[/]")
    return dropped


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


def print_report(report: Report, con=None, verbose: bool = False, folder=None) -> None:
    """Print a report: a header, one line per finding, the tables, and where its pictures are
    (under `folder`, the run's folder, when the report was kept with a run)."""
    con = con or console
    counts = report.counts()
    style = STATUS_STYLE.get(report.status, "")
    tally = "  ".join(f"[{STATUS_STYLE[s]}]{n} {s}[/]" for s, n in counts.items() if n)
    con.print(f"[bold]{escape(report.title)}[/]  [{style}]{report.status.upper()}[/]  {tally}")
    root = report.meta.get("root_cause")
    if root:
        if root.get("crash"):
            con.print(f" [bold]start here:[/] {escape(root['id'])} {escape(root['name'])} crashed; "
                      f"{escape(', '.join(root['follows']))} crashed with the same error")
        else:
            verb = "warns" if root.get("status") == "warn" else "fails"
            con.print(f" [bold]start here:[/] {escape(root['id'])} {escape(root['name'])} {verb}; "
                      f"{escape(', '.join(root['follows']))} probably "
                      f"{'follow' if len(root['follows']) > 1 else 'follows'} from it")
    lines = RichTable.grid(padding=(0, 1))
    lines.add_column(no_wrap=True)
    lines.add_column(no_wrap=True)
    lines.add_column()
    for f in report.findings:
        st = STATUS_STYLE.get(f.status, "")
        follows = f.evidence.get("follows_from") if isinstance(f.evidence, dict) else None
        link = "the same error as" if f.evidence.get("same_error") else "probably follows from"
        text = Text.from_markup(f"[bold]{escape(f.name)}:[/] {escape(f.summary)}"
                                + (f" [dim]({link} {escape(str(follows))})[/]" if follows else ""))
        if not (follows and not verbose) and (f.status in ("warn", "fail") or verbose):
            if f.cause:
                text.append_text(Text.from_markup(f"\n[dim]cause:[/] {escape(f.cause)}"))
            if f.fix:
                text.append_text(Text.from_markup(f"\n[dim]fix:[/]   {escape(f.fix)}"))
            if f.details and (verbose or f.status == "fail"):
                for line in f.details.strip().splitlines()[-6:]:
                    text.append_text(Text.from_markup(f"\n[dim]{escape(line)}[/]"))
        lines.add_row(Text.from_markup(f"[{st}]{_ICON.get(f.status, '?')} {f.status:<4}[/]"),
                      Text(f.id, style="bold"), text)
    con.print(lines)
    for table in report.tables:
        columns = [Column(str(c), 100 - k, middle=str(c) in ("run", "name", "path", "file")) for k, c in enumerate(table.columns)]
        print_table(table.title, columns, [[format_value(v) for v in row] for row in table.rows], con)
    for image in report.images:
        con.print(f" [dim]picture:[/] {escape(str(folder / image) if folder is not None else image)}")


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
