"""Safety of the dashboard (issue 5): artefact paths cannot leave the store's runs/
folder, a token guards non-loopback serving, writes only from the page itself, and
no script of ours ever parses data as HTML."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from ui_live import LiveServer, raw_get

from danlu.errors import DanluError
from danlu.ui.app import STATIC, create_app
from danlu.ui.guard import LOOPBACK_HOSTS, artefact_path
from danlu.ui.server import is_loopback, serve

SECRET = b"top-secret-content"


@pytest.fixture
def planted(sample, tmp_path):
    """Files a traversal would want: the store's database folder and a file outside the store."""
    root = Path(sample.store.root)
    (root / "secret.txt").write_bytes(SECRET)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(SECRET)
    rid = sample.ids["baseline"]
    link = root / "runs" / rid / "escape.txt"
    os.symlink(outside, link)
    return sample, rid, outside


def traversals(rid: str, outside: Path) -> list[str]:
    return [
        "/api/files/../secret.txt",
        "/api/files/../../secret.txt",
        f"/api/files/{rid}/../../secret.txt",
        f"/api/files/{rid}/checkpoints/../../../secret.txt",
        "/api/files/%2e%2e/secret.txt",
        "/api/files/%2E%2E%2fsecret.txt",
        f"/api/files/{rid}%2f..%2f..%2fsecret.txt",
        f"/api/files/{rid}/..%2f..%2fsecret.txt",
        "/api/files/..%5csecret.txt",
        "/api/files/%252e%252e/secret.txt",
        "/api/files/" + str(outside),
        "/api/files//" + str(outside).lstrip("/"),
        "/api/files/" + str(outside).replace("/", "%2f"),
        f"/api/files/{rid}/escape.txt",                       # symlink pointing outside
        f"/api/files/{rid}/checkpoints",                      # a folder, not a file
        f"/api/files/{rid}/checkpoints/best.pt%00.png",
        f"/api/files/{rid}/./checkpoints/best.pt",
        f"/api/files/{rid}//checkpoints/best.pt",
        "/api/files/",
    ]


def test_artefact_route_refuses_traversal_over_real_http(planted):
    sample, rid, outside = planted
    with LiveServer(create_app(sample.store)) as server:
        for path in traversals(rid, outside):
            status, body = raw_get(server.url, path)
            assert status == 404, path
            assert SECRET not in body, path
        ok, body = raw_get(server.url, f"/api/files/{rid}/checkpoints/best.pt")
        assert ok == 200 and body == b"best-checkpoint"             # the clean case still works


@pytest.mark.parametrize("raw, path, ok", [
    ("/a/b.txt", "a/b.txt", True),
    ("/a/../b.txt", "a/../b.txt", False),
    ("/a%2fb.txt", "a/b.txt", False),
    ("/a/%2e%2e/b.txt", "a/../b.txt", False),
    ("/a\\b.txt", "a\\b.txt", False),
    ("/C:/x", "C:/x", False),
    ("//etc/passwd", "/etc/passwd", False),
])
def test_artefact_path_rules(tmp_path, raw, path, ok):
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "b.txt").write_text("x")
    (runs / "b.txt").write_text("x")
    assert (artefact_path(runs, raw, path) is not None) is ok


def test_artefacts_are_sandboxed(client, sample):
    r = client.get(f"/api/files/{sample.ids['baseline']}/curves.png")
    assert "sandbox" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_token_required_everywhere_when_set(sample):
    store = sample.store
    rid = sample.ids["wide"]
    with TestClient(create_app(store, token="s3cret")) as c:
        for path in ["/", "/static/app.js", "/api/runs", f"/api/runs/{rid}", "/api/reports",
                     f"/api/files/{sample.ids['baseline']}/checkpoints/best.pt", "/api/openapi.json", "/nope"]:
            r = c.get(path)
            assert r.status_code == 401, path
            assert b"best-checkpoint" not in r.content and b"wide" not in r.content
        assert c.get("/api/runs", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/runs?token=wrong").status_code == 401
        r = c.patch(f"/api/runs/{rid}", json={"note": "pwned"})
        assert r.status_code == 401 and store.get_run(rid).note != "pwned"
        assert c.get("/api/runs", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/runs", headers={"x-danlu-token": "s3cret"}).status_code == 200
    with TestClient(create_app(store, token="s3cret")) as c:
        first = c.get("/?token=s3cret")
        assert first.status_code == 200
        cookie = first.headers["set-cookie"]
        assert "danlu_token=s3cret" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert c.get("/api/runs").status_code == 200                   # the cookie now carries it
        assert c.patch(f"/api/runs/{rid}", json={"note": "ok"}).status_code == 200


def test_no_token_means_open_on_loopback(client):
    assert client.get("/api/runs").status_code == 200


def test_non_loopback_host_needs_a_token(sample):
    with pytest.raises(DanluError, match="give a token"):
        serve(sample.store, host="0.0.0.0", port=0)
    with pytest.raises(DanluError, match="give a token"):
        serve(sample.store, host="192.168.1.10", port=0)
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.5.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")


def test_loopback_refuses_foreign_host_headers(sample):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must get nothing."""
    with TestClient(create_app(sample.store, allowed_hosts=LOOPBACK_HOSTS)) as c:
        assert c.get("/api/runs", headers={"host": "evil.example:8765"}).status_code == 403
        for host in ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "localhost"]:
            assert c.get("/api/runs", headers={"host": host}).status_code == 200, host


def test_writes_only_from_the_same_origin(client, sample):
    rid = sample.ids["wide"]
    r = client.patch(f"/api/runs/{rid}", json={"note": "csrf"}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and sample.store.get_run(rid).note != "csrf"
    r = client.patch(f"/api/runs/{rid}", json={"note": "same"}, headers={"origin": "http://testserver"})
    assert r.status_code == 200


def test_pages_carry_a_strict_content_security_policy(client):
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert client.get("/").headers["x-frame-options"] == "DENY"


UNSAFE = re.compile(r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(|"
                    r"createContextualFragment|DOMParser")


def unsafe_dom_calls(text: str) -> list[str]:
    return [m.group(0) for m in UNSAFE.finditer(text)]


def test_unsafe_dom_check_fires_on_planted_code_and_not_on_clean():
    assert unsafe_dom_calls("el.innerHTML = run.name;") == [".innerHTML"]
    assert unsafe_dom_calls("el.insertAdjacentHTML('beforeend', x)") == ["insertAdjacentHTML"]
    assert unsafe_dom_calls("el.textContent = run.name; h('td', {text: x})") == []


def test_our_scripts_never_parse_data_as_html():
    scripts = [p for p in STATIC.rglob("*.js") if "vendor" not in p.parts]
    assert len(scripts) >= 6
    for path in scripts:
        assert unsafe_dom_calls(path.read_text()) == [], path


def test_vendored_uplot_keeps_its_licence():
    folder = STATIC / "vendor" / "uplot"
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert (folder / "uPlot.esm.js").stat().st_size > 50_000
    assert unsafe_dom_calls((folder / "uPlot.esm.js").read_text()) == []


def test_the_address_it_binds_is_an_allowed_host(sample):
    """`danlu ui --host 127.0.0.2` prints http://127.0.0.2:PORT; that address must answer (issue 14)."""
    from danlu.ui.server import allowed_hosts_for

    allowed = allowed_hosts_for("127.0.0.2", None)
    assert "127.0.0.2" in allowed and "localhost" in allowed
    assert allowed_hosts_for("127.0.0.1", "tok") is None and allowed_hosts_for("0.0.0.0", "tok") is None
    with TestClient(create_app(sample.store, allowed_hosts=allowed)) as c:
        assert c.get("/api/runs", headers={"host": "127.0.0.2:8765"}).status_code == 200
        assert c.get("/api/runs", headers={"host": "evil.example:8765"}).status_code == 403


def test_bad_edits_are_400_and_large_bodies_are_refused(client, sample):
    rid = sample.ids["wide"]
    before = sample.store.get_run(rid)
    r = client.patch(f"/api/runs/{rid}", json={"tags": ["ok", "bad\x07tag"]})
    assert r.status_code == 400 and "control characters" in r.json()["error"]
    r = client.patch(f"/api/runs/{rid}", json={"note": "ring\x07"})
    assert r.status_code == 400
    assert client.patch(f"/api/runs/{rid}", json={"note": "two\nlines"}).status_code == 200
    big = b'{"note": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    r = client.patch(f"/api/runs/{rid}", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    def chunks():                               # no Content-Length: the body arrives in pieces
        for _ in range(1000):
            yield b"x" * 4096

    r = client.patch(f"/api/runs/{rid}", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert sample.store.get_run(rid).tags == before.tags


def test_the_body_reader_stops_at_the_limit():
    """The guard reads a streamed body only up to the limit; the rest is never pulled off the socket."""
    import asyncio

    from danlu.ui.guard import _read_body

    pulled = 0

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    assert asyncio.run(_read_body(receive, 10 * 1024)) is None and pulled == 11
