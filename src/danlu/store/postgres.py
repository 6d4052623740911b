"""The team store: runs, curves and reports in PostgreSQL, artefacts under a shared folder.

    danlu runs --store 'postgresql://alice@db.lab/danlu?artifacts=/shared/danlu'
    export DANLU_STORE='postgresql://alice@db.lab/danlu'   DANLU_ARTIFACTS=/shared/danlu

Several people and machines write one experiment table (E2, E3) with no server of
danlu's own: the database is the server. The layout mirrors the SQLite store's (same
tables, same chunked points: one ``chunks`` row of little-endian NumPy bytes per series
per write, the last write of a step wins on reading; see ``danlu.store.encoding``), so the
two behave alike and the shared contract suite (tests/store) runs on both.

- URL query parameters danlu reads (the rest is psycopg's): ``schema`` (a PostgreSQL schema
  holding danlu's tables, default ``danlu``; one database can hold several stores) and
  ``artifacts`` (the artefact root, else ``$DANLU_ARTIFACTS``, else ``$DANLU_HOME`` or
  ./.danlu). Run folders are ``<artifacts>/runs/<id>/``; every machine must reach the root.
- Credentials come from the URL, the environment (``PGPASSWORD``...) or ``~/.pgpass``;
  ``repr`` and every message show the URL without its password.
- Each write is one transaction. Once the store has been opened, a connection that drops
  (the database restarted) or a transaction that loses a serialisation race is retried
  on a new connection with back-off for up to ``RETRY_DEADLINE_S``; a write that returned
  is committed. A server that cannot be reached when the store is opened is an error at once.
- Schema: created on first open under an advisory lock (concurrent first opens are safe),
  versioned in ``meta``; a newer version is refused.
- Needs ``pip install 'danlu[postgres]'`` (psycopg 3).
"""

from __future__ import annotations

import functools
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from danlu.errors import StoreError, StoreMissing
from danlu.store.base import (
    default_store_path,
    redact_credentials,
)
from danlu.store.sql import SQLStore

__all__ = ["PostgresStore", "SCHEMA_VERSION"]

APP = "danlu"
#: Version of the schema this code writes. Bump it together with a MIGRATIONS entry.
SCHEMA_VERSION = 1
#: MIGRATIONS[v](cursor) upgrades a version-v schema to v+1 inside the open transaction.
MIGRATIONS: dict[int, Callable[[Any], None]] = {}
RETRY_DEADLINE_S = 120.0
T = TypeVar("T")

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    seq       BIGSERIAL UNIQUE,
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    kind      TEXT NOT NULL,
    status    TEXT NOT NULL,
    recipe    TEXT,
    note      TEXT NOT NULL DEFAULT '',
    command   TEXT NOT NULL DEFAULT '',
    parent    TEXT,
    created   DOUBLE PRECISION NOT NULL,
    ended     DOUBLE PRECISION,
    heartbeat DOUBLE PRECISION,
    pid       BIGINT,
    host      TEXT,
    pidns     TEXT,
    config    TEXT NOT NULL DEFAULT '{}',
    summary   TEXT NOT NULL DEFAULT '{}',
    repro     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE TABLE IF NOT EXISTS tags (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tag    TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
);
CREATE INDEX IF NOT EXISTS tags_tag ON tags(tag);
CREATE TABLE IF NOT EXISTS series (
    id     BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    UNIQUE (run_id, name)
);
CREATE TABLE IF NOT EXISTS chunks (
    id         BIGSERIAL PRIMARY KEY,
    series_id  BIGINT NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    first_step BIGINT NOT NULL,
    last_step  BIGINT NOT NULL,
    n          INTEGER NOT NULL,
    steps      BYTEA NOT NULL,
    vals       BYTEA NOT NULL,
    walls      BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_series ON chunks(series_id, id);
CREATE INDEX IF NOT EXISTS chunks_range ON chunks(series_id, last_step, first_step);
CREATE TABLE IF NOT EXISTS reports (
    id      BIGSERIAL PRIMARY KEY,
    run_id  TEXT REFERENCES runs(id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    data    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_run ON reports(run_id, created);
CREATE INDEX IF NOT EXISTS reports_kind ON reports(kind, created);
"""

def _split_url(url: str) -> tuple[str, str, str | None]:
    """(psycopg's connection URL, danlu's schema, artefact root or None) from a store URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    mine = {k: v for k, v in query if k in ("schema", "artifacts")}
    rest = [(k, v) for k, v in query if k not in ("schema", "artifacts")]
    schema = mine.get("schema") or "danlu"
    if not schema.replace("_", "").isalnum() or not schema[0].isalpha():
        raise StoreError(f"schema={schema!r} in the store URL must be letters, digits and _ (starting with a letter)")
    scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), "")), schema.lower(), mine.get("artifacts")


class PostgresStore(SQLStore):
    """Run store in a PostgreSQL database (see the module docstring)."""

    _seq = "seq"
    _same = "IS NOT DISTINCT FROM ?"
    _contains = "strpos(recipe, ?) > 0"
    _tags = "SELECT string_agg(tag, chr(31)) FROM tags WHERE tags.run_id = runs.id"

    def __init__(self, url: str, create: bool = True) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError("a postgresql:// store needs psycopg 3: pip install 'danlu[postgres]'") from exc
        self._psycopg = psycopg
        self._url = url
        self.url = redact_credentials(url)
        self._conninfo, self.schema, artifacts = _split_url(url)
        self.root = Path(artifacts or os.environ.get("DANLU_ARTIFACTS") or default_store_path()).expanduser().absolute()
        self._local = threading.local()
        self._conns: list[tuple[int, Any]] = []
        self._lock = threading.Lock()
        self._series_ids: dict[tuple[str, str], int] = {}
        self._small_written: dict[int, int] = {}
        self.read_only = False
        #: reached the database once: from then on a lost connection is retried (a restart), not reported
        self._opened = False
        self._prepare(create)
        self._opened = True

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r}, schema={self.schema!r}, artifacts={str(self.root)!r})"

    @property
    def location(self) -> str:
        parts = urlsplit(self._url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "artifacts"]
        return urlunsplit(parts._replace(query=urlencode([*query, ("artifacts", str(self.root))])))

    @property
    def display(self) -> str:
        """user@host/database, and the schema when not the default: short enough for a title line."""
        parts = urlsplit(self._url)
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port and parts.port != 5432 else ""
        schema = f" (schema {self.schema})" if self.schema != "danlu" else ""
        return f"postgresql://{user}{parts.hostname or 'localhost'}{port}{parts.path}{schema}"

    @property
    def database_url(self) -> str:
        """The database with danlu's schema first on the search path, for other clients of the
        same database (a study's Optuna storage keeps its tables beside the runs)."""
        parts = urlsplit(self._conninfo)
        query = [*parse_qsl(parts.query, keep_blank_values=True), ("options", f"-csearch_path={self.schema}")]
        return urlunsplit(parts._replace(query=urlencode(query)))

    # ------------------------------------------------------------ connections
    def _connect(self):
        conn = self._psycopg.connect(self._conninfo, autocommit=False, connect_timeout=10)
        with conn.cursor() as cur:
            cur.execute(f"SET search_path TO {self.schema}")
        conn.commit()
        with self._lock:
            self._conns.append((os.getpid(), conn))
        return conn

    def _conn(self):
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != pid or conn.closed:
            conn = self._connect()
            self._local.conn, self._local.pid = conn, pid
        return conn

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            conns, self._conns = self._conns, []
        for owner, conn in conns:
            if owner == pid:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
        self._local.conn = None

    def _run(self, fn: Callable[[Any], T]) -> T:
        """fn(cursor) in one transaction; a dropped connection or a serialisation conflict is
        retried (a new connection, exponential back-off) until RETRY_DEADLINE_S."""
        errors = self._psycopg.errors
        retry = (self._psycopg.OperationalError, errors.SerializationFailure, errors.DeadlockDetected)
        deadline = time.monotonic() + RETRY_DEADLINE_S
        delay = 0.05
        while True:
            conn = None
            try:
                conn = self._conn()
                with conn.cursor() as cur:
                    result = fn(_Cursor(cur))
                conn.commit()
                return result
            except retry as exc:
                self._discard(conn)
                if not self._opened:   # never reached: a wrong URL, a server that is not there; say so now
                    raise StoreError(f"cannot connect to the store at {self.url}: {str(exc).strip()}") from exc
                if time.monotonic() >= deadline:
                    raise StoreError(f"the store at {self.url} failed: {str(exc).strip()}") from exc
                time.sleep(delay + delay * secrets.randbelow(100) / 100)
                delay = min(delay * 2, 2.0)
            except self._psycopg.IntegrityError as exc:
                self._rollback(conn)
                raise StoreError(f"the store at {self.url} refused a write: {str(exc).strip()}") from exc
            except self._psycopg.Error as exc:
                self._rollback(conn)
                raise StoreError(f"the store at {self.url} failed: {str(exc).strip()}") from exc
            except BaseException:
                self._rollback(conn)
                raise

    def _rollback(self, conn) -> None:
        if conn is not None and not conn.closed:
            try:
                conn.rollback()
            except self._psycopg.Error:
                self._discard(conn)

    def _discard(self, conn) -> None:
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._local.conn = None

    _write = _run
    _read = _run

    def _prepare(self, create: bool) -> None:
        schema = self.schema

        def look(cur) -> int | None:
            if cur.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = 'meta'",
                           (schema,)).fetchone() is None:
                return None
            meta = dict(cur.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("app") != APP:
                raise StoreError(f"schema {schema!r} of {self.url} holds tables that are not danlu's; danlu will not "
                                 "touch them. Give another schema (…?schema=danlu_runs)")
            return int(meta.get("schema_version", "0"))

        version = self._run(look)
        if version is None:
            if not create:
                raise StoreMissing(f"there is no danlu store at {self.url} (schema {schema!r}); start a run with "
                                   "`danlu train RECIPE --store URL`")

            def initialise(cur) -> None:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"danlu:{schema}",))
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                cur.execute(f"SET LOCAL search_path TO {schema}")
                cur.execute(_TABLES)
                cur.execute("INSERT INTO meta (key, value) VALUES ('app', ?), ('schema_version', ?) "
                            "ON CONFLICT (key) DO NOTHING", (APP, str(SCHEMA_VERSION)))

            self._run(initialise)
        elif version > SCHEMA_VERSION:
            raise StoreError(f"the store at {self.url} has schema version {version}, newer than this danlu "
                             f"understands ({SCHEMA_VERSION}); upgrade danlu")
        elif version < SCHEMA_VERSION:
            self._run(self._migrate)

    def _migrate(self, cur: Any) -> None:
        """Upgrade the schema step by step through MIGRATIONS, in one transaction (PostgreSQL's DDL
        is transactional: a failed step leaves the store as it was), one process at a time."""
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"danlu:{self.schema}",))
        version = int(cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        while version < SCHEMA_VERSION:      # another process may have upgraded it while we waited
            step = MIGRATIONS.get(version)
            if step is None:
                raise StoreError(f"danlu cannot upgrade the store at {self.url} from schema version {version} to "
                                 f"{version + 1}: no migration step; upgrade danlu")
            try:
                step(cur)
            except Exception as exc:
                raise StoreError(f"upgrading the store at {self.url} from schema version {version} to "
                                 f"{version + 1} failed ({exc}); it was left as it was") from exc
            version += 1
            cur.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    # ------------------------------------------------------------ dialect
    def _lock_runs(self, conn: Any) -> None:
        conn.execute("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE")   # names are checked, then taken

    def _lock_series(self, conn: Any, series_id: int) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (series_id,))

    def _insert_id(self, conn: Any, sql: str, params: tuple) -> int:
        return int(conn.execute(sql + " RETURNING id", params).fetchone()[0])


@functools.lru_cache(maxsize=256)
def _dialect(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _Cursor:
    """A psycopg cursor that takes SQLStore's queries (``?`` placeholders) and gives
    bytea back as bytes, as sqlite3 does."""

    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.cur.execute(_dialect(sql), params)
        return self.cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        rows = list(rows)
        if rows:
            self.cur.executemany(_dialect(sql), rows)
        return self.cur
