"""The server's own limits: header timeout, request-line and header sizes, connection cap, logs.

uvicorn has no header timeout and no size limits of its own (see newsletter/web/server.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.web.logs import PATH_SHOWN
from newsletter.web.server import BODY_RATE, MAX_BODY_BYTES, MAX_REQUEST_LINE
from tests.web_server import (
    Running,
    connect,
    exchange,
    get,
    logged_paths,
    read_until_closed,
    service,
)

HEADER_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with service(tmp_path_factory.mktemp("limits"), serve_header_timeout=HEADER_TIMEOUT) as running:
        yield running


def test_slow_headers_are_cut_off(web: Running) -> None:
    start = time.monotonic()
    with connect(web) as sock:
        try:
            for byte in b"GET /rss.xml HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ":
                sock.send(bytes([byte]))
                time.sleep(0.1)
            for _ in range(100):  # then trickle a header forever
                sock.send(b"a")
                time.sleep(0.1)
        except OSError:
            pass  # the server closed the connection: what this test wants
        answer = read_until_closed(sock)
    took = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT <= took < HEADER_TIMEOUT + 2, took


def test_a_connection_that_sends_nothing_is_closed(web: Running) -> None:
    start = time.monotonic()
    with connect(web) as sock:
        assert read_until_closed(sock) == b""
    assert time.monotonic() - start < HEADER_TIMEOUT + 2


def test_a_kept_alive_connection_gets_the_same_header_timeout(web: Running) -> None:
    with connect(web) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b"}"):  # the whole JSON answer, which may come in pieces
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        start = time.monotonic()
        try:
            sock.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            for _ in range(100):
                sock.send(b"a")
                time.sleep(0.1)
        except OSError:
            pass
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - start < HEADER_TIMEOUT + 2


def test_an_overlong_request_line_is_refused_and_not_logged(
    web: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="newsletter.web")
    status, _, _ = exchange(web, get("/" + "a" * MAX_REQUEST_LINE))
    assert status == 414
    assert "a" * 200 not in caplog.text
    assert refusals(caplog) == [(414, "127.0.0.1")]  # its record, with no path


def refusals(caplog: pytest.LogCaptureFixture) -> list[tuple[object, object]]:
    """(status, client) of each request refused before the app saw it, as logged."""
    found = [r for r in caplog.records if r.getMessage() == "request.refused"]
    return [(getattr(r, "status", None), getattr(r, "client", None)) for r in found]


def test_huge_headers_are_refused(web: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="newsletter.web")
    big = [f"X-Filler-{i}: {'v' * 1000}" for i in range(40)]
    status, _, _ = exchange(web, get("/rss.xml", *big))
    assert status == 431
    assert refusals(caplog) == [(431, "127.0.0.1")]


def test_two_host_headers_are_400(web: Running) -> None:
    # RFC 9112 3.2: a proxy and this server could each believe a different one.
    status, _, _ = exchange(web, get("/rss.xml", "Host: other.example"))
    assert status == 400
    assert exchange(web, get("/rss.xml"))[0] == 200


def test_long_paths_are_logged_cut_short(web: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="newsletter.web")
    status, _, _ = exchange(web, get("/" + "b" * 4000))
    assert status == 404
    [path] = logged_paths(caplog.records)
    assert path == "/" + "b" * (PATH_SHOWN - 1) + "…"


def test_connections_beyond_the_cap_are_closed(tmp_path: Path) -> None:
    with service(tmp_path, serve_max_connections=4, serve_header_timeout=30.0) as web:
        idle = [connect(web) for _ in range(4)]
        try:
            time.sleep(0.2)  # let the server accept them all
            with connect(web) as extra:
                extra.sendall(get("/healthz"))
                assert read_until_closed(extra) == b""
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)
        status, _, _ = exchange(web, get("/healthz"))
        assert status == 200


def _post_head(path: str, length: int | None) -> bytes:
    size = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{size}\r\n\r\n"
    ).encode()


def test_a_body_that_never_arrives_is_cut_off(web: Running) -> None:
    declared = 60_000  # a form's size (read_form takes up to 64 KB), a second more to send it
    start = time.monotonic()
    with connect(web, timeout=HEADER_TIMEOUT + declared / BODY_RATE + 5) as sock:
        sock.sendall(_post_head("/subscribe", declared) + b"email=")
        answer = read_until_closed(sock)
    took = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert HEADER_TIMEOUT + declared / BODY_RATE <= took < HEADER_TIMEOUT + declared / BODY_RATE + 2
    status, _, _ = exchange(web, get("/healthz"))
    assert status == 200


def test_slow_bodies_cannot_hold_every_connection(tmp_path: Path) -> None:
    # 6 held and the probe make 7: uvicorn answers 503 once connections reach the cap.
    with service(tmp_path, serve_max_connections=7, serve_header_timeout=HEADER_TIMEOUT) as web:
        held = [connect(web) for _ in range(6)]
        try:
            for sock in held:
                sock.sendall(_post_head("/subscribe", 10) + b"e")
            time.sleep(HEADER_TIMEOUT + 1)  # each is cut off, and its slot freed
            status, _, body = exchange(web, get("/healthz"))
            assert status == 200, body
            assert all(read_until_closed(sock).startswith(b"HTTP/1.1 408 ") for sock in held)
        finally:
            for sock in held:
                sock.close()


def test_a_body_declared_too_large_is_refused_before_it_is_read(web: Running) -> None:
    with connect(web) as sock:
        sock.sendall(_post_head("/subscribe", MAX_BODY_BYTES + 1))
        answer = read_until_closed(sock)  # no byte of the body sent: answered at once
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]


def test_a_chunked_body_that_grows_too_large_is_cut_off(web: Running) -> None:
    # A one-click unsubscribe is answered without reading its body; the server then reads
    # the rest to keep the connection, and must stop at MAX_BODY_BYTES.
    chunk = b"&" * 65536
    sent = 0
    with connect(web) as sock:
        sock.sendall(_post_head("/u/not-a-token", None))
        try:
            while sent < 8 * MAX_BODY_BYTES:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: what this test wants
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:80]  # the app's answer, then the cut
    assert answer.count(b"HTTP/1.1 ") == 1  # and nothing after it
    assert sent < 8 * MAX_BODY_BYTES


def test_http_1_1_without_host_is_refused(web: Running) -> None:
    status, _, _ = exchange(web, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status == 400
    status, _, _ = exchange(web, b"GET /healthz HTTP/1.0\r\n\r\n")  # 1.0 has no Host
    assert status == 200
