"""Fixtures of the dashboard tests: a store (in-memory fake, and the SQLite store once
it exists) filled with sample runs, and a Starlette TestClient over it."""

from __future__ import annotations

import pytest
from ui_fakestore import MemoryStore
from ui_sample import populate


def _sqlite_store(path):
    try:
        from danlu.store import open_store
    except ImportError:
        pytest.skip("danlu.store.open_store (the SQLite store) is not there yet")
    return open_store(path)


@pytest.fixture(params=["memory", "sqlite"])
def ui_store(request, tmp_path):
    """An empty store of each implementation."""
    if request.param == "memory":
        return MemoryStore(tmp_path / "store")
    return _sqlite_store(tmp_path / "store")


@pytest.fixture
def sample(ui_store):
    return populate(ui_store)


@pytest.fixture
def client(sample):
    from starlette.testclient import TestClient

    from danlu.ui.app import create_app

    with TestClient(create_app(sample.store)) as c:
        yield c

