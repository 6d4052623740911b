"""Opening a store never destroys anything: foreign, corrupt and newer files are refused
and left byte-identical; older stores (committed assets, PRACTICES #4) are migrated."""

from __future__ import annotations

import hashlib
import math
import shutil
import sqlite3
import struct
import sys
from pathlib import Path

import numpy as np
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
    _assert_refused(folder, r"is damaged.*left it as it is.*\.recover")


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


def _v1_points(db: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(run name, series) -> [(step, value)] read from a v1 file with plain sqlite3, the
    way v1 stored them (one row per point, NULL meaning NaN)."""
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT runs.name, series.name, points.step, points.value FROM points "
        "JOIN series ON series.id = points.series_id JOIN runs ON runs.id = series.run_id "
        "ORDER BY runs.name, series.name, points.step").fetchall()
    conn.close()
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for run, series, step, value in rows:
        out.setdefault((run, series), []).append((step, math.nan if value is None else value))
    return out


def test_the_v1_asset_migrates_to_chunks_with_every_point(tmp_path):
    """v1 -> v2 (points table -> chunks): same runs, series and values, bit for bit."""
    expected = _v1_points(ASSETS / "store-v1" / "danlu.db")
    assert len(expected) == 3 and sum(map(len, expected.values())) == 111  # what the asset holds
    conn = sqlite3.connect(ASSETS / "store-v1" / "danlu.db")
    runs_before = conn.execute("SELECT id, name, status FROM runs ORDER BY id").fetchall()
    conn.close()
    folder = _copy_asset(1, tmp_path)
    with open_store(folder) as store:
        assert sorted((r.id, r.name) for r in store.list_runs()) == [(i, n) for i, n, _ in runs_before]
        for (run_name, series), points in expected.items():
            run = store.get_run(run_name)
            assert series in store.series_names(run.id)
            steps, values = store.read_series(run.id, series)
            assert steps.tolist() == [s for s, _ in points]
            assert [struct.pack("<d", v) for v in values.tolist()] == [struct.pack("<d", v) for _, v in points]
    conn = sqlite3.connect(folder / "danlu.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "points" not in tables and "chunks" in tables
    assert conn.execute("SELECT count(*), sum(n) FROM chunks").fetchone() == (3, 111)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    backup = sqlite3.connect(folder / "danlu.v1.bak.db")  # the untouched v1 copy
    assert backup.execute("SELECT count(*) FROM points").fetchone()[0] == 111
    backup.close()


def test_a_big_v1_series_is_migrated_in_bounded_chunks(tmp_path, monkeypatch):
    """A v1 series longer than a chunk is split at MAX_CHUNK, in step order, values exact."""
    monkeypatch.setattr(sqlite_backend, "MAX_CHUNK", 1000)
    folder = _copy_asset(1, tmp_path)
    conn = sqlite3.connect(folder / "danlu.db")
    series_id = conn.execute("SELECT id FROM series WHERE name = 'x'").fetchone()[0]
    rng = np.random.default_rng(1)
    steps = rng.permutation(np.arange(1, 2501))  # inserted out of order, stored by key
    values = rng.standard_normal(2500)
    values[::7] = np.nan
    conn.executemany("INSERT INTO points VALUES (?, ?, ?, ?)",
                     [(series_id, int(s), None if math.isnan(v) else float(v), 1.7e9)
                      for s, v in zip(steps, values)])
    conn.commit()
    conn.close()
    expected = _v1_points(folder / "danlu.db")[("probe", "x")]
    with open_store(folder) as store:
        got_steps, got_values = store.read_series(store.get_run("probe").id, "x")
        assert got_steps.tolist() == [s for s, _ in expected] == list(range(2501))
        assert np.array_equal(got_values, np.array([v for _, v in expected]), equal_nan=True)
        assert store.read_series(store.get_run("probe").id, "x", 999, 1001)[0].tolist() == [999, 1000, 1001]
    conn = sqlite3.connect(folder / "danlu.db")
    assert conn.execute("SELECT n FROM chunks WHERE series_id = ? ORDER BY id", (series_id,)).fetchall() == [
        (1000,), (1000,), (501,)]
    conn.close()


def _planted_next_version(monkeypatch, step) -> int:
    """Pretend this danlu writes one schema version more, reached by ``step``."""
    current = sqlite_backend.SCHEMA_VERSION
    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(sqlite_backend.MIGRATIONS, current, step)
    return current


def test_an_older_store_is_backed_up_and_migrated_step_by_step(tmp_path, monkeypatch):
    """The migration machinery, with a planted next version on top of the real chain
    from the oldest asset (v1): every real step runs, then the planted one, once."""
    calls = []

    def planted(conn):
        calls.append(1)
        conn.execute("ALTER TABLE runs ADD COLUMN colour TEXT DEFAULT 'blue'")

    current = _planted_next_version(monkeypatch, planted)
    folder = _copy_asset(1, tmp_path)
    with open_store(folder) as store:
        base = store.get_run("baseline")
        assert base.status == "finished"
        assert store.read_series(base.id, "train/loss")[0].tolist() == list(range(100))
    open_store(folder).close()  # a second open finds the newest version: nothing more to do
    assert calls == [1]
    conn = sqlite3.connect(folder / "danlu.db")
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(current + 1)
    assert conn.execute("SELECT DISTINCT colour FROM runs").fetchall() == [("blue",)]
    conn.close()
    backup = sqlite3.connect(folder / "danlu.v1.bak.db")
    assert backup.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    assert backup.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    backup.close()


def test_a_failing_migration_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    def broken(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN half TEXT")
        raise RuntimeError("planted failure half-way")

    monkeypatch.setitem(sqlite_backend.MIGRATIONS, 1, broken)
    folder = _copy_asset(1, tmp_path)
    before = sqlite3.connect(folder / "danlu.db")
    schema_before = before.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    before.close()
    with pytest.raises(StoreError, match=r"from schema version 1 to 2 failed.*planted.*left as it was"):
        open_store(folder)
    conn = sqlite3.connect(folder / "danlu.db")
    assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema_before
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    assert conn.execute("SELECT count(*) FROM points").fetchone()[0] == 111
    conn.close()
    monkeypatch.undo()  # the real migration now runs, from the untouched v1 store
    with open_store(folder) as store:
        base = store.get_run("baseline")
        assert base.status == "finished"
        assert store.read_series(base.id, "train/loss")[0].tolist() == list(range(100))


def test_a_failing_real_migration_rolls_back_half_made_chunks(tmp_path, monkeypatch):
    """The real v1 -> v2 step failing after it created chunks leaves a v1 store."""
    real = sqlite_backend.chunk_rows
    made = []

    def fail_on_second_series(series_id, *columns):
        made.append(series_id)
        if len(made) == 2:
            raise RuntimeError("planted failure in the second series")
        return real(series_id, *columns)

    monkeypatch.setattr(sqlite_backend, "chunk_rows", fail_on_second_series)
    folder = _copy_asset(1, tmp_path)
    with pytest.raises(StoreError, match=r"from schema version 1 to 2 failed.*second series.*left as it was"):
        open_store(folder)
    conn = sqlite3.connect(folder / "danlu.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "chunks" not in tables and conn.execute("SELECT count(*) FROM points").fetchone()[0] == 111
    conn.close()


def test_a_missing_migration_step_is_a_clear_error(tmp_path, monkeypatch):
    current = _planted_next_version(monkeypatch, lambda conn: None)
    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", current + 2)
    folder = _copy_asset(1, tmp_path)
    with pytest.raises(StoreError, match=f"from schema version {current + 1} to {current + 2}"):
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
    with pytest.raises(StoreError, match=r"unknown store URL scheme 'mysql'.*postgresql://.*sqlite://"):
        open_store("mysql://db.example/danlu")
    # a PostgreSQL URL picks the team store; an unreachable server is a StoreError naming the URL
    # without its password (credentials never reach messages, logs or run records)
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError, match=r"cannot connect to the store at postgresql://alice:\*\*\*@127\.0\.0\.1:9/") as err:
        open_store("postgresql://alice:s3cret@127.0.0.1:9/danlu?connect_timeout=1")
    assert "s3cret" not in str(err.value)
