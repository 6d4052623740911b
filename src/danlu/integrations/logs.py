"""Other tools' logs into the store, and runs out to other tools: TensorBoard, CSV, JSON lines.

    import_logs(store, "runs/", "tensorboard")   # each folder with event files -> one run
    import_logs(store, "lightning_logs/", "csv") # each metrics.csv (Lightning's CSVLogger) -> one run
    import_logs(store, "log.jsonl", "jsonl")     # each .jsonl file -> one run
    export_runs(store, ["last"], "csv", "out/")  # out/<run name>/metrics.csv + hparams.yaml

An imported run is an ordinary finished run of kind "train", tagged ``source:<format>``,
so `danlu runs`, `danlu diagnose`, `danlu diff` and the dashboard read it like any other
(series named as in the source: `train_loss`, `val_loss`, `loss`, `eval/loss` and the like
are read as training and validation losses). Importing the same logs again skips the runs
already there (same name and source tag).

The JSON-lines form, one object per line:
    {"name": "baseline", "config": {"lr": 0.001}}            optional: run name, hyperparameters
    {"step": 10, "train/loss": 0.52, "wall": 1732950000.0}    a step's values; "wall" optional
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from danlu.errors import DanluError, RunNotFound
from danlu.integrations.eventfile import is_event_file, read_scalars, write_scalars
from danlu.store.base import Store

__all__ = ["IMPORT_FORMATS", "EXPORT_FORMATS", "ImportedRun", "import_logs", "export_runs"]

IMPORT_FORMATS = ("tensorboard", "csv", "jsonl")
EXPORT_FORMATS = ("tensorboard", "csv", "jsonl", "parquet")
#: CSV and JSON-lines columns that hold the time of a row, not a series.
_WALL_KEYS = ("wall", "time", "timestamp", "created_at")

Series = dict[str, list[tuple[int, float, float]]]   # name -> [(step, value, wall)]


@dataclass
class ImportedRun:
    """One source folder or file, and the run it became (or why it was skipped)."""

    source: str
    name: str
    run_id: str | None = None
    series: int = 0
    points: int = 0
    skipped: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Source:
    path: Path
    name: str
    series: Series
    config: dict[str, Any]


# ------------------------------------------------------------------------------ import
def import_logs(store: Store, path: str | Path, fmt: str, *, name: str | None = None,
                tags: Iterable[str] = ()) -> list[ImportedRun]:
    """Read the logs at `path` (a folder, searched recursively, or one file) into runs."""
    if fmt not in IMPORT_FORMATS:
        raise DanluError(f"Cannot import {fmt!r} logs; formats: {', '.join(IMPORT_FORMATS)}.")
    root = Path(path).expanduser()
    if not root.exists():
        raise DanluError(f"{root} does not exist; give the folder (or file) that holds the {fmt} logs.")
    sources = {"tensorboard": _tensorboard_sources, "csv": _csv_sources, "jsonl": _jsonl_sources}[fmt](root)
    if not sources:
        what = {"tensorboard": "event files (events.out.tfevents.*)", "csv": "metrics.csv files",
                "jsonl": ".jsonl files"}[fmt]
        raise DanluError(f"No {what} under {root}.")
    if name is not None and len(sources) > 1:
        raise DanluError(f"{len(sources)} runs found under {root}; a single name fits one. Import them without "
                         "a name (each is named after its folder), or point at one folder.")
    out = []
    for source in sources:
        run_name = name or source.name
        item = ImportedRun(str(source.path), run_name, config=source.config)
        try:
            existing = store.get_run(run_name)
        except RunNotFound:
            existing = None
        if existing is not None:
            item.run_id = existing.id
            item.skipped = ("already imported" if f"source:{fmt}" in existing.tags
                            else "a run of that name is already in the store; import with another name")
            out.append(item)
            continue
        if not source.series:
            item.skipped = "no scalar series in it"
            out.append(item)
            continue
        item.run_id = _store_run(store, source, run_name, fmt, list(tags))
        item.series = len(source.series)
        item.points = sum(len(p) for p in source.series.values())
        out.append(item)
    return out


def _store_run(store: Store, source: _Source, run_name: str, fmt: str, tags: list[str]) -> str:
    record = store.create_run(name=run_name, kind="train", config=source.config, tags=[f"source:{fmt}", *tags],
                              note=f"imported from {source.path}", command=f"danlu import {fmt} {source.path}")
    points = [(series, step, value, wall) for series, pts in source.series.items() for step, value, wall in pts]
    for start in range(0, len(points), 50_000):
        store.log_points(record.id, points[start:start + 50_000])
    walls = [w for _, _, _, w in points if w > 0]
    summary = {"imported_from": str(source.path), "source_format": fmt}
    store.update_run(record.id, status="finished", summary=summary, ended=max(walls) if walls else time.time())
    return record.id


def _relative_name(root: Path, folder: Path) -> str:
    """The folder's path from the imported folder, under that folder's own name
    (`lightning_logs/version_3`): names stay apart across projects."""
    base = root if root.is_dir() else root.parent
    top = base.resolve().name
    return f"{top}/{folder.relative_to(base).as_posix()}" if folder != base else top


def _tensorboard_sources(root: Path) -> list[_Source]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if is_event_file(p))
    folders: dict[Path, list[Path]] = {}
    for f in files:
        folders.setdefault(f.parent, []).append(f)
    out = []
    for folder, group in sorted(folders.items()):
        series: Series = {}
        for f in sorted(group):
            for tag, pts in read_scalars(f).items():
                series.setdefault(tag, []).extend(pts)
        for pts in series.values():
            pts.sort(key=lambda p: p[0])
        config = _read_json(folder / "config.json")
        out.append(_Source(folder, _relative_name(root, folder), series, config))
    return out


def _csv_sources(root: Path) -> list[_Source]:
    files = [root] if root.is_file() else sorted(root.rglob("metrics.csv"))
    out = []
    for f in files:
        wall_default = f.stat().st_mtime
        series: Series = {}
        with open(f, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for index, row in enumerate(reader):
                step = _int(row.get("step"), index, f)
                wall = next((_float(row[k]) for k in _WALL_KEYS if row.get(k) not in (None, "")), wall_default)
                for key, text in row.items():
                    if key in ("step", *_WALL_KEYS) or key is None or text in (None, ""):
                        continue
                    value = _float(text)
                    if value is None:
                        continue  # a text column (e.g. a note): not a series
                    series.setdefault(key, []).append((step, value, wall or wall_default))
        config = _read_flat_yaml(f.parent / "hparams.yaml")
        out.append(_Source(f.parent, _relative_name(root, f.parent), series, config))
    return out


def _jsonl_sources(root: Path) -> list[_Source]:
    files = [root] if root.is_file() else sorted(root.rglob("*.jsonl"))
    out = []
    for f in files:
        series: Series = {}
        config: dict[str, Any] = {}
        name = f.stem
        for number, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DanluError(f"{f}:{number}: not JSON ({exc.msg}); each line is one object, "
                                 'e.g. {"step": 10, "train/loss": 0.5}.') from None
            if not isinstance(row, dict):
                raise DanluError(f"{f}:{number}: each line is one JSON object, not {type(row).__name__}.")
            if "config" in row and isinstance(row["config"], dict):
                config.update(row["config"])
            if isinstance(row.get("name"), str):
                name = row["name"]
            if "step" not in row:
                continue
            step = _int(row["step"], number, f)
            wall = next((float(row[k]) for k in _WALL_KEYS if isinstance(row.get(k), int | float)), 0.0)
            for key, value in row.items():
                if key in ("step", "name", "config", *_WALL_KEYS):
                    continue
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                series.setdefault(key, []).append((step, float(value), wall))
        out.append(_Source(f, name, series, config))
    return out


def _int(text: Any, fallback: int, where: Path) -> int:
    if text in (None, ""):
        return fallback
    try:
        return int(float(text))
    except (TypeError, ValueError):
        raise DanluError(f"{where}: step {text!r} is not a number.") from None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _read_flat_yaml(path: Path) -> dict[str, Any]:
    """The top-level `key: value` lines of a YAML file such as Lightning's hparams.yaml (nested
    values are skipped): scalars become numbers, booleans or text."""
    if not path.is_file():
        return {}
    out: dict[str, Any] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line[0] in " \t#-" or ":" not in line:
            continue
        key, _, text = line.partition(":")
        text = text.strip()
        if not text:
            continue
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            lowered = text.lower()
            out[key.strip()] = {"true": True, "false": False, "null": None, "~": None}.get(
                lowered, _float(text) if _float(text) is not None else text.strip("'\""))
    return out


# ------------------------------------------------------------------------------ export
def export_runs(store: Store, refs: Sequence[str], fmt: str, out: str | Path) -> list[Path]:
    """Write each run's series and hyperparameters under `out`, one folder (or file) per run
    named after the run; returns what was written."""
    if fmt not in EXPORT_FORMATS:
        raise DanluError(f"Cannot export to {fmt!r}; formats: {', '.join(EXPORT_FORMATS)}.")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise DanluError("Exporting Parquet needs pyarrow: pip install pyarrow (or export csv).") from None
    records = [store.get_run(ref) for ref in refs]
    target = Path(out).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for record in records:
        series = _series_of(store, record)
        if fmt == "tensorboard":
            folder = target / record.name
            write_scalars(folder, series)
            (folder / "config.json").write_text(json.dumps(record.config, indent=2, default=str) + "\n")
            written.append(folder)
        elif fmt == "csv":
            written.append(_write_csv(target / record.name, series, record.config))
        elif fmt == "jsonl":
            written.append(_write_jsonl(target / f"{record.name}.jsonl", record.name, series, record.config))
        else:
            written.append(_write_parquet(target / f"{record.name}.parquet", series, record.config))
    return written


def _series_of(store: Store, record) -> Series:
    out: Series = {}
    for name in store.series_names(record.id):
        steps, values = store.read_series(record.id, name)
        walls = store.read_walls(record.id, name)
        if walls is None or len(walls[1]) != len(steps):
            wall_values = [float(record.created)] * len(steps)
        else:
            wall_values = walls[1].tolist()
        out[name] = list(zip(steps.tolist(), values.tolist(), wall_values))
    return out


def _by_step(series: Series) -> dict[int, dict[str, tuple[float, float]]]:
    rows: dict[int, dict[str, tuple[float, float]]] = {}
    for name, pts in series.items():
        for step, value, wall in pts:
            rows.setdefault(step, {})[name] = (value, wall)
    return dict(sorted(rows.items()))


def _write_csv(folder: Path, series: Series, config: dict[str, Any]) -> Path:
    """Lightning's CSVLogger layout: metrics.csv (one row per step, a column per series) and hparams.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(series)
    with open(folder / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "wall", *names])
        for step, values in _by_step(series).items():
            wall = min(w for _, w in values.values())
            writer.writerow([step, repr(wall), *(repr(values[n][0]) if n in values else "" for n in names)])
    lines = [f"{key}: {json.dumps(value, default=str)}" for key, value in config.items()]
    (folder / "hparams.yaml").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return folder


def _write_jsonl(path: Path, name: str, series: Series, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"name": name, "config": config}, default=str) + "\n")
        for step, values in _by_step(series).items():
            row: dict[str, Any] = {"step": step, "wall": min(w for _, w in values.values())}
            row.update({n: v for n, (v, _) in values.items()})  # NaN and Infinity as Python's json writes them
            fh.write(json.dumps(row) + "\n")
    return path


def _write_parquet(path: Path, series: Series, config: dict[str, Any]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(name, step, value, wall) for name, pts in series.items() for step, value, wall in pts]
    table = pa.table({"series": [r[0] for r in rows], "step": [r[1] for r in rows],
                      "value": [r[2] for r in rows], "wall": [r[3] for r in rows]},
                     metadata={"danlu.config": json.dumps(config, default=str)})
    pq.write_table(table, os.fspath(path))
    return path
