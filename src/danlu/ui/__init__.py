"""The web dashboard: ``danlu ui`` serves the runs table, run pages, comparisons and
reports over the store (issue 5; practices E2, T1, T2).

    from danlu.ui import create_app, serve
"""

from __future__ import annotations

__all__ = ["create_app", "serve"]


def __getattr__(name: str):
    # Lazy: importing danlu.ui must not pull Starlette in for users who never open it.
    if name == "create_app":
        from danlu.ui.app import create_app

        return create_app
    if name == "serve":
        from danlu.ui.server import serve

        return serve
    raise AttributeError(f"module 'danlu.ui' has no attribute {name!r}")
