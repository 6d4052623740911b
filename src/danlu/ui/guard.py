"""What keeps the dashboard safe to run: the token, the host check, artefact paths.

- **Token.** Bound to anything but the loopback interface the dashboard is reachable
  by others, so :func:`danlu.ui.server.serve` requires a token and every request must
  carry it: ``Authorization: Bearer T``, an ``X-Danlu-Token: T`` header, ``?token=T``
  (which also sets an HttpOnly, SameSite=Strict cookie so the page's own requests
  carry it), or that cookie. Anything else is refused with 401. Compared in constant
  time.
- **Host check.** On loopback without a token, a web page elsewhere could still reach
  the dashboard through DNS rebinding; requests whose ``Host`` is not a loopback name
  are refused with 403 (Jupyter does the same).
- **Writes.** The only writes (note and tags) must be JSON from the same origin: a
  cross-site form cannot send them.
- **Headers.** A Content-Security-Policy that allows only the dashboard's own
  scripts, so even a missed escape could not run injected code.
- **Artefacts.** :func:`artefact_path` maps a URL path to a file under the store's
  ``runs/`` folder, or to nothing: ``..``, ``.``, empty segments, absolute paths,
  backslashes, percent-encoded slashes/dots/NUL and symlinks leading outside are
  all refused, and the caller answers 404.
"""

from __future__ import annotations

import hmac
import json
import re
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

__all__ = ["GuardMiddleware", "artefact_path", "LOOPBACK_HOSTS", "COOKIE", "CSP", "MAX_BODY"]

COOKIE = "danlu_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
#: The largest request body accepted (a note and tags are a few kilobytes); larger is refused unread.
MAX_BODY = 64 * 1024

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

_ENCODED_BAD = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)


def artefact_path(runs_root: Path, raw_path: bytes | str, path: str) -> Path | None:
    """The file ``path`` names under ``runs_root``, or None when it is not one, or not there.

    ``raw_path`` is the request path as sent (still percent-encoded): encoded slashes,
    backslashes, dots and NUL in it are refused outright, before any decoding could
    turn them into separators.
    """
    raw = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    if _ENCODED_BAD.search(raw) or "\\" in raw or "\\" in path or "\0" in path:
        return None
    if not path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    try:
        root = runs_root.resolve(strict=True)
        target = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(root) or target == root or not target.is_file():
        return None
    return target


class GuardMiddleware:
    """ASGI middleware: token, host check, same-origin writes, security headers."""

    def __init__(self, app, token: str | None = None, allowed_hosts: tuple[str, ...] | None = None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.allowed_hosts = tuple(h.lower() for h in allowed_hosts) if allowed_hosts else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed_hosts is not None and _hostname(headers.get("host", "")) not in self.allowed_hosts:
            await _refuse(send, 403, "this dashboard only answers requests addressed to "
                                     f"{', '.join(self.allowed_hosts)}; open it through that address")
            return
        set_cookie = False
        if self.token is not None:
            given, from_query = self._given(scope, headers)
            if given is None or not hmac.compare_digest(given.encode(), self.token):
                await _refuse(send, 401, "missing or wrong token; open the URL `danlu ui` printed "
                                         "(it carries ?token=...) or send 'Authorization: Bearer TOKEN'")
                return
            set_cookie = from_query
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if origin is not None and _hostport(origin) != headers.get("host", "").lower():
                await _refuse(send, 403, "writes are accepted only from the dashboard's own pages")
                return
            if not headers.get("content-type", "").startswith("application/json"):
                await _refuse(send, 415, "send the change as JSON (Content-Type: application/json)")
                return
            length = headers.get("content-length", "")
            if length and (not length.isdigit() or int(length) > MAX_BODY):
                await _refuse(send, 413, f"the request body is larger than {MAX_BODY // 1024} KB")
                return
            body = await _read_body(receive, MAX_BODY)
            if body is None:
                await _refuse(send, 413, f"the request body is larger than {MAX_BODY // 1024} KB")
                return
            receive = _replay(body)

        token = self.token

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                names = {k.lower() for k, _ in message.get("headers", [])}
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", CSP.encode()))
                if set_cookie and token is not None:
                    extra.append((b"set-cookie", COOKIE.encode() + b"=" + token
                                  + b"; HttpOnly; SameSite=Strict; Path=/"))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _given(self, scope, headers) -> tuple[str | None, bool]:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        if "x-danlu-token" in headers:
            return headers["x-danlu-token"], False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0], True
        if "cookie" in headers:
            cookie = SimpleCookie()
            try:
                cookie.load(headers["cookie"])
            except Exception:  # a malformed cookie header is just no token
                return None, False
            if COOKIE in cookie:
                return cookie[COOKIE].value, False
        return None, False


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes `limit` bytes (the rest is not read)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _hostport(origin: str) -> str:
    return re.sub(r"^[a-z][a-z0-9+.-]*://", "", origin.strip().lower()).rstrip("/")


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff")]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="danlu"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
