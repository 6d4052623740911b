"""The embedded default store: one SQLite file in WAL mode, artefacts in folders beside it.

    <root>/danlu.db            runs, tags, series, chunks (of points), reports, meta
    <root>/runs/<run-id>/      checkpoints, code snapshot, report images

Why these settings (several training processes share one store, and a ``kill -9``
must lose nothing that was committed):

- WAL journal: readers never block the writer and the writer never blocks readers;
  a committed transaction survives the death of its process.
- ``synchronous=NORMAL``: in WAL mode commits are durable against process crashes
  (not against power loss), at a fraction of FULL's fsync cost.
- Every write is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front,
  so two writers queue on the busy timeout instead of failing with "database is
  locked" when a read transaction tries to become a write one. If a lock still cannot
  be had (SQLITE_BUSY after the 60 s timeout), the transaction is retried with
  exponential back-off before the error reaches the caller.
- Each thread (and each forked process) gets its own connection.

Encoding: config / summary / repro / report data are strict JSON text (non-finite
floats become "nan"/"inf" strings there).

Points (schema v2) are stored in chunks, not one row per point: each write of a series
(one ``BatchedWriter`` flush, one ``log_points`` call) is one ``chunks`` row holding
that write's steps (int64), values and wall times (float64) as little-endian NumPy
bytes, so NaN, +-Inf and -0.0 come back bit for bit. Why: one row per point cost the
writer 2-4 us of SQLite CPU per point and a 1,000,000-point read ~1 s (the dashboard
needs it in well under 100 ms); a blob per write costs a few hundred ns per point and
reads a million points in milliseconds.

- Replacing a step: a step written again simply lands in a later chunk. ``read_series``
  concatenates a series' chunks in insertion (``id``) order; if the steps are strictly
  increasing (the common case) they are returned as they are, else the last occurrence
  of each step wins and the result is sorted by step.
- Compaction: a slow loop writes one tiny chunk per flush. When a series' trailing run
  of small chunks (< ``SMALL_CHUNK`` points) grows past ``COMPACT_AFTER`` chunks, the
  write that notices merges them (deduplicated, sorted, split at ``MAX_CHUNK`` points)
  in its own transaction. Only a trailing run is merged, so the merged chunk keeps its
  place in the insertion order and replacement semantics are unchanged.
- Range reads (``start``/``end``) read only the chunks whose [first_step, last_step]
  overlaps the range (index ``chunks_range``); a chunk outside the range holds no step
  of it, so skipping it cannot change which occurrence of an in-range step wins.

Safety: a file at the store path that is not SQLite, or a SQLite database without
danlu's meta row, is refused and never written; a store with a newer schema is
refused; an older one is copied to ``danlu.v<N>.bak.db`` and upgraded step by step
through ``MIGRATIONS``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from danlu.errors import RunNotFound, StoreError, StoreMissing
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
)

__all__ = ["SQLiteStore", "SCHEMA_VERSION", "MIGRATIONS", "DB_NAME"]

DB_NAME = "danlu.db"
APP = "danlu"
#: Version of the schema this code writes. Bump it together with a MIGRATIONS entry,
#: and commit a store file of the old version under tests/assets/ (practice: Optuna).
SCHEMA_VERSION = 2
#: MIGRATIONS[v](conn) upgrades a version-v store to v+1 inside the open write
#: transaction (DDL is transactional in SQLite: a failed step leaves the store as it was).
#: Filled in below the migration functions.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}

#: Most points in one chunk (merges and migrated series are split at this size).
MAX_CHUNK = 65_536
#: A chunk with fewer points than this is "small": trailing runs of them get merged.
SMALL_CHUNK = 512
#: Merge a series' trailing small chunks once there are more than this many.
COMPACT_AFTER = 64

BUSY_TIMEOUT_S = 60.0       # SQLite's own wait for a lock, per statement
RETRY_DEADLINE_S = 120.0    # then our back-off retries, for at most this long

_SQLITE_HEADER = b"SQLite format 3\x00"
_HEX = re.compile(r"[0-9a-f]+")
_STEP = np.dtype("<i8")
_FLOAT = np.dtype("<f8")
_V1_POINT = np.dtype([("step", np.int64), ("value", np.float64), ("wall", np.float64)])

_SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE runs (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    kind      TEXT NOT NULL,
    status    TEXT NOT NULL,
    recipe    TEXT,
    note      TEXT NOT NULL DEFAULT '',
    command   TEXT NOT NULL DEFAULT '',
    parent    TEXT,
    created   REAL NOT NULL,
    ended     REAL,
    heartbeat REAL,
    pid       INTEGER,
    host      TEXT,
    pidns     TEXT,
    config    TEXT NOT NULL DEFAULT '{}',
    summary   TEXT NOT NULL DEFAULT '{}',
    -- last: it can be large (package list, git diff), and columns after a large value
    -- are only reached by walking its overflow pages, which made listing runs slow
    repro     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_created ON runs(created);
CREATE INDEX runs_status ON runs(status);
CREATE TABLE tags (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tag    TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
) WITHOUT ROWID;
CREATE INDEX tags_tag ON tags(tag);
CREATE TABLE series (
    id     INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    UNIQUE (run_id, name)
);
-- value NULL means NaN. One row per (series, step): logging a step again replaces it
CREATE TABLE points (
    series_id INTEGER NOT NULL,
    step      INTEGER NOT NULL,
    value     REAL,
    wall      REAL NOT NULL,
    PRIMARY KEY (series_id, step)
) WITHOUT ROWID;
CREATE TABLE reports (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT REFERENCES runs(id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,
    created REAL NOT NULL,
    data    TEXT NOT NULL
);
CREATE INDEX reports_run ON reports(run_id, created);
CREATE INDEX reports_kind ON reports(kind, created);
"""

#: v2: points live in chunks (see the module docstring); the v1 points table is gone.
_SCHEMA_V2 = """
CREATE TABLE chunks (
    id         INTEGER PRIMARY KEY,
    series_id  INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    first_step INTEGER NOT NULL,   -- smallest step in the chunk
    last_step  INTEGER NOT NULL,   -- largest step in the chunk
    n          INTEGER NOT NULL,   -- points in the chunk
    steps      BLOB NOT NULL,      -- n little-endian int64
    vals       BLOB NOT NULL,      -- n little-endian float64 (NaN, inf, -0.0 kept)
    walls      BLOB NOT NULL       -- n little-endian float64 (time.time() when logged)
);
-- (series_id, id): a series' chunks in insertion order, without sorting
CREATE INDEX chunks_series ON chunks(series_id);
-- range reads: the chunks that reach step >= start (the dashboard's "new points" read)
CREATE INDEX chunks_range ON chunks(series_id, last_step, first_step);
"""

_INSERT_CHUNK = (
    "INSERT INTO chunks (series_id, first_step, last_step, n, steps, vals, walls) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _chunk_rows(series_id: int, steps: np.ndarray, vals: np.ndarray, walls: np.ndarray) -> list[tuple]:
    """Rows for the chunks table: the points in their given order, split at MAX_CHUNK."""
    rows = []
    for lo in range(0, len(steps), MAX_CHUNK):
        s = steps[lo : lo + MAX_CHUNK]
        rows.append((
            series_id, int(s.min()), int(s.max()), len(s),
            s.astype(_STEP, copy=False).tobytes(),
            vals[lo : lo + MAX_CHUNK].astype(_FLOAT, copy=False).tobytes(),
            walls[lo : lo + MAX_CHUNK].astype(_FLOAT, copy=False).tobytes(),
        ))
    return rows


def _last_wins(steps: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort by step keeping the LAST occurrence of each step (points in write order).

    Strictly increasing steps (the common case) are returned untouched. Otherwise a
    stable sort keeps equal steps in write order, so the last of each run of equal
    steps is the newest write (timsort: near-linear on the few sorted runs a resumed
    run produces).
    """
    if len(steps) < 2 or bool((steps[1:] > steps[:-1]).all()):
        return (steps, *columns)
    order = np.argsort(steps, kind="stable")
    ordered = steps[order]
    keep = np.empty(len(ordered), dtype=bool)
    keep[-1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[:-1])
    order = order[keep]
    return (ordered[keep], *(column[order] for column in columns))


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """v1 -> v2: every series' points (one row each) move into chunks of MAX_CHUNK points,
    in step order; the points table is dropped. Points of no known series (unreachable in
    v1 too) are not carried over."""
    for statement in _SCHEMA_V2.split(";"):
        if statement.strip():
            conn.execute(statement)
    series_ids = [r[0] for r in conn.execute("SELECT id FROM series ORDER BY id").fetchall()]
    for series_id in series_ids:
        cursor = conn.execute(
            "SELECT step, value, wall FROM points WHERE series_id = ? ORDER BY step", (series_id,))
        while True:
            rows = cursor.fetchmany(MAX_CHUNK)
            if not rows:
                break
            points = np.array(rows, dtype=_V1_POINT)  # a NULL value (v1's NaN) becomes nan
            conn.executemany(_INSERT_CHUNK, _chunk_rows(
                series_id, points["step"], points["value"], points["wall"]))
    conn.execute("DROP TABLE points")


MIGRATIONS[1] = _migrate_1_to_2

_TAG_SEP = "\x1f"  # tags cannot contain control characters (_clean_tags)
_RUN_COLUMNS = (
    "id, name, kind, status, recipe, note, command, parent, created, ended, heartbeat, pid, host, "
    "pidns, config, summary, {repro}, "
    "(SELECT group_concat(tag, char(31)) FROM tags WHERE tags.run_id = runs.id)"
)
_COLS_FULL = _RUN_COLUMNS.format(repro="repro")
_COLS_LIGHT = _RUN_COLUMNS.format(repro="NULL")

# _records builds RunRecord positionally (it is faster); keep this in step with base.RunRecord
_RECORD_ORDER = ("id", "name", "kind", "status", "recipe", "note", "tags", "config", "summary", "repro",
                 "command", "parent", "created", "ended", "heartbeat", "pid", "host")
assert tuple(f.name for f in dataclasses.fields(RunRecord)) == _RECORD_ORDER, "update SQLiteStore._records"

_UPDATABLE = {
    "name", "kind", "status", "recipe", "note", "config", "summary", "repro",
    "command", "parent", "ended", "heartbeat", "pid", "host",
}
_JSON_FIELDS = {"config", "summary", "repro"}

T = TypeVar("T")


def _dumps(value: Any, what: str) -> str:
    from danlu.plain import jsonable

    if not isinstance(value, Mapping):
        raise StoreError(f"{what} must be a dict, got {type(value).__name__}")
    return json.dumps(jsonable(dict(value)), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_damaged(exc: sqlite3.Error) -> bool:
    """SQLITE_CORRUPT / SQLITE_NOTADB: the file's pages are damaged (the header may still be intact)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def damaged_message(db: Path, exc: BaseException) -> str:
    """What to do about a damaged store file: it is left as it is, and here is how to recover it."""
    backups = sorted(db.parent.glob("danlu.v*.bak.db"))
    return (f"the store file {db} is damaged ({exc}); danlu left it as it is. The runs' files under "
            f"{db.parent / 'runs'} are not affected. To recover the records, keep the damaged file and run: "
            f"sqlite3 {db} .recover | sqlite3 {db.parent / 'danlu-recovered.db'}  then put danlu-recovered.db in "
            f"its place." + (f" A copy made before the last schema upgrade: {backups[-1]}." if backups else ""))


def _clean_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags:
        text = str(tag).strip()
        if not text:
            raise StoreError("a tag cannot be empty")
        if any(ord(ch) < 32 for ch in text):
            raise StoreError(f"tag {text!r} contains a control character; use plain text")
        if text not in out:
            out.append(text)
    return out


class SQLiteStore(Store):
    """Run store in ``<root>/danlu.db`` (SQLite, WAL mode). See the module docstring."""

    def __init__(self, root: str | os.PathLike[str], create: bool = True) -> None:
        root = Path(root).expanduser().absolute()
        if root.is_file():
            if root.name != DB_NAME:
                raise StoreError(
                    f"{root} is a file, but a danlu store is a folder (it holds {DB_NAME} and "
                    "runs/). The file will not be touched; give a folder (`--store` or $DANLU_HOME)."
                )
            root = root.parent
        self.root = root
        self.db_path = root / DB_NAME
        self._local = threading.local()
        self._conns: list[tuple[int, sqlite3.Connection]] = []  # (pid that opened it, connection)
        self._conns_lock = threading.Lock()
        self._series_ids: dict[tuple[str, str], int] = {}
        #: series id -> small chunks this handle wrote since it last looked at compaction
        self._small_written: dict[int, int] = {}
        self._closed = False

        state, version = self._inspect()
        if state == "missing" and not create:
            raise StoreMissing(
                f"there is no danlu store at {root} (no {DB_NAME}); start a run with "
                "`danlu train RECIPE`, or point the store (`--store`, $DANLU_HOME) at an existing one"
            )
        if state == "foreign":
            raise StoreError(self._foreign_message())
        if state == "danlu":
            self._check_version(version)
        #: No write permission on the folder or the file: reading works (runs, show, ui), writing says why not.
        self.read_only = state in ("danlu", "empty") and not (os.access(root, os.W_OK)
                                                              and os.access(self.db_path, os.W_OK))
        if self.read_only:
            if state == "empty":  # committed pages may still be in the -wal file only: look through SQLite
                try:
                    state, version = self._look(f"{self.db_path.as_uri()}?mode=ro")
                except StoreError:
                    state, version = "empty", None
            if state != "danlu":
                raise StoreError(f"the store at {root} is read-only here and holds no danlu runs yet; "
                                 "nothing to read, and nothing can be written.")
            self._check_version(version)
            if version is not None and version < SCHEMA_VERSION:
                raise StoreError(f"the store at {root} has schema version {version} and needs an upgrade, which "
                                 "needs write access; it is read-only here. Open it once with write access.")
            return
        root.mkdir(parents=True, exist_ok=True)
        try:
            self._ensure_wal()
            self._write(self._initialise)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.root)!r})"

    # ------------------------------------------------------------ opening
    def _inspect(self) -> tuple[str, int | None]:
        """Look at the file without writing to it: missing, empty, danlu (+version), foreign.

        The first look opens the file ``immutable`` (no locks, no -wal/-shm files created
        beside someone else's database). A live danlu store may have committed pages only
        in its -wal file, or be mid-checkpoint, so before refusing a file that has a -wal
        beside it we look again through a normal read-only connection. The final word is
        spoken under the write lock (``_initialise``).
        """
        db = self.db_path
        if not db.exists():
            return "missing", None
        if not db.is_file():
            raise StoreError(f"{db} exists but is not a file; danlu will not touch it. Move it away "
                             "or choose another store folder (`--store` or $DANLU_HOME).")
        if db.stat().st_size == 0:
            return "empty", None
        with open(db, "rb") as fh:
            header = fh.read(len(_SQLITE_HEADER))
        if header != _SQLITE_HEADER:
            raise StoreError(
                f"{db} is not a SQLite database, so it is not a danlu store (corrupt, or another "
                "program's file). danlu will not touch it: move it away, or choose another store "
                "folder (`--store` or $DANLU_HOME)."
            )
        wal = db.with_name(db.name + "-wal")
        had_wal = wal.exists()
        try:
            state = self._look(f"{db.as_uri()}?immutable=1")
        except StoreError:
            if not (had_wal or wal.exists()):
                raise
            state = None
        if state is None or (state[0] == "foreign" and (had_wal or wal.exists())):
            state = self._look(f"{db.as_uri()}?mode=ro")
        return state

    def _look(self, uri: str) -> tuple[str, int | None]:
        db = self.db_path
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {db}: {exc}; it was not changed") from exc
        try:
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            except sqlite3.DatabaseError as exc:
                if _is_busy(exc):
                    raise StoreError(f"the store at {db} stayed locked for {BUSY_TIMEOUT_S:.0f} s; "
                                     "retry when the other danlu processes are done") from exc
                raise StoreError(damaged_message(db, exc)) from exc
            if not tables:
                return "empty", None
            if "meta" not in tables:
                return "foreign", None
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            except sqlite3.DatabaseError as exc:
                if _is_damaged(exc):
                    raise StoreError(damaged_message(db, exc)) from exc
                return "foreign", None
        finally:
            conn.close()
        return self._classify(meta)

    @staticmethod
    def _classify(meta: dict[str, str]) -> tuple[str, int | None]:
        if meta.get("app") != APP:
            return "foreign", None
        try:
            return "danlu", int(meta.get("schema_version", ""))
        except ValueError:
            return "foreign", None

    def _foreign_message(self) -> str:
        return (
            f"{self.db_path} is a SQLite database but not a danlu store (it has no danlu meta "
            "row). danlu will not touch it: move it away, or choose another store folder "
            "(`--store` or $DANLU_HOME)."
        )

    def _check_version(self, version: int | None) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"the store at {self.db_path} has schema version {version}: it was written by a "
                f"newer danlu (this one reads up to version {SCHEMA_VERSION}). Upgrade danlu "
                "(pip install -U danlu); the store was not changed."
            )

    def _ensure_wal(self) -> None:
        conn = self._conn()
        deadline = time.monotonic() + RETRY_DEADLINE_S
        delay = 0.005
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise StoreError(f"cannot switch the store at {self.db_path} to WAL mode: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _initialise(self, conn: sqlite3.Connection) -> None:
        """Under the write lock: create the schema in an empty file, or migrate an old one."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            for statement in _SCHEMA_V1.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [("app", APP), ("schema_version", "1"), ("created", repr(time.time()))],
            )
            self._migrate(conn, 1)
            return
        if "meta" not in tables:
            raise StoreError(self._foreign_message())
        state, version = self._classify(dict(conn.execute("SELECT key, value FROM meta").fetchall()))
        if state != "danlu" or version is None:
            raise StoreError(self._foreign_message())
        self._check_version(version)
        if version < SCHEMA_VERSION:
            self._backup(version)
            self._migrate(conn, version)

    def _backup(self, version: int) -> None:
        """Copy the store as it is (we hold the write lock, so it cannot change) before upgrading."""
        target = self.root / f"danlu.v{version}.bak.db"
        source = sqlite3.connect(str(self.db_path), timeout=BUSY_TIMEOUT_S)
        dest = sqlite3.connect(str(target))
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        while version < SCHEMA_VERSION:
            step = MIGRATIONS.get(version)
            if step is None:
                raise StoreError(
                    f"this danlu cannot upgrade the store at {self.db_path} from schema version "
                    f"{version} to {version + 1} (no migration); install the danlu release that wrote it"
                )
            try:
                step(conn)
            except Exception as exc:  # the transaction rolls back: nothing was changed
                raise StoreError(
                    f"upgrading the store at {self.db_path} from schema version {version} to "
                    f"{version + 1} failed ({exc!r}); the store was left as it was. Please report this."
                ) from exc
            version += 1
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    # -------------------------------------------------------- connections
    def _connect(self) -> sqlite3.Connection:
        if getattr(self, "read_only", False):
            return self._connect_read_only()
        try:
            conn = sqlite3.connect(
                str(self.db_path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {self.db_path}: {exc}") from exc
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A connection that never writes: mode=ro, or immutable when SQLite cannot even create its
        shared-memory file beside a WAL database in a folder it may not write to."""
        last: Exception | None = None
        for query in ("mode=ro", "immutable=1"):
            try:
                conn = sqlite3.connect(f"{self.db_path.as_uri()}?{query}", uri=True, timeout=BUSY_TIMEOUT_S,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
                return conn
            except sqlite3.Error as exc:
                last = exc
        raise StoreError(f"cannot read the store at {self.db_path}: {last}") from last

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own, never reuses the parent's)."""
        if self._closed:
            raise StoreError(f"the store at {self.root} was closed; open it again with open_store()")
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = self._connect()
            local.conn, local.pid = conn, os.getpid()
            with self._conns_lock:
                self._conns.append((os.getpid(), conn))
        return conn

    def close(self) -> None:
        """Close this process's connections. A forked child never touches its parent's:
        SQLite connections must not be used, not even closed, across fork()."""
        self._closed = True
        pid = os.getpid()
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for owner, conn in conns:
            if owner != pid:
                continue
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                pass
        if getattr(self._local, "pid", None) == pid:
            self._local.conn = None

    def _run(self, begin: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn in one transaction; on SQLITE_BUSY retry the whole transaction with back-off."""
        conn = self._conn()
        deadline = time.monotonic() + RETRY_DEADLINE_S
        delay = 0.005
        while True:
            try:
                conn.execute(begin)
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(delay + delay * secrets.randbelow(100) / 100)
                    delay = min(delay * 2, 1.0)
                    continue
                if isinstance(exc, sqlite3.IntegrityError):
                    raise StoreError(f"the store at {self.db_path} refused a write: {exc}") from exc
                if _is_damaged(exc):
                    raise StoreError(damaged_message(self.db_path, exc)) from exc
                raise StoreError(f"the store at {self.db_path} failed: {exc}") from exc

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if getattr(self, "read_only", False):
            raise StoreError(f"the store at {self.root} is read-only here (no write permission on it): commands "
                             "that only read (runs, show, diff, ui) work; to write, use a copy you own or ask "
                             "for write access.")
        return self._run("BEGIN IMMEDIATE", fn)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._run("BEGIN", fn)  # one consistent snapshot for several SELECTs

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
        config_json = _dumps(config or {}, "config")
        clean_tags = _clean_tags(tags)
        pid, host, pidns = process_identity()
        now = time.time()

        def insert(conn: sqlite3.Connection) -> tuple[str, str]:
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
            conn.executemany("INSERT INTO tags (run_id, tag) VALUES (?, ?)", [(run_id, t) for t in clean_tags])
            return run_id, run_name

        run_id, run_name = self._write(insert)
        return RunRecord(
            id=run_id, name=run_name, kind=kind, status="running", recipe=recipe, note=note,
            tags=sorted(clean_tags), config=json.loads(config_json), command=command, parent=parent,
            created=now, heartbeat=now, pid=pid, host=host,
        )

    def _check_name_free(self, conn: sqlite3.Connection, name: str, run_id: str | None = None) -> None:
        row = conn.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] != run_id:
            raise StoreError(
                f"a run named {name!r} already exists in {self.root} (id {row[0]}); choose another "
                "name, or leave it out to get a generated one"
            )
        row = conn.execute("SELECT id FROM runs WHERE id = ?", (name,)).fetchone()
        if row is not None and row[0] != run_id:
            raise StoreError(f"{name!r} is the id of another run in {self.root}; choose another name")

    def update_run(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise StoreError(
                f"update_run cannot set {', '.join(sorted(unknown))}; settable fields: "
                f"{', '.join(sorted(_UPDATABLE))}"
            )
        if not fields:
            return
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if key in _JSON_FIELDS:
                value = _dumps(value, key)
            elif key == "status" and value not in RUN_STATUSES:
                raise StoreError(f"status {value!r} is not one of {', '.join(RUN_STATUSES)}")
            elif key == "name":
                value = check_run_name(value)
            values[key] = value
        if "pid" in values:  # the calling process takes the run over
            _, host, pidns = process_identity()
            values.setdefault("host", host)
            values["pidns"] = pidns
        assignments = ", ".join(f"{key} = ?" for key in values)

        def update(conn: sqlite3.Connection) -> None:
            if "name" in values:
                self._check_name_free(conn, values["name"], run_id)
            cur = conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values.values(), run_id))
            if cur.rowcount == 0:
                raise self._no_such_id(run_id)

        self._write(update)

    def heartbeat(self, run_id: str, when: float | None = None) -> None:
        beat = time.time() if when is None else when

        def update(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE runs SET heartbeat = ?, "
                "status = CASE WHEN status = 'crashed' AND pid IS ? THEN 'running' ELSE status END, "
                "ended = CASE WHEN status = 'crashed' AND pid IS ? THEN NULL ELSE ended END "
                "WHERE id = ?",
                (beat, os.getpid(), os.getpid(), run_id),
            )
            if cur.rowcount == 0:
                raise self._no_such_id(run_id)

        self._write(update)

    def set_tags(self, run_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        added, removed = _clean_tags(add), _clean_tags(remove)

        def update(conn: sqlite3.Connection) -> list[str]:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise self._no_such_id(run_id)
            conn.executemany("INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)", [(run_id, t) for t in added])
            conn.executemany("DELETE FROM tags WHERE run_id = ? AND tag = ?", [(run_id, t) for t in removed])
            return [r[0] for r in conn.execute("SELECT tag FROM tags WHERE run_id = ? ORDER BY tag", (run_id,))]

        return self._write(update)

    def _no_such_id(self, run_id: str) -> RunNotFound:
        return RunNotFound(f"no run with id {run_id!r} in the store at {self.root}; list runs with `danlu runs`")

    def get_run(self, ref: str) -> RunRecord:
        text = str(ref).strip()

        row = self._read(lambda conn: self._resolve(conn, text))
        record = self._records([row], with_repro=True)[0]
        self._settle([(record, row[13])])
        return record

    def _resolve(self, conn: sqlite3.Connection, text: str) -> tuple:
        select = f"SELECT {_COLS_FULL} FROM runs"
        if text.lower() == "last":
            # The newest training run (engine or danlu.init), as `danlu runs` lists them; a check,
            # audit or LR-finder run made after it does not take its place. Else the newest run.
            row = conn.execute(f"{select} WHERE kind IN {TRAINING_KINDS!r} ORDER BY created DESC, rowid DESC LIMIT 1"
                               ).fetchone() or conn.execute(
                f"{select} ORDER BY created DESC, rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise RunNotFound(
                    f"the store at {self.root} has no runs yet, so there is no 'last' run; start one "
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
                f"{select} WHERE id GLOB ? ORDER BY created DESC LIMIT 11", (prefix + "*",)
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
            f"no run matches {text!r} in the store at {self.root}. RUN is an id, a unique id prefix, "
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
        for tag in _clean_tags(tags):
            where.append("id IN (SELECT run_id FROM tags WHERE tag = ?)")
            params.append(tag)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if recipe is not None:
            where.append("instr(recipe, ?) > 0")
            params.append(recipe)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = f"SELECT {_COLS_FULL if with_repro else _COLS_LIGHT} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))

        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        records = self._records(rows, with_repro=with_repro)
        for record in records:  # crashes seen but not persisted (a read-only store)
            if record.id in crashed and record.status == "running":
                record.status, record.ended = "crashed", crashed[record.id]
        return records

    @staticmethod
    def _records(rows: list[tuple], with_repro: bool) -> list[RunRecord]:
        """Rows -> records, fast enough to list 10,000 runs: config and summary of all rows
        are decoded in one json.loads each (per-call overhead dominated), records are built
        positionally, and the cyclic GC is paused while the many small dicts are made."""
        if not rows:
            return []
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            configs = json.loads("[" + ",".join(r[14] for r in rows) + "]")
            summaries = json.loads("[" + ",".join(r[15] for r in rows) + "]")
            return [
                RunRecord(
                    run_id, name, kind, status, recipe, note,
                    sorted(tags.split(_TAG_SEP)) if tags else [],
                    config, summary,
                    json.loads(repro) if with_repro and repro else {},
                    command, parent, created, ended, heartbeat, pid, host,
                )
                for (run_id, name, kind, status, recipe, note, command, parent, created, ended, heartbeat,
                     pid, host, _pidns, _, _, repro, tags), config, summary in zip(rows, configs, summaries)
            ]
        finally:
            if gc_was_on:
                gc.enable()

    # ------------------------------------------------------ crash detection
    def _settle_running(self) -> dict[str, float | None]:
        """Judge every run recorded as running (few of them; indexed by status).
        Returns {run id: ended} of the runs found crashed."""
        rows = self._read(lambda conn: conn.execute(
            f"SELECT {_COLS_LIGHT} FROM runs WHERE status = 'running'").fetchall())
        if not rows:
            return {}
        records = self._records(rows, with_repro=False)
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

        def mark(conn: sqlite3.Connection) -> list[bool]:
            done = []
            for run in dead:
                last = run.heartbeat if run.heartbeat is not None else run.created
                cur = conn.execute(
                    "UPDATE runs SET status = 'crashed', ended = ? WHERE id = ? AND status = 'running' "
                    "AND heartbeat IS ? AND pid IS ?",
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
        n = len(points)
        names, steps, values, walls = zip(*points)
        if checked:  # int() and float() accept numpy scalars, tensors, bools
            step_arr = np.fromiter(map(int, steps), np.int64, n)
            value_arr = np.fromiter(map(float, values), np.float64, n)
            wall_arr = np.fromiter(map(float, walls), np.float64, n)
        else:  # the caller guarantees Python ints and floats (BatchedWriter)
            step_arr = np.array(steps, dtype=np.int64)
            value_arr = np.array(values, dtype=np.float64)
            wall_arr = np.array(walls, dtype=np.float64)
        del steps, values, walls
        unique = set(names)
        if any(type(name) is not str for name in unique):  # e.g. {0: loss}: series names are text
            names = tuple(map(str, names))
            unique = set(names)
        groups: dict[str, np.ndarray | None]
        if len(unique) == 1:
            groups = {next(iter(unique)): None}
        else:  # stable grouping: each series keeps its points in the order they came
            order_names = sorted(unique)
            code = {name: i for i, name in enumerate(order_names)}
            dtype = np.uint8 if len(code) <= 256 else np.uint16 if len(code) <= 65_536 else np.intp
            codes = np.fromiter(map(code.__getitem__, names), dtype, n)
            order = np.argsort(codes, kind="stable")  # radix sort for small codes
            pieces = np.split(order, np.cumsum(np.bincount(codes, minlength=len(code)))[:-1])
            groups = dict(zip(order_names, pieces))
        del names
        self._write_columns(run_id, {
            name: (step_arr, value_arr, wall_arr) if index is None
            else (step_arr[index], value_arr[index], wall_arr[index])
            for name, index in groups.items()
        })

    def log_columns(self, run_id: str, columns: Mapping[str, tuple[Any, Any, Any]]) -> None:
        """One chunk per series (split at MAX_CHUNK), in one transaction; the arrays are
        taken as they are (converted to int64 / float64 by NumPy)."""
        clean: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for name, (steps, values, walls) in columns.items():
            s = np.asarray(steps, dtype=np.int64).reshape(-1)
            v = np.asarray(values, dtype=np.float64).reshape(-1)
            w = np.asarray(walls, dtype=np.float64).reshape(-1)
            if not len(s) == len(v) == len(w):
                raise StoreError(f"log_columns: series {name!r} has {len(s)} steps, {len(v)} values and "
                                 f"{len(w)} wall times; give one of each per point")
            name = name if type(name) is str else str(name)
            if name in clean:  # e.g. keys 0 and "0": one series, points in the given order
                old_s, old_v, old_w = clean[name]
                clean[name] = (np.concatenate([old_s, s]), np.concatenate([old_v, v]), np.concatenate([old_w, w]))
            elif len(s):
                clean[name] = (s, v, w)
        if clean:
            self._write_columns(run_id, clean)

    def _write_columns(self, run_id: str, columns: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        cache = self._series_ids
        missing = [name for name in columns if (run_id, name) not in cache]

        def write(conn: sqlite3.Connection) -> dict[str, int]:
            ids = {}
            if missing:
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                    raise self._no_such_id(run_id)
                conn.executemany(
                    "INSERT OR IGNORE INTO series (run_id, name) VALUES (?, ?)", [(run_id, n) for n in missing]
                )
                ids = {n: i for i, n in conn.execute("SELECT id, name FROM series WHERE run_id = ?", (run_id,))}
            rows: list[tuple] = []
            small = []
            for name, (s, v, w) in columns.items():
                series_id = ids.get(name) or cache[(run_id, name)]
                rows.extend(_chunk_rows(series_id, s, v, w))
                if len(s) < SMALL_CHUNK:
                    small.append(series_id)
            conn.executemany(_INSERT_CHUNK, rows)
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

    @staticmethod
    def _compact(conn: sqlite3.Connection, series_id: int) -> bool:
        """Merge the series' trailing run of small chunks into few large ones, if it is
        longer than COMPACT_AFTER. Returns whether it merged.

        Only a trailing run (no chunk of the series after it) is merged, so putting the
        result after every other chunk of the series keeps the insertion order that
        decides which write of a step wins. The result is deduplicated and sorted.
        """
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
            for i, dtype in ((0, _STEP), (1, _FLOAT), (2, _FLOAT))
        )
        steps, vals, walls = _last_wins(steps, vals, walls)
        conn.execute("DELETE FROM chunks WHERE series_id = ? AND id >= ?", (series_id, first_id))
        conn.executemany(_INSERT_CHUNK, _chunk_rows(series_id, steps, vals, walls))
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

        def fetch(conn: sqlite3.Connection) -> list[tuple[bytes, bytes]]:
            row = conn.execute("SELECT id FROM series WHERE run_id = ? AND name = ?", (run_id, name)).fetchone()
            if row is None:
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                    raise self._no_such_id(run_id)
                return []
            return conn.execute(sql, (row[0], *bounds)).fetchall()

        chunks = self._read(fetch)
        if not chunks:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        # concatenate copies: the arrays handed out are writable and own their memory
        steps = np.concatenate([np.frombuffer(c[0], _STEP) for c in chunks]).astype(np.int64, copy=False)
        values = np.concatenate([np.frombuffer(c[1], _FLOAT) for c in chunks]).astype(np.float64, copy=False)
        steps, values = _last_wins(steps, values)
        if start is not None or end is not None:
            lo = 0 if start is None else int(np.searchsorted(steps, start, side="left"))
            hi = len(steps) if end is None else int(np.searchsorted(steps, end, side="right"))
            if lo > 0 or hi < len(steps):
                steps, values = steps[lo:hi].copy(), values[lo:hi].copy()
        return steps, values

    # ------------------------------------------------------------- reports
    def save_report(self, run_id: str | None, kind: str, data: dict[str, Any]) -> int:
        payload = _dumps(data, "report data")
        now = time.time()

        def insert(conn: sqlite3.Connection) -> int:
            if run_id is not None and conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise self._no_such_id(run_id)
            cur = conn.execute(
                "INSERT INTO reports (run_id, kind, created, data) VALUES (?, ?, ?, ?)", (run_id, kind, now, payload)
            )
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

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
            raise StoreError(f"no report with id {report_id} in the store at {self.root}")
        i, r, k, c, d = row
        return ReportRecord(i, r, k, c, json.loads(d))
