"""The dashboard as a Starlette app: a list of routes, assets served from the package.

``create_app(store)`` is all a test or a server needs (STYLE 11: a web app as a list
of routes). The page is one HTML file and plain JavaScript modules under
``danlu/ui/static`` (no build step); uPlot is vendored there under its MIT licence.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from danlu.store.base import Store
from danlu.ui import endpoints as api
from danlu.ui.guard import GuardMiddleware

__all__ = ["create_app", "STATIC"]

#: The folder of the page, its scripts and the vendored uPlot.
STATIC = Path(__file__).parent / "static"


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})


async def not_found(request: Request, exc: Exception) -> Response:
    return api.json_response({"error": f"nothing at {request.url.path}"}, 404)


def create_app(
    store: Store,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
    *,
    runs_max_age: float = 1.0,
) -> Starlette:
    """The dashboard over ``store``.

    ``token``: when given, every request must carry it (see :mod:`danlu.ui.guard`).
    ``allowed_hosts``: when given, requests whose Host header names another host are
    refused (the server passes the loopback names when bound to loopback).
    ``runs_max_age``: seconds the runs table may be served from the last read of the
    run list while a fresh read runs (0: read on every request).
    """
    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Mount("/api", routes=api.routes()),
            Mount("/static", app=StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
        ],
        middleware=[Middleware(GuardMiddleware, token=token, allowed_hosts=allowed_hosts)],
        exception_handlers={404: not_found},
    )
    app.state.dashboard = api.Dashboard(store, runs_max_age=runs_max_age)
    return app
