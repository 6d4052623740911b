"""Browsing the store: `danlu runs`, `show`, `diff`, `tag`, `note` (E1, E2, E3)."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from rich.table import Table

from danlu.cli.options import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import STATUS_STYLE, console, escape
from danlu.render import format_value, print_report, sparkline

__all__ = ["register", "varying_hparams", "run_to_dict"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="the experiment table: every run, what changed, the outcome",
                       description="List runs (newest first) with the hyperparameters that differ "
                       "between them, best validation loss and metric, diagnosis and duration (E2).")
    p.add_argument("--tag", action="append", default=[], help="only runs with this tag (repeatable)")
    p.add_argument("--status", choices=["running", "finished", "failed", "crashed", "stopped"])
    p.add_argument("--recipe", help="only runs whose recipe path contains this text")
    p.add_argument("--kind", default=None, help="train, init, check, audit ... (default: train and init)")
    p.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50; 0 = all)")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="one run: hyperparameters, summary, reproducibility, curves")
    p.add_argument("run", metavar="RUN", help="id, id prefix, name, or 'last'")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("diff", help="what differs between two runs: hyperparameters, code, environment")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    add_store_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("tag", help="tag a run (mainline steps, branches: E3)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--remove", action="store_true", help="remove the tags instead")
    add_store_arg(p)
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("note", help="set a run's strategy note (E2)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("text", help="the note; '' clears it")
    add_store_arg(p)
    p.set_defaults(func=cmd_note)


# ---------------------------------------------------------------------- runs
def varying_hparams(runs) -> list[str]:
    """Hyperparameter names whose values differ among the runs (E2: what changed)."""
    keys: list[str] = []
    for r in runs:
        for k in r.config:
            if k not in keys:
                keys.append(k)
    return [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]


def _main_metric(summary: dict[str, Any]) -> tuple[str, Any] | None:
    for key, value in summary.items():
        if key.startswith("best_val_") and key != "best_val_loss":
            return key[len("best_val_"):], value
    return None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def run_to_dict(r) -> dict[str, Any]:
    return {
        "id": r.id, "name": r.name, "kind": r.kind, "status": r.status, "recipe": r.recipe,
        "note": r.note, "tags": r.tags, "config": r.config, "summary": r.summary,
        "created": r.created, "ended": r.ended, "duration": r.duration, "command": r.command,
        "parent": r.parent,
    }


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store_from_args(args)
    kinds = [args.kind] if args.kind else ["train", "init"]
    runs = []
    for kind in kinds:
        runs += store.list_runs(tags=args.tag, status=args.status, recipe=args.recipe, kind=kind,
                                limit=args.limit or None)
    runs.sort(key=lambda r: r.created, reverse=True)
    if args.limit:
        runs = runs[: args.limit]
    if args.json:
        print_json([run_to_dict(r) for r in runs])
        return 0
    if not runs:
        console.print("No runs yet. Start one with: [bold]danlu train examples/digits.py[/]")
        return 0
    varying = varying_hparams(runs)
    t = Table(title=f"{len(runs)} run(s) in {escape(str(store.root))}", title_justify="left")
    for col in ["name", "id", "status", "note", "tags", *varying, "best val loss", "metric", "diagnosis",
                "duration", "started"]:
        t.add_column(escape(col), overflow="fold")
    for r in runs:
        metric = _main_metric(r.summary)
        style = STATUS_STYLE.get(r.status, "")
        t.add_row(
            escape(r.name), r.id, f"[{style}]{r.status}[/]", escape(r.note[:40]), escape(",".join(r.tags)),
            *[escape(format_value(r.config.get(k, "-"))) for k in varying],
            format_value(r.summary["best_val_loss"]) if "best_val_loss" in r.summary else "-",
            f"{metric[0]} {format_value(metric[1])}" if metric else "-",
            escape(str(r.summary.get("diagnosis", "-"))),
            _duration(r.duration), _when(r.created),
        )
    console.print(t)
    return 0


# ---------------------------------------------------------------------- show
def cmd_show(args: argparse.Namespace) -> int:
    from danlu.report import Report

    store = open_store_from_args(args)
    r = store.get_run(args.run)
    series = {name: store.read_series(r.id, name) for name in store.series_names(r.id)}
    reports = store.list_reports(run_id=r.id)
    ckpt_dir = store.run_dir(r.id, create=False) / "checkpoints"
    checkpoints = sorted(p.name for p in ckpt_dir.glob("*.pt")) if ckpt_dir.exists() else []
    if args.json:
        data = run_to_dict(r)
        data["repro"] = r.repro
        data["series"] = {k: {"steps": s.tolist(), "values": v.tolist()} for k, (s, v) in series.items()}
        data["reports"] = [{"id": rep.id, "kind": rep.kind, "created": rep.created, "status": rep.data.get("status")}
                           for rep in reports]
        data["checkpoints"] = checkpoints
        print_json(data)
        return 0

    style = STATUS_STYLE.get(r.status, "")
    console.print(f"[bold]{escape(r.name)}[/] ({r.id})  [{style}]{r.status}[/]  {r.kind}")
    if r.recipe:
        console.print(f"  recipe   {escape(r.recipe)}")
    if r.note:
        console.print(f"  note     {escape(r.note)}")
    if r.tags:
        console.print(f"  tags     {escape(', '.join(r.tags))}")
    console.print(f"  started  {_when(r.created)}   duration {_duration(r.duration)}")
    if r.command:
        console.print(f"  command  {escape(r.command)}")

    if r.config:
        t = Table(title="hyperparameters", title_justify="left", show_edge=False)
        t.add_column("name")
        t.add_column("value")
        for k, v in r.config.items():
            t.add_row(escape(k), escape(format_value(v)))
        console.print(t)
    if r.summary:
        t = Table(title="summary", title_justify="left", show_edge=False)
        t.add_column("name")
        t.add_column("value", overflow="fold")
        for k, v in r.summary.items():
            t.add_row(escape(k), escape(format_value(v)))
        console.print(t)
    _print_repro(r.repro)
    if series:
        t = Table(title="curves", title_justify="left", show_edge=False)
        for col in ("series", "points", "first", "last", "min", ""):
            t.add_column(col)
        for name, (_steps, values) in series.items():
            if name == "epoch":
                continue
            finite = values[~(values != values)] if len(values) else values
            t.add_row(escape(name), str(len(values)), format_value(float(values[0])) if len(values) else "-",
                      format_value(float(values[-1])) if len(values) else "-",
                      format_value(float(finite.min())) if len(finite) else "-", sparkline(values.tolist(), 40))
        console.print(t)
    if checkpoints:
        console.print(f"  checkpoints  {', '.join(checkpoints)} in {escape(str(ckpt_dir))}")
    for rep in reports:
        console.print()
        print_report(Report.from_dict(rep.data))
    return 0


def _print_repro(repro: dict[str, Any]) -> None:
    if not repro:
        return
    git = repro.get("git") or {}
    env = repro.get("env") or {}
    data = repro.get("data") or {}
    lines = []
    if git:
        dirty = " (dirty: uncommitted changes recorded)" if git.get("dirty") else ""
        lines.append(f"  git      {(git.get('commit') or 'no commit yet')[:12]} on {git.get('branch') or '?'}{dirty}")
    if env:
        lines.append(f"  env      python {env.get('python', '?')}, torch {env.get('torch', '?')}, "
                     f"cuda {env.get('cuda') or '-'}, {env.get('cpu') or ''} {', '.join(env.get('gpus') or [])}")
    if data:
        lines.append(f"  data     {format_value(data)}"[:200])
    if repro.get("code_snapshot"):
        lines.append(f"  code     {len(repro['code_snapshot'])} file(s) snapshotted: "
                     f"{', '.join(repro['code_snapshot'][:5])}")
    if repro.get("error"):
        lines.append(f"  capture  {repro['error']}")
    if lines:
        console.print("[bold]reproducibility[/]")
        for line in lines:
            console.print(escape(line))


# ---------------------------------------------------------------------- diff
def cmd_diff(args: argparse.Namespace) -> int:
    import danlu

    d = danlu.diff(args.run_a, args.run_b, store=args.store)
    if args.json:
        print_json(d.to_dict())
        return 0
    a, b = d.a, d.b
    console.print(f"[bold]{escape(a.name)}[/] ({a.id})  vs  [bold]{escape(b.name)}[/] ({b.id})")
    hparams = d.section("hyperparameters")
    if hparams:
        t = Table(title="hyperparameters", title_justify="left", show_edge=False)
        for col in ("name", a.name, b.name):
            t.add_column(escape(col))
        for row in hparams:
            t.add_row(escape(row.key), *[escape(format_value(v)) for v in row.values])
        console.print(t)
    else:
        console.print("hyperparameters: identical")
    if d.code:
        console.print("[bold]code snapshot[/]")
        for text in d.code.values():
            _print_unified(text)
    else:
        console.print("code snapshot: identical")
    if d.uncommitted:
        console.print("[bold]uncommitted changes[/]")
        _print_unified(d.uncommitted)
    for section in ("code", "environment", "data", "outcome", "other"):
        rows = d.section(section)
        if not rows:
            continue
        t = Table(title=section, title_justify="left", show_edge=False)
        for col in ("key", a.name, b.name):
            t.add_column(escape(col), overflow="fold")
        for row in rows:
            t.add_row(escape(row.key), *[escape(format_value(v)) for v in row.values])
        console.print(t)
    return 0


def _print_unified(text: str) -> None:
    for line in text.splitlines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim" if line.startswith("@@") else ""
        console.print(f"[{style}]{escape(line)}[/]" if style else escape(line))


# ------------------------------------------------------------------ tag, note
def cmd_tag(args: argparse.Namespace) -> int:
    store = open_store_from_args(args)
    r = store.get_run(args.run)
    if args.remove:
        tags = store.set_tags(r.id, remove=args.names)
    else:
        tags = store.set_tags(r.id, add=args.names)
    console.print(f"{escape(r.name)}: tags {escape(', '.join(tags)) or '(none)'}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    store = open_store_from_args(args)
    r = store.get_run(args.run)
    store.update_run(r.id, note=args.text)
    console.print(f"{escape(r.name)}: note set")
    return 0
