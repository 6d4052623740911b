"""Serving the dashboard with uvicorn: loopback by default, a token anywhere else.

:func:`serve` binds the socket itself, so a busy port is a clear error and
``port=0`` picks a free one, then prints the URL to open (with ``?token=`` when a
token is set) and serves until Ctrl-C.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
import threading
from typing import TextIO

from danlu.errors import DanluError
from danlu.store.base import Store
from danlu.ui.guard import LOOPBACK_HOSTS

__all__ = ["serve", "is_loopback", "url_for", "bind", "new_token", "allowed_hosts_for"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': only this machine can connect."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh random token, for users who want one without inventing it."""
    return secrets.token_urlsafe(24)


def allowed_hosts_for(host: str, token: str | None) -> tuple[str, ...] | None:
    """The Host names a dashboard bound to `host` answers (None: any, as a token guards it): on loopback
    without a token, the loopback names and the address it was told to bind (127.0.0.2 is loopback too)."""
    if token or not is_loopback(host):
        return None
    bound = host.strip().lower()
    return tuple(dict.fromkeys([*LOOPBACK_HOSTS, bound, f"[{bound.strip('[]')}]" if ":" in bound else bound]))


def url_for(host: str, port: int, token: str | None = None, page: str = "") -> str:
    """The address to open; ``page`` is a dashboard route such as ``#/run/ID``."""
    from urllib.parse import quote

    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "") + page


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a DanluError that says what to do instead."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets that say they
    # are TCP, and without it every keep-alive answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise DanluError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "pick another port (port 0 takes any free one)"
        ) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    store: Store,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    *,
    out: TextIO | None = None,
    log_level: str = "warning",
    page: str = "",
) -> None:
    """Serve the dashboard over ``store`` until interrupted.

    Binding to a non-loopback address without ``token`` is refused: anyone on the
    network could read every run and its code diff. ``page`` (e.g. ``#/run/ID``) is
    appended to the printed URL.
    """
    import uvicorn

    from danlu.ui.app import create_app

    loopback = is_loopback(host)
    if not loopback and not token:
        raise DanluError(
            f"host {host} makes the dashboard reachable from other machines; give a token "
            f"(for example {new_token()}) so only people with the link can open it, or stay on "
            "127.0.0.1"
        )
    app = create_app(store, token=token, allowed_hosts=allowed_hosts_for(host, token))
    threading.Thread(target=app.state.dashboard.warm, name="danlu-ui-warm", daemon=True).start()
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    out = out or sys.stdout
    print(f"danlu dashboard on {url_for(host, actual, token, page)}  (store: {store.display}; Ctrl-C to stop)",
          file=out, flush=True)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
