"""Browsing the store: `danlu runs`, `show`, `diff`, `tag`, `note` (E1, E2, E3)."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import numpy as np

from danlu.cli.options import add_json_arg, add_store_arg, open_store_from_args, print_json
from danlu.console import STATUS_STYLE, console, escape
from danlu.render import Column, format_value, print_fields, print_report, print_table, sparkline

__all__ = ["register", "varying_hparams", "run_to_dict"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="the experiment table: every run, what changed, the outcome",
                       description="List runs (newest first): name, status, age, duration, the hyperparameters "
                       "that differ between the listed runs, the best validation metric, the diagnosis, tags and "
                       "note (E2). The table fits the terminal (80 columns in a pipe); columns that do not fit are "
                       "named below it.",
                       epilog="Examples:\n  danlu runs\n  danlu runs --columns name,lr,best,note\n"
                       "  danlu runs --wide --kind all\n  danlu runs --json | jq '.[0].summary'",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", action="append", default=[], help="only runs with this tag (repeatable)")
    p.add_argument("--status", choices=["running", "finished", "failed", "crashed", "stopped"])
    p.add_argument("--recipe", help="only runs whose recipe path contains this text")
    p.add_argument("--kind", default=None,
                   help="train, init, check, audit, lr, study, cases ... or all (default: train and init)")
    p.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50; 0 = all)")
    p.add_argument("--columns", default=None, metavar="A,B,...",
                   help="the columns to show, in order: name, id, kind, status, age, started, time, best, "
                   "loss, diagnosis, tags, note, or any hyperparameter or summary key")
    p.add_argument("--wide", action="store_true", help="every column, at full width (wider than the terminal)")
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
    """Hyperparameter names whose values differ among the runs (E2: what changed). Among runs of
    several kinds, only the training runs' hyperparameters count (a study's settings are not one)."""
    trained = [r for r in runs if r.kind in ("train", "init")]
    runs = trained if trained and len(trained) < len(runs) else runs
    keys: list[str] = []
    for r in runs:
        for k in r.config:
            if k not in keys and k not in _RUN_COLUMNS:
                keys.append(k)
    return [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1 and not _labels_a_run(runs, k)]


def _labels_a_run(runs, key: str) -> bool:
    """A setting that names where a run writes rather than how it trains: a path (a Trainer's
    output_dir, logging_dir), or text that differs in every run (a run_name). It is not what
    changed between runs; `--columns` still shows it."""
    values = [r.config.get(key) for r in runs if key in r.config]
    texts = [v for v in values if isinstance(v, str)]
    if not texts or len(texts) < len(values):
        return False
    if any("/" in v or "\\" in v for v in texts):
        return True
    return len(texts) > 5 and len(set(texts)) == len(texts)


def _main_metric(summary: dict[str, Any]) -> tuple[str, Any] | None:
    for key, value in summary.items():
        if key.startswith("best_val_") and key != "best_val_loss":
            return key[len("best_val_"):], value
    return None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
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


#: The columns of `danlu runs` besides hyperparameters and summary keys, with how much each matters
#: when the terminal is narrow (higher stays longer) and how far it may be cut.
_RUN_COLUMNS = {
    "name": Column("name", 100, min_width=12, middle=True), "id": Column("id", 15, shrink=False),
    "kind": Column("kind", 75, shrink=False), "status": Column("status", 90, shrink=False),
    "age": Column("age", 60, shrink=False), "started": Column("started", 10, shrink=False),
    "time": Column("time", 55, shrink=False, justify="right"),
    "best": Column("best", 85, min_width=10), "loss": Column("loss", 40, shrink=False, justify="right"),
    "diagnosis": Column("diagnosis", 80, min_width=10), "tags": Column("tags", 25, min_width=6),
    "note": Column("note", 30, min_width=10),
}


def _age(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    seconds = max(0.0, now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return "now"


def _best(summary: dict[str, Any]) -> str:
    metric = _main_metric(summary)
    if metric:
        return f"{metric[0]} {format_value(metric[1])}"
    return f"loss {format_value(summary['best_val_loss'])}" if "best_val_loss" in summary else "-"


def _run_cell(r, key: str, now: float) -> Any:
    from rich.text import Text

    from danlu.curves import regime_title

    if key == "name":
        return r.name
    if key == "status":
        return Text(r.status, style=STATUS_STYLE.get(r.status, ""))
    simple = {"id": r.id, "kind": r.kind, "age": _age(r.created, now), "started": _when(r.created),
              "time": _duration(r.duration), "best": _best(r.summary),
              "loss": format_value(r.summary.get("best_val_loss", "-")),
              "diagnosis": regime_title(str(r.summary["diagnosis"])) if r.summary.get("diagnosis") else "-",
              "tags": ",".join(r.tags), "note": " ".join(r.note.split())}
    if key in simple:
        return simple[key]
    if key in r.config:
        return format_value(r.config[key], digits=3)
    return format_value(r.summary.get(key, "-"))


def cmd_runs(args: argparse.Namespace) -> int:
    import time

    from danlu.errors import DanluError, StoreMissing

    try:
        store = open_store_from_args(args, create=False)
    except StoreMissing as exc:  # nothing to list, and nothing is created at a mistyped path
        if args.json:
            print_json([])
        else:
            console.print(f"No runs: {escape(str(exc))}.")
        return 0
    kinds = [None] if args.kind == "all" else [args.kind] if args.kind else ["train", "init"]
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
    if args.columns:
        keys = [k.strip() for k in args.columns.split(",") if k.strip()]
        known = set(_RUN_COLUMNS) | {k for r in runs for k in (*r.config, *r.summary)}
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise DanluError(f"Unknown column(s) {', '.join(unknown)}; choose from: {', '.join(sorted(known))}.")
    else:
        mixed = len({r.kind for r in runs}) > 1
        keys = ["name", *(["kind"] if mixed else []), "status", "age", "time", *varying, "best", "diagnosis",
                "tags", "note"]
        if args.wide:
            keys += ["id", "loss", "started"]
    columns = [_RUN_COLUMNS.get(k) or Column(k, 70 - min(i, 20), min_width=8, justify="right")
               for i, k in enumerate(keys)]
    now = time.time()
    rows = [[_run_cell(r, k, now) for k in keys] for r in runs]
    print_table(f"{len(runs)} run(s) in {store.display}", columns, rows, console,
                width=None if args.wide else -1, hint="--wide or --columns shows them")
    return 0


# ---------------------------------------------------------------------- show
def cmd_show(args: argparse.Namespace) -> int:
    from danlu.report import Report

    store = open_store_from_args(args, create=False)
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
    fields = [(k, v) for k, v in (("recipe", r.recipe or ""), ("note", r.note), ("tags", ", ".join(r.tags)),
                                  ("started", f"{_when(r.created)}, took {_duration(r.duration)}"),
                                  ("parent", r.parent or ""), ("command", r.command or "")) if v]
    print_fields(fields)
    if r.config:
        print_table("hyperparameters", [Column("name", 90, shrink=False), Column("value", 80, min_width=10)],
                    [[k, format_value(v)] for k, v in r.config.items()])
    if r.summary:
        print_table("summary", [Column("name", 90, shrink=False), Column("value", 80, min_width=10)],
                    [[k, _summary_value(k, v)] for k, v in r.summary.items()])
    _print_repro(r.repro)
    curves = [(name, v) for name, (_s, v) in series.items() if name != "epoch"]
    if curves:
        rows = []
        for name, values in curves:
            finite = values[np.isfinite(values)] if len(values) else values
            rows.append([name, str(len(values)), format_value(float(values[0])) if len(values) else "-",
                         format_value(float(values[-1])) if len(values) else "-",
                         format_value(float(finite.min())) if len(finite) else "-", sparkline(values.tolist(), 24)])
        print_table("curves", [Column("series", 90, min_width=10), Column("points", 60, shrink=False, justify="right"),
                               Column("first", 50, shrink=False, justify="right"),
                               Column("last", 70, shrink=False, justify="right"),
                               Column("min", 65, shrink=False, justify="right"), Column("", 40, min_width=8)], rows)
    if checkpoints:
        console.print(f"  checkpoints  {', '.join(checkpoints)} in {escape(str(ckpt_dir))}")
    for rep in reports:
        console.print()
        print_report(Report.from_dict(rep.data))
    return 0


def _summary_value(key: str, value: Any) -> str:
    if key == "diagnosis" and value:
        from danlu.curves import regime_title

        return f"{regime_title(str(value))} ({value})"
    if key == "seconds" and isinstance(value, (int, float)):
        return _duration(value)
    return format_value(value)


def _data_line(data: dict[str, Any]) -> str:
    """A data fingerprint as words: "train: TensorDataset, 1,438 items (64 hashed), val: ...; sha256 3db3b7ba6749"."""
    parts = []
    for split, info in data.items():
        if not isinstance(info, dict):
            continue
        size = f"{info['size']:,} items" if isinstance(info.get("size"), int) else "size unknown"
        parts.append(f"{split}: {info.get('type') or '?'}, {size} ({info.get('sampled', 0)} hashed)")
    digest = data.get("sha256")
    return "; ".join(parts) + (f"; sha256 {str(digest)[:12]}" if digest else "")


def _print_repro(repro: dict[str, Any]) -> None:
    if not repro:
        return
    git = repro.get("git") or {}
    env = repro.get("env") or {}
    data = repro.get("data") or {}
    fields = []
    if git:
        dirty = " (dirty: uncommitted changes recorded)" if git.get("dirty") else ""
        fields.append(("git", f"{(git.get('commit') or 'no commit yet')[:12]} on {git.get('branch') or '?'}{dirty}"))
    if env:
        fields.append(("env", f"python {env.get('python', '?')}, torch {env.get('torch', '?')}, "
                              f"cuda {env.get('cuda') or '-'}, {env.get('cpu') or ''} {', '.join(env.get('gpus') or [])}"))
    if data:
        fields.append(("data", _data_line(data)))
    if repro.get("code_snapshot"):
        files = repro["code_snapshot"]
        fields.append(("code", f"{len(files)} file(s) snapshotted: {', '.join(files[:5])}"
                               + (f" and {len(files) - 5} more" if len(files) > 5 else "")))
    if repro.get("error"):
        fields.append(("capture", str(repro["error"])))
    if fields:
        console.print("[bold]reproducibility[/]")
        print_fields(fields)


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
    columns = [Column("name", 90, min_width=10), Column(a.name, 80, min_width=10), Column(b.name, 80, min_width=10)]
    if hparams:
        print_table("hyperparameters", columns, [[row.key, *_differing(row.values)] for row in hparams])
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
        if rows:
            print_table(section, columns, [[row.key, *_differing(row.values)] for row in rows])
    return 0


def _differing(values: list[Any]) -> list[str]:
    """Values as text; long texts that share a beginning start a little before they differ ("…lr=3e-3 ...")."""
    texts = [format_value(v) for v in values]
    if len(texts) > 1 and all(len(t) > 24 for t in texts):
        import os

        common = len(os.path.commonprefix(texts))
        if common > 16:
            return ["…" + t[common - 8:] for t in texts]
    return texts


def _print_unified(text: str) -> None:
    for line in text.splitlines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim" if line.startswith("@@") else ""
        console.print(f"[{style}]{escape(line)}[/]" if style else escape(line))


# ------------------------------------------------------------------ tag, note
def cmd_tag(args: argparse.Namespace) -> int:
    store = open_store_from_args(args, create=False)
    r = store.get_run(args.run)
    if args.remove:
        tags = store.set_tags(r.id, remove=args.names)
    else:
        tags = store.set_tags(r.id, add=args.names)
    console.print(f"{escape(r.name)}: tags {escape(', '.join(tags)) or '(none)'}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    store = open_store_from_args(args, create=False)
    r = store.get_run(args.run)
    store.update_run(r.id, note=args.text)
    console.print(f"{escape(r.name)}: note set")
    return 0
