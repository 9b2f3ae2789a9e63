"""The built site over real HTTP: content types, ETag and Last-Modified 304s, gzip, safe paths."""

from __future__ import annotations

import gzip
import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from newsletter.model import Filters
from newsletter.store import Store
from tests.web_server import Running, service, service_settings

IDENTITY = {"accept-encoding": "identity"}


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with service(tmp_path_factory.mktemp("static")) as running:
        yield running


@pytest.fixture
def client(web: Running) -> Iterator[httpx.Client]:
    with web.client() as c:
        yield c


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/rss.xml", "application/rss+xml; charset=utf-8"),
        ("/atom.xml", "application/atom+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        ("/digests.xml", "application/rss+xml; charset=utf-8"),
        ("/digests.atom", "application/atom+xml; charset=utf-8"),
        ("/topics/llm.xml", "application/rss+xml; charset=utf-8"),
        ("/topics/llm.atom", "application/atom+xml; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/2024-12-13.html", "text/html; charset=utf-8"),
        ("/2024-12-13", "text/html; charset=utf-8"),
    ],
)
def test_content_types(client: httpx.Client, web: Running, path: str, kind: str) -> None:
    response = client.get(path, headers=IDENTITY)
    assert response.status_code == 200
    assert response.headers["content-type"] == kind
    name = path.strip("/") or "index.html"
    if "." not in name:
        name += ".html"
    assert response.content == (web.settings.site_dir / name).read_bytes()
    assert response.headers["x-content-type-options"] == "nosniff"


def test_second_get_with_etag_is_304(client: httpx.Client) -> None:
    first = client.get("/rss.xml", headers=IDENTITY)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = client.get("/rss.xml", headers={**IDENTITY, "if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["last-modified"] == first.headers["last-modified"]
    assert "cache-control" in again.headers
    # A weak form, a list and the gzip variant's tag all name the same bytes.
    for value in (f"W/{etag}", f'"nope", {etag}', etag[:-1] + '-gzip"', "*"):
        assert client.get("/rss.xml", headers={"if-none-match": value}).status_code == 304
    assert client.get("/rss.xml", headers={"if-none-match": '"other"'}).status_code == 200


def test_etag_is_a_hash_of_the_bytes(client: httpx.Client, web: Running) -> None:
    # digests.xml holds the same bytes as rss.xml, so it has the same tag.
    a = client.get("/rss.xml", headers=IDENTITY).headers["etag"]
    b = client.get("/digests.xml", headers=IDENTITY).headers["etag"]
    c = client.get("/atom.xml", headers=IDENTITY).headers["etag"]
    assert a == b != c


def test_if_modified_since(client: httpx.Client) -> None:
    first = client.get("/atom.xml")
    stamp = first.headers["last-modified"]
    assert client.get("/atom.xml", headers={"if-modified-since": stamp}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get("/atom.xml", headers={"if-modified-since": old}).status_code == 200
    assert client.get("/atom.xml", headers={"if-modified-since": "garbage"}).status_code == 200
    # If-None-Match wins: a stale tag gets the body even when the date would allow a 304.
    both = {"if-modified-since": stamp, "if-none-match": '"stale"'}
    assert client.get("/atom.xml", headers=both).status_code == 200


def test_changed_file_gets_a_new_etag(tmp_path: Path) -> None:
    with service(tmp_path, digests=False) as web, web.client() as client:
        first = client.get("/feed.json", headers=IDENTITY)
        path = web.settings.site_dir / "feed.json"
        path.write_text(path.read_text(encoding="utf-8").replace("논문 1", "논문 one"), "utf-8")
        st = path.stat()
        os.utime(path, (st.st_atime, st.st_mtime + 5))
        second = client.get(
            "/feed.json", headers={**IDENTITY, "if-none-match": first.headers["etag"]}
        )
        assert second.status_code == 200
        assert second.headers["etag"] != first.headers["etag"]
        assert "논문 one" in second.text
        # Rewriting the same bytes (a rebuild) keeps the tag: readers still get 304.
        path.write_bytes(second.content)
        third = client.get("/feed.json", headers={"if-none-match": second.headers["etag"]})
        assert third.status_code == 304


def test_gzip(client: httpx.Client, web: Running) -> None:
    raw = (web.settings.site_dir / "rss.xml").read_bytes()
    response = client.get("/rss.xml", headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == raw  # httpx decodes; check the wire too
    with client.stream("GET", "/rss.xml", headers={"accept-encoding": "gzip"}) as streamed:
        wire = b"".join(streamed.iter_raw())
    assert len(wire) < len(raw) / 2
    assert gzip.decompress(wire) == raw
    assert int(streamed.headers["content-length"]) == len(wire)
    plain = client.get("/rss.xml", headers={"accept-encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["etag"] != response.headers["etag"]
    # A reader that cached the gzip variant revalidates with its tag.
    cached = client.get(
        "/rss.xml",
        headers={"accept-encoding": "gzip", "if-none-match": response.headers["etag"]},
    )
    assert cached.status_code == 304


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("gzip;q=0.5, br", True),
        ("x-gzip", True),
        ("*", True),
        ("*;q=0, gzip", True),  # named, gzip's own weight counts
        ("gzip;q=0.", False),
        ("gzip;q=0;x=1", False),
        ("GZIP; Q=0", False),
        ("gzip;q=nan", False),
        ("br, *;q=0", False),
        ("identity", False),
        ("", False),
    ],
)
def test_accept_encoding_weights(client: httpx.Client, accept: str, gzipped: bool) -> None:
    response = client.get("/rss.xml", headers={"accept-encoding": accept})
    assert response.status_code == 200
    assert ("content-encoding" in response.headers) is gzipped


def test_the_feed_list_is_opml(client: httpx.Client, web: Running) -> None:
    outlines = "".join(
        f'<outline type="rss" text="Topic {n}" xmlUrl="https://papers.example.com/t{n}.xml"/>'
        for n in range(10)
    )
    opml = f'<?xml version="1.0"?>\n<opml version="2.0"><body>{outlines}</body></opml>\n'
    (web.settings.site_dir / "feeds.opml").write_text(opml)  # as build writes it
    response = client.get("/feeds.opml", headers={"accept-encoding": "gzip"})
    assert response.headers["content-type"] == "text/x-opml; charset=utf-8"
    assert response.headers["content-encoding"] == "gzip"


def test_head_has_headers_but_no_body(client: httpx.Client) -> None:
    response = client.head("/rss.xml", headers=IDENTITY)
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 1000
    assert response.headers["etag"]


def test_public_feeds_are_for_shared_caches(client: httpx.Client) -> None:
    response = client.get("/rss.xml")
    assert response.headers["cache-control"].startswith("public")
    assert "x-robots-tag" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/nope.xml",
        "/.newsletter-build.json",
        "/feeds/",
        "/topics",
        "/feeds/ffffffffffffffffffffffffffffffff.xml",
    ],
)
def test_missing_or_outside_is_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Page not found" in response.text
    assert "SQLite" not in response.text


def raw_get(web: Running, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written: http.client sends the target without normalising it."""
    host, port = web.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers={"Accept-Encoding": "identity"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


OUTSIDE = "outside the site: never served"


@pytest.mark.parametrize(
    "path",
    [
        "/../outside.txt",
        "/./../outside.txt",
        "/..%2foutside.txt",
        "/%2e%2e/outside.txt",
        "/%2e%2e%2foutside.txt",
        "/%2E%2E/outside.txt",
        "/..\\outside.txt",
        "/%2e%2e%5coutside.txt",
        "/topics/../../outside.txt",
        "/topics/%2e%2e/%2e%2e/outside.txt",
        "/topics/..%2f..%2foutside.txt",
        "//../outside.txt",
        "/../service.db",
        "/topics/../../service.db",
        "/%2e%2e/service.db",
    ],
)
def test_raw_dot_dot_paths_serve_nothing_outside_the_site(web: Running, path: str) -> None:
    (web.settings.site_dir.parent / "outside.txt").write_text(OUTSIDE, encoding="utf-8")
    status, body = raw_get(web, path)
    assert status in (400, 404), (status, body[:200])
    assert OUTSIDE.encode() not in body
    assert b"SQLite format 3" not in body


def test_raw_get_reaches_the_site(web: Running) -> None:
    # The helper above really talks to the service: an ordinary path through it is served.
    status, body = raw_get(web, "/rss.xml")
    assert status == 200 and body == (web.settings.site_dir / "rss.xml").read_bytes()


def test_symlink_out_of_the_site_is_404(tmp_path: Path) -> None:
    with service(tmp_path, digests=False) as web, web.client() as client:
        secret = tmp_path / "secret.txt"
        secret.write_text("do not serve", encoding="utf-8")
        (web.settings.site_dir / "leak.txt").symlink_to(secret)
        assert client.get("/leak.txt").status_code == 404


def test_a_link_inside_the_site_never_reaches_private_feeds_or_dotfiles(tmp_path: Path) -> None:
    with service(tmp_path, digests=False) as web, web.client() as client:
        site = web.settings.site_dir
        (site / "feeds").mkdir()
        (site / "feeds" / "deadbeef.xml").write_text("<rss>private</rss>", encoding="utf-8")
        (site / ".env").write_text("SECRET=1", encoding="utf-8")
        (site / "pub").symlink_to(site / "feeds")
        (site / "dot.txt").symlink_to(site / ".env")
        (site / "ok.xml").symlink_to(site / "rss.xml")  # a link to a public file still works
        assert client.get("/pub/deadbeef.xml").status_code == 404
        assert client.get("/dot.txt").status_code == 404
        assert client.get("/ok.xml").status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_another_method_on_a_site_file_is_405_naming_get_and_head(
    client: httpx.Client, method: str
) -> None:
    answer = client.request(method, "/rss.xml")
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET, HEAD")
    assert client.request(method, "/no-such-page.html").status_code == 404


def test_a_missing_site_folder_serves_404_not_500(tmp_path: Path) -> None:
    with service(tmp_path, site=False) as web, web.client() as client:
        assert client.get("/rss.xml").status_code == 404
        assert client.get("/healthz").json()["site"] is False


def test_every_file_of_a_real_build(tmp_path: Path) -> None:
    from newsletter.publish.build import build_site

    def build(store: Store) -> None:
        store.add_subscriber("feedreader@example.com", filters=Filters(keywords=("LLM",)))
        settings = service_settings(tmp_path, port=1)
        build_site(store, settings=settings.replace(topics={"Agents": "agent; 에이전트"}))

    with service(tmp_path, site=False, setup=build) as web, web.client() as client:
        files = sorted(p for p in web.settings.site_dir.rglob("*") if p.is_file())
        served = [p for p in files if not p.name.startswith(".")]
        assert not any(p.parent.name == "feeds" for p in served)  # served by the service
        assert any(p.name.endswith(".gz") for p in served)
        expected = {
            "rss.xml": "application/rss+xml",
            "digests.xml": "application/rss+xml",
            "atom.xml": "application/atom+xml",
            "digests.atom": "application/atom+xml",
            "feed.json": "application/feed+json",
        }
        for path in served:
            rel = path.relative_to(web.settings.site_dir).as_posix()
            response = client.get(f"/{rel}", headers=IDENTITY)
            assert response.status_code == 200, rel
            assert response.content == path.read_bytes()
            kind = response.headers["content-type"]
            if rel in expected:
                assert kind == f"{expected[rel]}; charset=utf-8", rel
            elif rel.endswith(".atom"):
                assert kind.startswith("application/atom+xml"), rel
            elif rel == "sitemap.xml":
                assert kind.startswith("application/xml"), rel
            elif rel.endswith(".xml"):  # topic, archive and private feeds are RSS
                assert kind.startswith("application/rss+xml"), rel
            elif rel.endswith(".html"):
                assert kind == "text/html; charset=utf-8", rel
            again = client.get(f"/{rel}", headers={"if-none-match": response.headers["etag"]})
            assert again.status_code == 304, rel
            sibling = path.with_name(path.name + ".gz")
            if sibling.exists():  # sent as the build wrote it, not compressed again
                with client.stream("GET", f"/{rel}", headers={"accept-encoding": "gzip"}) as raw:
                    assert raw.headers["content-encoding"] == "gzip", rel
                    assert b"".join(raw.iter_raw()) == sibling.read_bytes(), rel
