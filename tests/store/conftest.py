"""Store fixtures: every backend in BACKENDS runs the same test suite (Optuna's
pytest_storages habit, PRACTICES #3). Adding a backend is adding one line here."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from danlu.store import Store, open_store

ASSETS = Path(__file__).resolve().parents[1] / "assets"

#: backend name -> factory(folder) -> Store
BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda folder: open_store(folder),
}

POSTGRES = os.environ.get("DANLU_TEST_POSTGRES_URL")


def _postgres_store(folder: Path) -> Store:
    """A store in its own PostgreSQL schema, named after the test's folder (so a second
    handle on the same folder opens the same store), its artefacts in that folder."""
    schema = "t" + hashlib.sha1(str(folder).encode()).hexdigest()[:16]
    sep = "&" if "?" in POSTGRES else "?"
    return open_store(f"{POSTGRES}{sep}schema={schema}&artifacts={folder}")


if POSTGRES:
    BACKENDS["postgres"] = _postgres_store


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request, tmp_path):
    """A factory of stores of the parametrised backend; call again for a second handle."""
    opened: list[Store] = []

    def make(folder: Path | None = None) -> Store:
        store = BACKENDS[request.param](folder or tmp_path / "store")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
