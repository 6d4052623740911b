"""`danlu ui` and serve(): loopback by default, a token elsewhere, clear port errors,
the URL printed, answers without Nagle/delayed-ACK stalls."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from ui_live import LiveServer

from danlu.errors import DanluError
from danlu.ui.app import create_app
from danlu.ui.server import bind, url_for


def parse(argv):
    from danlu.cli import ui

    parser = argparse.ArgumentParser(prog="danlu")
    ui.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_arguments(monkeypatch):
    monkeypatch.delenv("DANLU_UI_TOKEN", raising=False)
    args = parse(["ui"])
    assert (args.host, args.port, args.token, args.store) == ("127.0.0.1", 8765, None, None)
    args = parse(["ui", "--store", "/x", "--port", "0", "--host", "0.0.0.0", "--token", "t"])
    assert (args.store, args.port, args.host, args.token) == ("/x", 0, "0.0.0.0", "t")
    assert parse(["ui", "last"]).run == "last" and parse(["ui"]).run is None
    monkeypatch.setenv("DANLU_UI_TOKEN", "from-env")
    assert parse(["ui"]).token == "from-env"


def test_cli_refuses_open_network_binding(sample, monkeypatch):
    monkeypatch.delenv("DANLU_UI_TOKEN", raising=False)
    args = parse(["ui", "--host", "0.0.0.0", "--port", "0"])
    monkeypatch.setattr("danlu.cli.ui.open_store_from_args", lambda a, create=False: sample.store)
    with pytest.raises(DanluError, match="--token") as info:
        args.func(args)
    assert info.value.exit_code == 2
    bad = parse(["ui", "--port", "70000"])
    with pytest.raises(DanluError, match="--port"):
        bad.func(bad)


def test_busy_port_is_a_clear_error():
    first = bind("127.0.0.1", 0)
    try:
        with pytest.raises(DanluError, match="another port"):
            bind("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()


def test_url_printed():
    assert url_for("127.0.0.1", 8765) == "http://127.0.0.1:8765/"
    assert url_for("0.0.0.0", 80, "tok") == "http://127.0.0.1:80/?token=tok"
    assert url_for("::1", 8765) == "http://[::1]:8765/"
    assert url_for("127.0.0.1", 1, "a b", "#/run/x1") == "http://127.0.0.1:1/?token=a%20b#/run/x1"


def test_keep_alive_answers_do_not_stall(sample):
    """Without TCP_NODELAY on the accepted sockets every keep-alive answer waited ~40 ms."""
    sock = bind("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    sock.close()
    with LiveServer(create_app(sample.store)) as server, httpx.Client(base_url=server.url) as client:
        client.get("/api/info")
        times = []
        for _ in range(8):
            t = time.perf_counter()
            client.get("/api/info").raise_for_status()
            times.append(time.perf_counter() - t)
    assert sorted(times)[len(times) // 2] < 0.035


@pytest.mark.slow
def test_serve_prints_the_url_and_answers(tmp_path):
    """The real start-up path in its own process (timed in benchmarks/ui_speed.py)."""
    pytest.importorskip("danlu.store")
    from danlu.store import open_store

    open_store(tmp_path / "store").close()
    code = ("from danlu.store import open_store; from danlu.ui.server import serve; "
            f"serve(open_store({str(tmp_path / 'store')!r}, create=False), port=0)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        line = proc.stdout.readline()
        assert line.startswith("danlu dashboard on http://127.0.0.1:"), line
        url = line.split(" on ")[1].split()[0]
        assert httpx.get(url + "api/info", timeout=10).json()["store"].endswith("store")
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_opens_a_runs_page(sample, monkeypatch):
    calls = []
    monkeypatch.setattr("danlu.cli.ui.open_store_from_args", lambda a, create=False: sample.store)
    monkeypatch.setattr("danlu.ui.server.serve", lambda store, **kw: calls.append(kw))
    args = parse(["ui", "baseline", "--port", "0"])
    assert args.func(args) == 0
    assert calls[0]["page"] == "#/run/" + sample.ids["baseline"] and calls[0]["host"] == "127.0.0.1"
    from danlu.errors import RunNotFound

    with pytest.raises(RunNotFound):
        args = parse(["ui", "no-such-run"])
        args.func(args)
