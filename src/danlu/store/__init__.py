"""The run store: runs, their curves, reports and artefacts.

    from danlu.store import open_store
    store = open_store()                     # $DANLU_HOME, else ./.danlu
    run = store.create_run(config={"lr": 1e-3})
    store.log_points(run.id, [("train/loss", 0, 2.3, time.time())])
    steps, values = store.read_series(run.id, "train/loss")

``open_store`` is the one place where a location string becomes an implementation
(compare Optuna's ``get_storage``); everything else takes a ``Store`` object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from danlu.errors import StoreError
from danlu.store.base import RUN_STATUSES, ReportRecord, RunRecord, Store, default_store_path
from danlu.store.sqlite import SQLiteStore
from danlu.store.writer import BatchedWriter

__all__ = [
    "open_store",
    "closing_stores_opened",
    "default_store_path",
    "Store",
    "RunRecord",
    "ReportRecord",
    "RUN_STATUSES",
    "SQLiteStore",
    "BatchedWriter",
]

#: URL scheme -> backend. A plain path (no "scheme://") is the embedded SQLite store.
BACKENDS: dict[str, Callable[[str, bool], Store]] = {
    "sqlite": lambda location, create: SQLiteStore(location, create=create),
    "postgresql": lambda location, create: _postgres(location, create),
    "postgres": lambda location, create: _postgres(location, create),
}


def _postgres(location: str, create: bool) -> Store:
    from danlu.store.postgres import PostgresStore  # psycopg is imported only for a postgresql:// store

    return PostgresStore(f"postgresql://{location}", create=create)


def open_store(path: str | os.PathLike[str] | Store | None = None, create: bool = True) -> Store:
    """Open (and by default create) the store at ``path``.

    ``path``: a folder (the embedded SQLite store: ``<folder>/danlu.db`` and
    ``<folder>/runs/<id>/``), a ``scheme://location`` URL naming a backend
    (``sqlite:///abs/folder``), an already open Store (returned as is), or None for
    ``default_store_path()``. ``create=False`` raises StoreError when there is no store.
    """
    if isinstance(path, Store):
        return path
    location = os.fspath((os.environ.get("DANLU_STORE") or default_store_path()) if path is None else path)
    scheme, sep, rest = location.partition("://")
    if not sep:
        store = BACKENDS["sqlite"](location, create)
    else:
        factory = BACKENDS.get(scheme.lower())
        if factory is None:
            raise StoreError(
                f"unknown store URL scheme {scheme!r} in {location!r}; known: "
                f"{', '.join(f'{name}://' for name in sorted(BACKENDS))}, or a plain folder path"
            )
        store = factory(rest, create)
    if _tracking:
        _tracking[-1].append(store)
    return store


#: While a `closing_stores_opened()` block runs: the stores opened inside it, innermost last.
_tracking: list[list[Store]] = []


@contextmanager
def closing_stores_opened() -> Iterator[None]:
    """Close, on leaving, every store opened inside: a command's handles end with the command,
    not whenever the garbage collector gets to them. A SQLite connection is only freed by the
    cycle collector, and it folds its -wal file into the database as it closes, so a store
    left to the collector changes on disk at a random later moment (even after a read-only
    command). Stores opened before entering are left alone."""
    opened: list[Store] = []
    _tracking.append(opened)
    try:
        yield
    finally:
        _tracking.remove(opened)
        for store in opened:
            store.close()
