"""Odd requests over raw sockets: path spellings, bad dates, a foreign Host, slow or huge heads.

httpx and browsers normalise what they send, so these requests are written byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import count

import pytest

from newsletter.web.paths import canonical_path
from tests.web_server import Running, connect, exchange, get, logged_paths, service

_readers = count(1)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with service(tmp_path_factory.mktemp("requests")) as running:
        yield running


@pytest.mark.parametrize(
    "spelling",
    [
        "//feeds/{name}",
        "///feeds/{name}",
        "/./feeds/{name}",
        "/topics/../feeds/{name}",
        "/../feeds/{name}",
        "/feeds//{name}",
        "/%2Ffeeds/{name}",
        "/.%2Ffeeds/{name}",
    ],
)
def test_private_feed_is_private_in_any_spelling(
    web: Running, caplog: pytest.LogCaptureFixture, spelling: str
) -> None:
    caplog.set_level(logging.INFO, logger="newsletter.web")
    reader = web.store.add_subscriber(f"feed{next(_readers)}@example.com")
    name = web.feed_url(reader.id).removeprefix("/feeds/")
    status, headers, body = exchange(web, get(spelling.format(name=name)))
    assert status == 200 and b"<rss" in body
    assert headers["cache-control"] == "private, max-age=300"
    assert headers["x-robots-tag"] == "noindex"
    assert logged_paths(caplog.records) == [f"/feeds/{name[:6]}…"]
    assert name not in caplog.text


@pytest.mark.parametrize("spelling", ["//u/{token}", "/u//{token}", "/x/../u/{token}"])
def test_unsubscribe_token_is_never_logged_whole(
    web: Running, caplog: pytest.LogCaptureFixture, spelling: str
) -> None:
    caplog.set_level(logging.INFO, logger="newsletter.web")
    reader = web.store.add_subscriber(f"spelling{next(_readers)}@example.com")
    token = web.token(reader.id, "unsubscribe")
    status, headers, body = exchange(web, get(spelling.format(token=token)))
    assert status == 200 and b"unsubscribe" in body.lower()
    assert headers["cache-control"] == "no-store"
    assert logged_paths(caplog.records) == [f"/u/{token[:6]}…"]
    assert token not in caplog.text


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("/rss.xml", "/rss.xml"),
        ("/", "/"),
        ("//", "/"),
        ("/topics/", "/topics/"),
        ("//topics//", "/topics/"),
        ("/a/./b/../c", "/a/c"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/.well-known/x", "/.well-known/x"),
        ("/..hidden", "/..hidden"),
    ],
)
def test_canonical_path(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical


@pytest.mark.parametrize(
    "date",
    [
        "Thu, 01 Jan 99999999999999999999 00:00:00 GMT",
        "Sat, 01 Jan 10000 00:00:00 GMT",
        "not a date",
        "Thu, 01 Jan 1970 00:00:00",  # no zone: not a valid HTTP date
    ],
)
def test_bad_if_modified_since_is_ignored(web: Running, date: str) -> None:
    status, _, body = exchange(web, get("/rss.xml", f"If-Modified-Since: {date}"))
    assert status == 200
    assert b"<rss" in body


@pytest.mark.parametrize(
    "date",
    [
        "Fri, 31 Dec 9999 23:59:59 GMT",  # IMF-fixdate
        "Fri Dec 31 23:59:59 9999",  # asctime: no zone, and GMT all the same
    ],
)
def test_a_good_if_modified_since_as_imf_fixdate_or_asctime_answers_304(
    web: Running, date: str
) -> None:
    status, _, body = exchange(web, get("/rss.xml", f"If-Modified-Since: {date}"))
    assert (status, body) == (304, b"")


def test_an_old_asctime_date_gets_the_file(web: Running) -> None:
    status, _, body = exchange(web, get("/rss.xml", "If-Modified-Since: Sun Nov  6 08:49:37 1994"))
    assert status == 200 and b"<rss" in body


def test_redirects_never_name_the_request_host(web: Running) -> None:
    status, headers, _ = exchange(web, get("/subscribe/?from=feed", host="evil.example"))
    assert status == 307
    assert headers["location"] == "/subscribe?from=feed"
    status, _, _ = exchange(web, get("/no-such-page/", host="evil.example"))
    assert status == 404


def test_a_client_that_hangs_up_mid_body_is_no_server_error(
    web: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with connect(web) as sock:
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=a"
        )
    assert logged_paths(caplog.records) == ["/subscribe"]
    [access] = [r for r in caplog.records if getattr(r, "path", None) == "/subscribe"]
    assert getattr(access, "status", None) == 499  # nginx's "client closed request"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_405_says_which_methods_are_allowed(web: Running) -> None:
    status, headers, _ = exchange(
        web,
        b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status == 405
    assert {m.strip() for m in headers["allow"].split(",")} == {"GET", "HEAD"}
