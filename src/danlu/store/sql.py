"""The run store over a SQL database: every query both backends share, written once.

:class:`SQLStore` implements the whole ``Store`` interface in portable SQL (``?``
placeholders; the PostgreSQL backend hands queries over with ``%s``) on the tables both
backends create alike (runs, tags, series, chunks, reports). A backend supplies only what
differs: how it connects and runs a transaction (``_write(fn)`` / ``_read(fn)`` call
``fn(db)``, where ``db.execute(sql, params)`` returns a cursor), and a few dialect
details named below. SQLiteStore (danlu.store.sqlite) and PostgresStore
(danlu.store.postgres) are such backends.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from danlu.errors import RunNotFound, StoreError
from danlu.store.base import (
    RUN_STATUSES,
    TRAINING_KINDS,
    ReportRecord,
    RunRecord,
    Store,
    check_run_name,
    is_crashed,
    make_run_name,
    process_identity,
    redact_credentials,
)
from danlu.store.encoding import (
    COMPACT_AFTER,
    FLOAT,
    JSON_FIELDS,
    PUT_RUN,
    SMALL_CHUNK,
    STEP,
    UPDATABLE,
    chunk_rows,
    clean_columns,
    clean_tags,
    decode,
    dumps,
    group_points,
    last_wins,
    put_row,
    run_records,
)

__all__ = ["SQLStore", "INSERT_CHUNK"]

T = TypeVar("T")
_HEX = re.compile(r"[0-9a-f]+")

INSERT_CHUNK = "INSERT INTO chunks (series_id, first_step, last_step, n, steps, vals, walls) VALUES (?, ?, ?, ?, ?, ?, ?)"

_RUN_COLUMNS = (
    "id, name, kind, status, recipe, note, command, parent, created, ended, heartbeat, pid, host, "
    "pidns, config, summary, {repro}, ({tags})"
)


class SQLStore(Store):
    """A Store on SQL tables; subclasses connect, run transactions and name their dialect."""

    #: column that orders runs created in the same instant (SQLite's rowid, a serial column)
    _seq = "rowid"
    #: "this column equals the parameter, NULL equal to NULL"
    _same = "IS ?"
    #: "the recipe spec contains the parameter"
    _contains = "instr(recipe, ?) > 0"
    #: a run's tags joined by chr(31) (encoding.TAG_SEP)
    _tags = "SELECT group_concat(tag, char(31)) FROM tags WHERE tags.run_id = runs.id"
    _series_ids: dict[tuple[str, str], int]
    _small_written: dict[int, int]

    @property
    def _cols_full(self) -> str:
        return _RUN_COLUMNS.format(repro="repro", tags=self._tags)

    @property
    def _cols_light(self) -> str:
        return _RUN_COLUMNS.format(repro="NULL", tags=self._tags)

    # ------------------------------------------------------------ what a backend gives
    def _write(self, fn: Callable[[Any], T]) -> T:
        """fn(db) in one write transaction; its result."""
        raise NotImplementedError

    def _read(self, fn: Callable[[Any], T]) -> T:
        """fn(db) in one read transaction (one consistent snapshot); its result."""
        raise NotImplementedError

    def _lock_runs(self, conn: Any) -> None:
        """Inside a write: no other writer may take a run name until this one commits (SQLite's
        write transactions already exclude each other)."""

    def _lock_series(self, conn: Any, series_id: int) -> None:
        """Inside a write: no other writer compacts this series until this one commits."""

    def _insert_id(self, conn: Any, sql: str, params: tuple) -> int:
        """Run an INSERT and return the new row's id."""
        cur = conn.execute(sql, params)
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    # ---------------------------------------------------------------- runs
    def create_run(
        self,
        *,
        name: str | None = None,
        kind: str = "train",
        recipe: str | None = None,
        config: dict[str, Any] | None = None,
        note: str = "",
        tags: Sequence[str] = (),
        command: str = "",
        parent: str | None = None,
    ) -> RunRecord:
        given = check_run_name(name) if name is not None else None
        command = redact_credentials(command)
        config_json = dumps(config or {}, "config")
        tag_list = clean_tags(tags)
        pid, host, pidns = process_identity()
        now = time.time()

        def insert(conn: Any) -> tuple[str, str]:
            self._lock_runs(conn)
            while True:
                run_id = secrets.token_hex(4)
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                    break
            if given is not None:
                self._check_name_free(conn, given)
                run_name = given
            else:
                for _ in range(100):
                    run_name = make_run_name()
                    if conn.execute("SELECT 1 FROM runs WHERE name = ?", (run_name,)).fetchone() is None:
                        break
                else:  # a store with most of the 230,400 names taken: make it unique
                    run_name = f"{make_run_name()}-{run_id}"
            conn.execute(
                "INSERT INTO runs (id, name, kind, status, recipe, note, config, command, parent, "
                "created, heartbeat, pid, host, pidns) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, run_name, kind, recipe, note, config_json, command, parent, now, now, pid, host, pidns),
            )
            conn.executemany("INSERT INTO tags (run_id, tag) VALUES (?, ?)", [(run_id, t) for t in tag_list])
            return run_id, run_name

        run_id, run_name = self._write(insert)
        return RunRecord(
            id=run_id, name=run_name, kind=kind, status="running", recipe=recipe, note=note,
            tags=sorted(tag_list), config=json.loads(config_json), command=command, parent=parent,
            created=now, heartbeat=now, pid=pid, host=host,
        )

    def put_run(self, record: RunRecord) -> None:
        row = put_row(record)

        def put(conn: Any) -> None:
            self._lock_runs(conn)
            self._check_name_free(conn, record.name, record.id)
            conn.execute(PUT_RUN.replace("%s", "?"), row)
            conn.execute("DELETE FROM tags WHERE run_id = ?", (record.id,))
            conn.executemany("INSERT INTO tags (run_id, tag) VALUES (?, ?)", [(record.id, t) for t in clean_tags(record.tags)])

        self._write(put)

    def _check_name_free(self, conn: Any, name: str, run_id: str | None = None) -> None:
        row = conn.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] != run_id:
            raise StoreError(
                f"a run named {name!r} already exists in {self.display} (id {row[0]}); choose another "
                "name, or leave it out to get a generated one"
            )
        row = conn.execute("SELECT id FROM runs WHERE id = ?", (name,)).fetchone()
        if row is not None and row[0] != run_id:
            raise StoreError(f"{name!r} is the id of another run in {self.display}; choose another name")

    def update_run(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise StoreError(
                f"update_run cannot set {', '.join(sorted(unknown))}; settable fields: "
                f"{', '.join(sorted(UPDATABLE))}"
            )
        if not fields:
            return
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if key in JSON_FIELDS:
                value = dumps(value, key)
            elif key == "status" and value not in RUN_STATUSES:
                raise StoreError(f"status {value!r} is not one of {', '.join(RUN_STATUSES)}")
            elif key == "name":
                value = check_run_name(value)
            elif key == "command":
                value = redact_credentials(str(value))
            values[key] = value
        if "pid" in values:  # the calling process takes the run over
            _, host, pidns = process_identity()
            values.setdefault("host", host)
            values["pidns"] = pidns
        assignments = ", ".join(f"{key} = ?" for key in values)

        def update(conn: Any) -> None:
            if "name" in values:
                self._lock_runs(conn)
                self._check_name_free(conn, values["name"], run_id)
            cur = conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values.values(), run_id))
            if cur.rowcount == 0:
                raise self._no_such_id(run_id)

        self._write(update)

    def heartbeat(self, run_id: str, when: float | None = None) -> None:
        beat = time.time() if when is None else when

        def update(conn: Any) -> None:
            cur = conn.execute(
                f"UPDATE runs SET heartbeat = ?, "
                f"status = CASE WHEN status = 'crashed' AND pid {self._same} THEN 'running' ELSE status END, "
                f"ended = CASE WHEN status = 'crashed' AND pid {self._same} THEN NULL ELSE ended END "
                "WHERE id = ?",
                (beat, os.getpid(), os.getpid(), run_id),
            )
            if cur.rowcount == 0:
                raise self._no_such_id(run_id)

        self._write(update)

    def set_tags(self, run_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        added, removed = clean_tags(add), clean_tags(remove)

        def update(conn: Any) -> list[str]:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise self._no_such_id(run_id)
            conn.executemany("INSERT INTO tags (run_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING", [(run_id, t) for t in added])
            conn.executemany("DELETE FROM tags WHERE run_id = ? AND tag = ?", [(run_id, t) for t in removed])
            return [r[0] for r in conn.execute("SELECT tag FROM tags WHERE run_id = ? ORDER BY tag", (run_id,))]

        return self._write(update)

    def _no_such_id(self, run_id: str) -> RunNotFound:
        return RunNotFound(f"no run with id {run_id!r} in the store at {self.display}; list runs with `danlu runs`")

    def get_run(self, ref: str) -> RunRecord:
        text = str(ref).strip()

        row = self._read(lambda conn: self._resolve(conn, text))
        record = run_records([row], with_repro=True)[0]
        self._settle([(record, row[13])])
        return record

    def _resolve(self, conn: Any, text: str) -> tuple:
        select = f"SELECT {self._cols_full} FROM runs"
        if text.lower() == "last":
            # The newest training run (engine or danlu.init), as `danlu runs` lists them; a check,
            # audit or LR-finder run made after it does not take its place. Else the newest run.
            row = conn.execute(f"{select} WHERE kind IN {TRAINING_KINDS!r} ORDER BY created DESC, {self._seq} DESC "
                               "LIMIT 1").fetchone() or conn.execute(
                f"{select} ORDER BY created DESC, {self._seq} DESC LIMIT 1").fetchone()
            if row is None:
                raise RunNotFound(
                    f"the store at {self.display} has no runs yet, so there is no 'last' run; start one "
                    "with `danlu train RECIPE` or danlu.init()"
                )
            return row
        for column in ("id", "name"):
            row = conn.execute(f"{select} WHERE {column} = ?", (text,)).fetchone()
            if row is not None:
                return row
        prefix = text.lower()
        if prefix and _HEX.fullmatch(prefix):
            rows = conn.execute(
                f"{select} WHERE id LIKE ? ORDER BY created DESC LIMIT 11", (prefix + "%",)
            ).fetchall()
            if len(rows) == 1:
                return rows[0]
            if rows:
                shown = ", ".join(f"{r[0]} ({r[1]})" for r in rows[:10])
                more = " and more" if len(rows) > 10 else ""
                raise RunNotFound(
                    f"{text!r} is the start of several run ids: {shown}{more}; give more characters "
                    "of the id, or the run's name"
                )
        raise RunNotFound(
            f"no run matches {text!r} in the store at {self.display}. RUN is an id, a unique id prefix, "
            "a name, or 'last'; list runs with `danlu runs`"
        )

    def list_runs(
        self,
        *,
        tags: Sequence[str] = (),
        status: str | None = None,
        recipe: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        with_repro: bool = False,
    ) -> list[RunRecord]:
        """Runs, newest first. ``recipe`` matches runs whose recipe spec contains the text
        (e.g. "digits.py"); ``tags``: runs carrying every one of them."""
        crashed = self._settle_running()
        where: list[str] = []
        params: list[Any] = []
        for tag in clean_tags(tags):
            where.append("id IN (SELECT run_id FROM tags WHERE tag = ?)")
            params.append(tag)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if recipe is not None:
            where.append(self._contains)
            params.append(recipe)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = f"SELECT {self._cols_full if with_repro else self._cols_light} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY created DESC, {self._seq} DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))

        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        records = run_records(rows, with_repro=with_repro)
        for record in records:  # crashes seen but not persisted (a read-only store)
            if record.id in crashed and record.status == "running":
                record.status, record.ended = "crashed", crashed[record.id]
        return records

    # ------------------------------------------------------ crash detection
    def _settle_running(self) -> dict[str, float | None]:
        """Judge every run recorded as running (few of them; indexed by status).
        Returns {run id: ended} of the runs found crashed."""
        rows = self._read(lambda conn: conn.execute(
            f"SELECT {self._cols_light} FROM runs WHERE status = 'running'").fetchall())
        if not rows:
            return {}
        records = run_records(rows, with_repro=False)
        self._settle(list(zip(records, (row[13] for row in rows))))
        return {r.id: r.ended for r in records if r.status == "crashed"}

    def _settle(self, items: list[tuple[RunRecord, str | None]]) -> None:
        """Persist "crashed" for running runs whose process is gone (rule: base.is_crashed).

        The update only applies if the run's heartbeat and pid are still the ones judged,
        so a run that a live process has just heartbeaten or taken over is left alone.
        """
        now = time.time()
        dead = [run for run, pidns in items if is_crashed(run, pidns=pidns, now=now)]
        if not dead:
            return

        def mark(conn: Any) -> list[bool]:
            done = []
            for run in dead:
                last = run.heartbeat if run.heartbeat is not None else run.created
                cur = conn.execute(
                    "UPDATE runs SET status = 'crashed', ended = ? WHERE id = ? AND status = 'running' "
                    f"AND heartbeat {self._same} AND pid {self._same}",
                    (last, run.id, run.heartbeat, run.pid),
                )
                done.append(cur.rowcount == 1)
            return done

        try:
            done = self._write(mark)
        except StoreError:  # a read-only store: report the crash without persisting it
            done = [True] * len(dead)
        for run, changed in zip(dead, done):
            if changed:
                run.status = "crashed"
                run.ended = run.heartbeat if run.heartbeat is not None else run.created

    # -------------------------------------------------------------- points
    def log_points(
        self, run_id: str, points: Sequence[tuple[str, int, float, float]], *, checked: bool = True
    ) -> None:
        """One chunk per series per call (see the module docstring), in one transaction."""
        if not points:
            return
        self._write_columns(run_id, group_points(points, checked))

    def log_columns(self, run_id: str, columns: Mapping[str, tuple[Any, Any, Any]]) -> None:
        """One chunk per series (split at MAX_CHUNK), in one transaction; the arrays are
        taken as they are (converted to int64 / float64 by NumPy)."""
        clean = clean_columns(columns)
        if clean:
            self._write_columns(run_id, clean)

    def _write_columns(self, run_id: str, columns: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        cache = self._series_ids
        missing = [name for name in columns if (run_id, name) not in cache]

        def write(conn: Any) -> dict[str, int]:
            ids = {}
            if missing:
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                    raise self._no_such_id(run_id)
                conn.executemany(
                    "INSERT INTO series (run_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING", [(run_id, n) for n in missing]
                )
                ids = {n: i for i, n in conn.execute("SELECT id, name FROM series WHERE run_id = ?", (run_id,))}
            rows: list[tuple] = []
            small = []
            for name, (s, v, w) in columns.items():
                series_id = ids.get(name) or cache[(run_id, name)]
                rows.extend(chunk_rows(series_id, s, v, w))
                if len(s) < SMALL_CHUNK:
                    small.append(series_id)
            conn.executemany(INSERT_CHUNK, rows)
            for series_id in small:
                seen = self._small_written.get(series_id, 0) + 1
                if seen > COMPACT_AFTER:
                    self._compact(conn, series_id)
                    seen = 0
                self._small_written[series_id] = seen
            return ids

        created = self._write(write)
        for name, series_id in created.items():  # only after the commit: ids now exist for everyone
            cache[(run_id, name)] = series_id

    def _compact(self, conn: Any, series_id: int) -> bool:
        """Merge the series' trailing run of small chunks into few large ones, if it is
        longer than COMPACT_AFTER. Returns whether it merged.

        Only a trailing run (no chunk of the series after it) is merged, so putting the
        result after every other chunk of the series keeps the insertion order that
        decides which write of a step wins. The result is deduplicated and sorted.
        """
        self._lock_series(conn, series_id)
        tail = conn.execute(
            "SELECT id, n FROM chunks WHERE series_id = ? ORDER BY id DESC LIMIT ?",
            (series_id, 4 * COMPACT_AFTER),
        ).fetchall()
        run = 0
        for _, n in tail:
            if n >= SMALL_CHUNK:
                break
            run += 1
        if run <= COMPACT_AFTER:
            return False
        first_id = tail[run - 1][0]
        parts = conn.execute(
            "SELECT steps, vals, walls FROM chunks WHERE series_id = ? AND id >= ? ORDER BY id",
            (series_id, first_id),
        ).fetchall()
        steps, vals, walls = (
            np.concatenate([np.frombuffer(part[i], dtype) for part in parts])
            for i, dtype in ((0, STEP), (1, FLOAT), (2, FLOAT))
        )
        steps, vals, walls = last_wins(steps, vals, walls)
        conn.execute("DELETE FROM chunks WHERE series_id = ? AND id >= ?", (series_id, first_id))
        conn.executemany(INSERT_CHUNK, chunk_rows(series_id, steps, vals, walls))
        return True

    def series_names(self, run_id: str) -> list[str]:
        return self._read(lambda conn: [r[0] for r in conn.execute(
            "SELECT name FROM series WHERE run_id = ? ORDER BY name", (run_id,))])

    def read_walls(self, run_id: str, name: str):
        """(steps, wall times) of a whole series, last write wins per step, sorted by step."""
        return self._read_column(run_id, name, "walls", None, None)

    def read_series(self, run_id: str, name: str, start: int | None = None, end: int | None = None):
        """Concatenate the series' chunks that overlap [start, end] in write order, then
        last write wins per step, sorted by step (see the module docstring)."""
        return self._read_column(run_id, name, "vals", start, end)

    def _read_column(self, run_id: str, name: str, column: str, start: int | None, end: int | None):
        sql = f"SELECT steps, {column} FROM chunks WHERE series_id = ?"
        bounds: list[int] = []
        if start is not None:
            start = int(start)
            sql += " AND last_step >= ?"
            bounds.append(start)
        if end is not None:
            end = int(end)
            sql += " AND first_step <= ?"
            bounds.append(end)
        sql += " ORDER BY id"

        def fetch(conn: Any) -> list[tuple[bytes, bytes]]:
            row = conn.execute("SELECT id FROM series WHERE run_id = ? AND name = ?", (run_id, name)).fetchone()
            if row is None:
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                    raise self._no_such_id(run_id)
                return []
            return conn.execute(sql, (row[0], *bounds)).fetchall()

        chunks = self._read(fetch)
        return decode(chunks, start, end)

    # ------------------------------------------------------------- reports
    def save_report(self, run_id: str | None, kind: str, data: dict[str, Any]) -> int:
        payload = dumps(data, "report data")
        now = time.time()

        def insert(conn: Any) -> int:
            if run_id is not None and conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise self._no_such_id(run_id)
            return self._insert_id(conn, "INSERT INTO reports (run_id, kind, created, data) VALUES (?, ?, ?, ?)",
                                   (run_id, kind, now, payload))

        return self._write(insert)

    def list_reports(self, run_id: str | None = None, kind: str | None = None) -> list[ReportRecord]:
        where, params = [], []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = "SELECT id, run_id, kind, created, data FROM reports"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, id DESC"
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [ReportRecord(i, r, k, c, json.loads(d)) for i, r, k, c, d in rows]

    def get_report(self, report_id: int) -> ReportRecord:
        row = self._read(lambda conn: conn.execute(
            "SELECT id, run_id, kind, created, data FROM reports WHERE id = ?", (int(report_id),)
        ).fetchone())
        if row is None:
            raise StoreError(f"no report with id {report_id} in the store at {self.display}")
        i, r, k, c, d = row
        return ReportRecord(i, r, k, c, json.loads(d))
