"""The PostgreSQL store's schema (issue 15): created once, versioned in `meta` and
migrated step by step like the SQLite store's; a failed step leaves the store as it was,
a newer schema and foreign tables are refused. Needs a PostgreSQL server (CI starts one)."""

from __future__ import annotations

import os
import time

import pytest

from danlu.errors import StoreError, StoreMissing
from danlu.store import open_store

POSTGRES = os.environ.get("DANLU_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not POSTGRES, reason="DANLU_TEST_POSTGRES_URL is unset: start PostgreSQL with "
                                "`.ci/start-postgres.sh` and export the URL it prints")


@pytest.fixture
def url(tmp_path):
    import psycopg

    schema = f"schema{os.getpid()}{time.time_ns() % 10**9}"
    yield f"{POSTGRES}?schema={schema}&artifacts={tmp_path}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _version(store) -> int:
    return int(store._read(lambda db: db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]))


def _columns(store) -> set[str]:
    return {r[0] for r in store._read(lambda db: db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = 'runs'",
        (store.schema,)).fetchall())}


def test_a_store_is_migrated_step_by_step_and_keeps_its_runs(url, monkeypatch):
    from danlu.store import postgres

    store = open_store(url)
    run = store.create_run(name="before-upgrade")
    store.close()
    monkeypatch.setattr(postgres, "SCHEMA_VERSION", postgres.SCHEMA_VERSION + 1)
    monkeypatch.setitem(postgres.MIGRATIONS, postgres.SCHEMA_VERSION - 1,
                        lambda db: db.execute("ALTER TABLE runs ADD COLUMN planted TEXT"))
    upgraded = open_store(url)
    assert _version(upgraded) == postgres.SCHEMA_VERSION and "planted" in _columns(upgraded)
    assert upgraded.get_run("before-upgrade").id == run.id
    upgraded.close()


def test_a_failed_step_leaves_the_store_as_it_was(url, monkeypatch):
    from danlu.store import postgres

    open_store(url).close()

    def half_done(db):
        db.execute("ALTER TABLE runs ADD COLUMN planted TEXT")
        raise RuntimeError("planted failure after the first change")

    monkeypatch.setattr(postgres, "SCHEMA_VERSION", postgres.SCHEMA_VERSION + 1)
    monkeypatch.setitem(postgres.MIGRATIONS, postgres.SCHEMA_VERSION - 1, half_done)
    with pytest.raises(StoreError, match="planted failure.*left as it was"):
        open_store(url)
    monkeypatch.undo()
    store = open_store(url)
    assert _version(store) == postgres.SCHEMA_VERSION and "planted" not in _columns(store)
    store.close()


def test_newer_schemas_foreign_tables_and_missing_stores_are_refused(url):
    import psycopg

    with pytest.raises(StoreMissing, match="no danlu store"):
        open_store(url, create=False)
    store = open_store(url)
    store._write(lambda db: db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'"))
    store.close()
    with pytest.raises(StoreError, match="schema version 99, newer"):
        open_store(url)
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS someone_else")
        conn.execute("CREATE TABLE IF NOT EXISTS someone_else.meta (key TEXT PRIMARY KEY, value TEXT)")
    try:
        with pytest.raises(StoreError, match="not danlu's"):
            open_store(f"{POSTGRES}?schema=someone_else")
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute("DROP SCHEMA someone_else CASCADE")
