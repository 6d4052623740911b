"""Serving the dashboard for real in tests: uvicorn in a thread on a free loopback port,
and raw HTTP requests whose path is sent byte for byte."""

from __future__ import annotations


class LiveServer:
    """The dashboard served by uvicorn in a thread on a free loopback port."""

    def __init__(self, app) -> None:
        import threading

        import uvicorn

        from danlu.ui.server import bind

        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def raw_get(url: str, raw_path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET with the request path sent byte for byte (no client-side normalisation of ``..``)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()
