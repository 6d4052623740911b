"""Opening a store never destroys anything: foreign, corrupt and newer files are refused
and left byte-identical; older stores (committed assets, PRACTICES #4) are migrated."""

from __future__ import annotations

import hashlib
import math
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

import danlu.store.sqlite as sqlite_backend
from danlu.errors import StoreError
from danlu.store import SQLiteStore, default_store_path, open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_assets import ASSETS, EXPECTED, loss_at  # noqa: E402


def _digest(folder: Path) -> dict[str, str]:
    """Every file in the folder with its hash: proves nothing was written or added."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _assert_refused(folder: Path, match: str) -> None:
    before = _digest(folder)
    with pytest.raises(StoreError, match=match) as info:
        open_store(folder)
    message = str(info.value)
    assert str(folder / "danlu.db") in message or str(folder) in message
    assert _digest(folder) == before


# ------------------------------------------------------------------ refusals
def test_a_text_file_is_refused_untouched(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "danlu.db").write_text("my thesis, chapter 1\n" * 100)
    _assert_refused(folder, r"not a SQLite database.*will not touch it")


def test_random_bytes_are_refused_untouched(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "danlu.db").write_bytes(bytes(range(256)) * 64)
    _assert_refused(folder, "not a SQLite database")


def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    conn = sqlite3.connect(folder / "danlu.db")
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    conn.commit()
    conn.close()
    _assert_refused(folder, r"not a danlu store.*will not touch it")


def test_a_sqlite_database_with_someone_elses_meta_table_is_refused(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    conn = sqlite3.connect(folder / "danlu.db")
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('app', 'mlflow')")
    conn.commit()
    conn.close()
    _assert_refused(folder, "not a danlu store")


def test_a_damaged_store_is_refused_untouched(tmp_path):
    folder = tmp_path / "s"
    store = open_store(folder)
    store.create_run(name="precious")
    store.close()
    db = folder / "danlu.db"
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # header intact, page 1 (the schema) destroyed
    db.write_bytes(bytes(data))
    _assert_refused(folder, r"damaged or not a database.*will not touch it")


def test_a_newer_schema_is_refused_untouched(tmp_path):
    folder = tmp_path / "s"
    open_store(folder).close()
    conn = sqlite3.connect(folder / "danlu.db")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    _assert_refused(folder, r"schema version 99.*newer danlu.*[Uu]pgrade")


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(StoreError, match=r"is a file.*will not be touched"):
        open_store(path)
    assert path.read_text() == "hello"


def test_create_false_needs_an_existing_store(tmp_path):
    with pytest.raises(StoreError, match="no danlu store"):
        open_store(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()
    open_store(tmp_path / "s").close()
    open_store(tmp_path / "s", create=False).close()


def test_an_empty_file_becomes_a_store(tmp_path):
    # what another process's half-finished creation looks like: nothing to lose
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "danlu.db").touch()
    with open_store(folder) as store:
        assert store.create_run(name="x").name == "x"


def test_the_db_file_itself_may_be_given(tmp_path):
    open_store(tmp_path / "s").close()
    with open_store(tmp_path / "s" / "danlu.db") as store:
        assert store.root == tmp_path / "s"


def test_new_store_is_wal_with_meta(tmp_path):
    open_store(tmp_path / "s").close()
    conn = sqlite3.connect(tmp_path / "s" / "danlu.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert meta["app"] == "danlu" and meta["schema_version"] == str(sqlite_backend.SCHEMA_VERSION)
    conn.close()


# ------------------------------------------------------------ versions, assets
def _copy_asset(version: int, tmp_path: Path) -> Path:
    folder = tmp_path / f"v{version}"
    folder.mkdir()
    shutil.copy(ASSETS / f"store-v{version}" / "danlu.db", folder / "danlu.db")
    return folder


def _asset_versions() -> list[int]:
    return sorted(int(p.name.split("-v")[1]) for p in ASSETS.glob("store-v*") if (p / "danlu.db").exists())


def test_an_asset_exists_for_the_current_schema():
    assert sqlite_backend.SCHEMA_VERSION in _asset_versions(), (
        "commit a store of the new schema version: .venv/bin/python tests/store/store_assets.py"
    )


@pytest.mark.parametrize("version", _asset_versions())
def test_every_committed_store_version_opens_with_its_contents(tmp_path, version):
    folder = _copy_asset(version, tmp_path)
    with open_store(folder) as store:
        base = store.get_run("baseline")
        spec = EXPECTED["baseline"]
        for key in ("status", "kind", "recipe", "note", "tags", "config", "summary", "repro"):
            assert getattr(base, key) == spec[key], key
        assert base.duration == pytest.approx(42.0)
        steps, values = store.read_series(base.id, "train/loss")
        assert steps.tolist() == list(range(100))
        for s, v in zip(steps.tolist(), values.tolist()):
            expected = loss_at(s)
            assert (math.isnan(v) and math.isnan(expected)) or v == expected
        assert store.read_series(base.id, "val/loss")[0].tolist() == list(range(0, 100, 10))
        assert [r.kind for r in store.list_reports(run_id=base.id)] == ["doctor"]
        probe = store.get_run("probe")
        assert probe.status == "crashed"  # its heartbeat stopped long ago, on another host
        assert probe.tags == EXPECTED["probe"]["tags"]
        new = store.create_run(name="after-upgrade")  # and the store is writable
        store.log_points(new.id, [("x", 0, 1.0, 0.0)])
    conn = sqlite3.connect(folder / "danlu.db")
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        sqlite_backend.SCHEMA_VERSION)
    conn.close()


def test_an_older_store_is_backed_up_and_migrated_step_by_step(tmp_path, monkeypatch):
    """The migration machinery, exercised with a planted v2 on top of the real v1 asset."""
    calls = []

    def v1_to_v2(conn):
        calls.append(1)
        conn.execute("ALTER TABLE runs ADD COLUMN colour TEXT DEFAULT 'blue'")

    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(sqlite_backend.MIGRATIONS, 1, v1_to_v2)
    folder = _copy_asset(1, tmp_path)
    original = (folder / "danlu.db").read_bytes()
    with open_store(folder) as store:
        assert store.get_run("baseline").status == "finished"
    open_store(folder).close()  # a second open finds v2: nothing more to do
    assert calls == [1]
    conn = sqlite3.connect(folder / "danlu.db")
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    assert conn.execute("SELECT DISTINCT colour FROM runs").fetchall() == [("blue",)]
    conn.close()
    backup = sqlite3.connect(folder / "danlu.v1.bak.db")
    assert backup.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    assert backup.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    backup.close()
    assert len(original) > 0


def test_a_failing_migration_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    def broken(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN half TEXT")
        raise RuntimeError("planted failure half-way")

    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(sqlite_backend.MIGRATIONS, 1, broken)
    folder = _copy_asset(1, tmp_path)
    with pytest.raises(StoreError, match=r"from schema version 1 to 2 failed.*planted.*left as it was"):
        open_store(folder)
    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", 1)
    with open_store(folder) as store:  # still a good v1 store
        assert store.get_run("baseline").status == "finished"
    conn = sqlite3.connect(folder / "danlu.db")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    conn.close()
    assert "half" not in columns


def test_a_missing_migration_step_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", 3)
    monkeypatch.setitem(sqlite_backend.MIGRATIONS, 1, lambda conn: None)
    folder = _copy_asset(1, tmp_path)
    with pytest.raises(StoreError, match="from schema version 2 to 3"):
        open_store(folder)


# ---------------------------------------------------------------- open_store
def test_default_location_is_danlu_home_then_dot_danlu(tmp_path, monkeypatch):
    monkeypatch.setenv("DANLU_HOME", str(tmp_path / "home"))
    with open_store() as store:
        assert store.root == tmp_path / "home"
    monkeypatch.delenv("DANLU_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_store_path() == Path(".danlu")
    with open_store() as store:
        assert store.root == tmp_path / ".danlu"
        assert (tmp_path / ".danlu" / "danlu.db").is_file()


def test_urls_pick_the_backend(tmp_path):
    with open_store(f"sqlite://{tmp_path / 'u'}") as store:
        assert isinstance(store, SQLiteStore) and store.root == tmp_path / "u"
        assert open_store(store) is store
    with pytest.raises(StoreError, match=r"unknown store URL scheme 'postgres'.*sqlite://"):
        open_store("postgres://db.example/danlu")
