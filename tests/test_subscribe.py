"""Subscribing: the OPML list, feeds.html (the subscribe page), WebSub hub links and `newsletter build --ping`."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, quote

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.store import Store

from .conftest import DIGESTS
from .sites import (
    BASE,
    build,
    head_of,
    make_settings,
    site_fixture,  # noqa: F401 (a fixture)
    strict_parse,
)

ATOM = "{http://www.w3.org/2005/Atom}"
PUBLIC = [
    "rss.xml",
    "atom.xml",
    "feed.json",
    "digests.xml",
    "digests.atom",
    "weekly.xml",
    "weekly.atom",
    "weekly.json",
]


def test_opml_lists_every_public_feed_and_no_private_one(site: Path) -> None:
    root = ET.parse(site / "feeds.opml").getroot()
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "Daily Papers"
    urls = [o.get("xmlUrl") for o in root.iter("outline")]
    topics = sorted(p.relative_to(site).as_posix() for p in (site / "topics").iterdir())
    assert urls == [f"{BASE}/{name}" for name in PUBLIC] + [
        f"{BASE}/{t}"
        for t in sorted(topics, key=lambda t: (t.rsplit(".", 1)[0], t.endswith("atom")))
    ]
    assert all(o.get("type") == "rss" and o.get("text") for o in root.iter("outline"))
    assert not any("/feeds/" in (u or "") for u in urls)


def test_subscribe_page_gives_each_feed_its_address_and_reader_links(site: Path) -> None:
    page = site / "feeds.html"
    strict_parse(page.read_text(encoding="utf-8"))
    hrefs = head_of(page).hrefs
    for name in PUBLIC:
        url = f"{BASE}/{name}"
        assert name in hrefs
        assert f"https://feedly.com/i/subscription/feed/{quote(url, safe='')}" in hrefs
        assert f"https://www.inoreader.com/?add_feed={quote(url, safe='')}" in hrefs
    assert "feeds.opml" in hrefs
    # Every page links to it.
    assert "feeds.html" in head_of(site / "index.html").hrefs
    assert "../feeds.html" in head_of(site / "papers" / "2406.18629.html").hrefs


def test_public_feeds_name_the_hub_and_private_ones_do_not(
    loaded_store: Store, tmp_path: Path
) -> None:
    hub = "https://hub.example.net/"
    loaded_store.add_subscriber("reader@example.com")
    out = tmp_path / "site"
    build(loaded_store, out, make_settings(tmp_path, websub_hub=hub))
    for name in ("atom.xml", "digests.atom", "topics/reasoning.atom"):
        links = ET.parse(out / name).getroot().findall(f"{ATOM}link")
        assert [x.get("href") for x in links if x.get("rel") == "hub"] == [hub], name
    for name in (
        "rss.xml",
        "digests.xml",
        *(p.relative_to(out).as_posix() for p in (out / "feeds").glob("*.xml")),
    ):
        channel = ET.parse(out / name).getroot().find("channel")
        assert channel is not None
        hubs = [x.get("href") for x in channel.findall(f"{ATOM}link") if x.get("rel") == "hub"]
        assert hubs == ([] if name.startswith("feeds/") else [hub]), name


class Hub(BaseHTTPRequestHandler):
    """A WebSub hub on loopback that records publish pings, or refuses them."""

    pings: ClassVar[list[dict[str, list[str]]]] = []
    status = 204

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).pings.append(parse_qs(self.rfile.read(length).decode()))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[tuple[str, type[Hub]]]:
    handler = type("RecordingHub", (Hub,), {"pings": [], "status": 204})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()


def test_build_ping_tells_the_hub_which_public_feeds_changed(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path, hub: tuple[str, type[Hub]]
) -> None:
    url, handler = hub
    env = {**cli_env, "NEWSLETTER_WEBSUB_HUB": url}
    assert runner.invoke(main, ["ingest", str(DIGESTS[0])], env=env).exit_code == 0
    args = ["build", "--out", str(tmp_path / "out"), "--base-url", BASE, "--ping"]
    first = runner.invoke(main, args, env=env)
    assert first.exit_code == 0, first.output
    pinged = [p["hub.url"][0] for p in handler.pings]
    assert all(p["hub.mode"] == ["publish"] for p in handler.pings)
    assert set(pinged) >= {f"{BASE}/rss.xml", f"{BASE}/atom.xml", f"{BASE}/digests.atom"}
    assert not any("/feeds/" in p or "/archive/" in p or p.endswith(".json") for p in pinged)
    assert f"pinged {url}: {len(pinged)} changed feeds" in first.stdout
    handler.pings.clear()
    again = runner.invoke(main, args, env=env)
    assert again.exit_code == 0 and handler.pings == []  # nothing changed, nothing to tell


def test_build_ping_says_in_one_line_when_the_hub_refuses_or_is_missing(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path, hub: tuple[str, type[Hub]]
) -> None:
    url, handler = hub
    handler.status = 500
    assert runner.invoke(main, ["ingest", str(DIGESTS[0])], env=cli_env).exit_code == 0
    args = ["build", "--out", str(tmp_path / "out"), "--base-url", BASE, "--ping"]
    missing = runner.invoke(main, args, env=cli_env)
    assert missing.exit_code == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("error: --ping needs a hub")
    refused = runner.invoke(main, args, env={**cli_env, "NEWSLETTER_WEBSUB_HUB": url})
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.stderr.strip().splitlines() == [
        f"error: WebSub hub {url} refused {BASE}/atom.xml: HTTP 500"
    ]
