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

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from danlu.errors import StoreError, StoreMissing
from danlu.store.encoding import (
    MAX_CHUNK,
    chunk_rows,
)
from danlu.store.sql import INSERT_CHUNK, SQLStore

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

BUSY_TIMEOUT_S = 60.0       # SQLite's own wait for a lock, per statement
RETRY_DEADLINE_S = 120.0    # then our back-off retries, for at most this long

_SQLITE_HEADER = b"SQLite format 3\x00"
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
            conn.executemany(INSERT_CHUNK, chunk_rows(
                series_id, points["step"], points["value"], points["wall"]))
    conn.execute("DROP TABLE points")


MIGRATIONS[1] = _migrate_1_to_2


T = TypeVar("T")


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


class SQLiteStore(SQLStore):
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
