"""Private feeds assembled on request: the same bytes as the public feed code, a byte budget,
entries rendered once per paper, and `serve` answering /feeds/<token>.xml over real HTTP."""

from __future__ import annotations

import gzip
import random
import string
import time
import tracemalloc
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import feedparser
import pytest

from newsletter.audience.match import PreparedDigest
from newsletter.model import Filters
from newsletter.publish import private
from newsletter.publish.feeds import first_ranks, paper_feeds, paper_items
from newsletter.publish.private import EntryCache, PrivateFeeds, load_private_feeds
from newsletter.publish.topics import topic_categories, topics_from
from newsletter.store import Store
from newsletter.tokens import legacy_feed_token
from newsletter.web import private_feeds as feed_routes
from newsletter.web.private_feeds import PackedFeeds
from tests.web_server import Running, service

from .sites import BASE, NS, RFC822, make_settings

READER = Filters(keywords=("LLM", "reasoning"), exclude=("survey",), min_votes=3)


def private_feeds(store: Store, tmp_path: Path, **changes: Any) -> PrivateFeeds:
    feeds = load_private_feeds(store, settings=make_settings(tmp_path, **changes))
    assert feeds is not None
    return feeds


def expected_rss(store: Store, tmp_path: Path, filters: Filters, *, url: str) -> bytes:
    """What the public feed code writes for the same papers (the build's old private feed)."""
    settings = make_settings(tmp_path)
    window = store.digests(store.digest_dates(limit=settings.feed_days))
    prepared = [PreparedDigest(d) for d in window]
    first_seen = store.first_seen()
    items = paper_items(
        prepared,
        first_seen=first_seen,
        first_below=first_ranks(
            {p.arxiv_id for d in window for p in d.papers},
            first_seen=first_seen,
            loaded=window,
            load=store.digests,
        ),
        base_url=BASE,
        filters=filters,
        categories=topic_categories(prepared, topics_from(settings.topics)),
    )
    feeds = private_feeds(store, tmp_path)
    return paper_feeds(items, info=feeds.info, urls={"rss": url})["rss"]


def test_a_private_feed_is_byte_identical_to_the_feed_code_and_valid(
    loaded_store: Store, tmp_path: Path
) -> None:
    url = f"{BASE}/feeds/{'ab' * 16}.xml"
    feed = private_feeds(loaded_store, tmp_path).feed(READER, feed_url=url)
    assert feed.body == expected_rss(loaded_store, tmp_path, READER, url=url)
    parsed = feedparser.parse(feed.body)
    assert not parsed.bozo and parsed.version == "rss20"
    assert len(parsed.entries) == feed.entries > 5 and feed.left_out == 0
    channel = ET.fromstring(feed.body).find("channel")
    assert channel is not None
    self_link = channel.find("atom:link", NS)
    assert self_link is not None and self_link.get("href") == url
    for item in channel.findall("item"):
        assert RFC822.match(item.findtext("pubDate") or "")
        guid = item.find("guid")
        assert guid is not None and guid.text == item.findtext("link")
    # Every paper, with topic categories: the whole document still matches.
    every = private_feeds(loaded_store, tmp_path).feed(Filters(), feed_url=url)
    assert every.body == expected_rss(loaded_store, tmp_path, Filters(), url=url)


def test_the_byte_budget_keeps_the_newest_entries_that_fit(
    loaded_store: Store, tmp_path: Path
) -> None:
    url = f"{BASE}/feeds/{'cd' * 16}.xml"
    whole = private_feeds(loaded_store, tmp_path).feed(Filters(), feed_url=url)
    budget = len(whole.body) // 3
    capped = private_feeds(loaded_store, tmp_path, private_feed_bytes=budget)
    feed = capped.feed(Filters(), feed_url=url)
    assert len(feed.body) <= budget
    full_ids = [e.id for e in feedparser.parse(whole.body).entries]
    ids = [e.id for e in feedparser.parse(feed.body).entries]
    assert 0 < len(ids) < len(full_ids) and ids == full_ids[: len(ids)]  # newest first kept
    assert feed.left_out == len(full_ids) - len(ids)
    # The next entry would not have fitted: the feed's bytes are the whole feed's up to it.
    starts = [n for n in range(len(whole.body)) if whole.body.startswith(b"    <item>", n)]
    cut = starts[len(ids)]
    next_item = whole.body[cut : starts[len(ids) + 1]]
    assert feed.body.endswith(whole.body[starts[len(ids) - 1] : cut] + b"  </channel>\n</rss>\n")
    assert len(feed.body) + len(next_item) > budget


def test_entries_are_rendered_once_per_paper_not_per_subscriber(
    loaded_store: Store, tmp_path: Path
) -> None:
    cache = EntryCache()
    feeds = load_private_feeds(loaded_store, settings=make_settings(tmp_path), entries=cache)
    assert feeds is not None
    papers = {
        p.arxiv_id for d in loaded_store.digests(loaded_store.digest_dates()) for p in d.papers
    }
    for n in range(40):
        feeds.feed(Filters(min_votes=n % 7), feed_url=f"{BASE}/feeds/{n:032x}.xml")
    assert len(cache) == len(papers)
    # A new window over the same digests renders nothing again.
    again = load_private_feeds(loaded_store, settings=make_settings(tmp_path), entries=cache)
    assert again is not None
    again.feed(Filters(), feed_url=f"{BASE}/feeds/{'0' * 32}.xml")
    assert len(cache) == len(papers)


def test_keywords_a_subscriber_tries_are_not_kept_by_the_window(
    loaded_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber who changes keywords again and again (the preferences page allows it)
    must not grow the service: no day of the window remembers them, and the selections kept
    are bounded in count too, empty ones included (they used to count as 0 bytes)."""
    limit = 256 * 1024
    monkeypatch.setattr(private, "_SELECTION_CACHE_BYTES", limit)
    feeds = private_feeds(loaded_store, tmp_path)
    url = f"{BASE}/feeds/{'ef' * 16}.xml"
    feeds.feed(READER, feed_url=url)  # first use: entries and frames made
    words = random.Random(7)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            tried = tuple("".join(words.choices(string.ascii_lowercase, k=100)) for _ in range(20))
            assert feeds.feed(Filters(keywords=tried), feed_url=url).entries == 0
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 2,000 x 20 keywords of 100 characters: 4 MB of text alone, more than 10 MB kept before.
    assert grown < 2 * limit + 1024 * 1024, grown


# --- over real HTTP ------------------------------------------------------------------------


@pytest.fixture
def web(tmp_path: Path) -> Any:
    with service(tmp_path) as running:
        yield running


def feed_url(web: Running, subscriber_id: int) -> str:
    return web.feed_url(subscriber_id)


def test_serve_answers_a_private_feed_with_strong_etag_and_304(web: Running) -> None:
    reader = web.store.add_subscriber("reader@example.com", filters=READER)
    path = feed_url(web, reader.id)
    with web.client() as client:
        response = client.get(path, headers={"accept-encoding": "identity"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/rss+xml; charset=utf-8"
        assert response.headers["cache-control"] == "private, max-age=300"
        assert response.headers["x-robots-tag"] == "noindex"
        etag = response.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        parsed = feedparser.parse(response.content)
        assert not parsed.bozo and len(parsed.entries) > 5
        selfs = [link.href for link in parsed.feed.links if link.rel == "self"]
        assert selfs == [web.url + path]
        again = client.get(path, headers={"if-none-match": etag, "accept-encoding": "identity"})
        assert again.status_code == 304 and again.content == b""
        packed = client.get(path, headers={"accept-encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.content == response.content  # httpx decodes it


def test_a_feed_fetched_again_is_gzipped_once_and_an_other_readers_is_not_confused(
    web: Running,
) -> None:
    first = web.store.add_subscriber("first@example.com", filters=READER)
    second = web.store.add_subscriber("second@example.com", filters=READER)  # same papers
    packed: PackedFeeds = web.app.state.private_feeds.packed
    raw: list[bytes] = []
    with web.client() as client:
        for reader in (first, second, first):
            path = feed_url(web, reader.id)
            response = client.get(path, headers={"accept-encoding": "gzip"})
            assert response.headers["content-encoding"] == "gzip"
            assert selves(response.content) == [web.url + path]  # each reader's own feed
            raw.append(response.content)
    assert raw[0] == raw[2] != raw[1]
    assert len(packed._packed) == 2  # the third request found the first's gzip


def test_gzipped_feeds_are_kept_within_their_byte_limit_newest_used_last_out() -> None:
    bodies = {f"etag{n}": bytes([n]) * 3000 + b"%d" % n for n in range(5)}
    size = len(gzip.compress(bodies["etag0"], mtime=0))
    packed = PackedFeeds(limit=3 * size + size // 2)
    for etag in ("etag0", "etag1", "etag2"):
        assert gzip.decompress(packed.gzip(etag, bodies[etag])) == bodies[etag]
    packed.gzip("etag0", bodies["etag0"])  # used again: now the newest
    packed.gzip("etag3", bodies["etag3"])  # over the limit: etag1, least recently used, goes
    assert list(packed._packed) == ["etag2", "etag0", "etag3"]
    assert packed.size == sum(len(v) for v in packed._packed.values()) <= packed.limit


def selves(document: bytes) -> list[str]:
    parsed = feedparser.parse(document)
    return [link.href for link in parsed.feed.links if link.rel == "self"]


def test_after_one_click_unsubscribe_the_feed_is_gone_at_once(web: Running) -> None:
    reader = web.store.add_subscriber("leaver@example.com")
    bounced = web.store.add_subscriber("bounced@example.com")
    with web.client() as client:
        assert client.get(feed_url(web, reader.id)).status_code == 200
        assert client.get(feed_url(web, bounced.id)).status_code == 200
        token = web.token(reader.id, "unsubscribe")
        posted = client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click")
        assert posted.status_code == 200
        assert client.get(feed_url(web, reader.id)).status_code == 404
        web.store.set_status(bounced.id, "bounced")
        assert client.get(feed_url(web, bounced.id)).status_code == 404


def test_unknown_forged_or_new_tokens(web: Running) -> None:
    with web.client() as client:
        for path in ("/feeds/" + "0" * 32 + ".xml", "/feeds/zz.xml", "/feeds/", "/feeds/x"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "Page not found" in response.text
        # A subscriber added after the service read its index is found all the same.
        late = web.store.add_subscriber("late@example.com")
        assert client.get(feed_url(web, late.id)).status_code == 200


def test_a_wave_of_unknown_tokens_costs_a_few_reads_not_one_each(
    web: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each miss read the database under one lock, one after another: 3 s for a 404 under load.
    reads = 0
    real = feed_routes._new_tokens

    def counted(store: Store, *, after: int, key: bytes) -> Any:
        nonlocal reads
        reads += 1
        time.sleep(0.02)  # a database busy with a send
        return real(store, after=after, key=key)

    monkeypatch.setattr(feed_routes, "_new_tokens", counted)
    tokens = [f"{random.getrandbits(128):032x}" for _ in range(60)]
    with web.client() as client, ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(lambda t: client.get(f"/feeds/{t}.xml").status_code, tokens))
        late = web.store.add_subscriber("after-the-wave@example.com")
        found = client.get(feed_url(web, late.id)).status_code
    assert statuses == [404] * 60
    assert reads <= 30  # about one per wave of waiting requests, not one per request (61)
    assert found == 200  # a new subscriber is still found by the next read


def test_a_subscriber_id_below_the_highest_read_is_found_on_a_later_reading(
    web: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_routes, "_REINDEX_EVERY", 0.5)
    with web.client() as client:
        high = web.store.add_subscriber("high@example.com")
        web.store.conn.execute("UPDATE subscribers SET id = 1000 WHERE id = ?", (high.id,))
        assert client.get(feed_url(web, 1000)).status_code == 200
        # As after restoring a backup: an active subscriber whose id is below the highest read.
        low = web.store.add_subscriber("low@example.com")
        web.store.conn.execute("UPDATE subscribers SET id = 500 WHERE id = ?", (low.id,))
        time.sleep(0.6)
        assert client.get(feed_url(web, 500)).status_code == 200
        assert client.get(feed_url(web, 1000)).status_code == 200


def test_a_feed_url_from_before_tokens_held_the_address_works_for_its_subscribers_only(
    web: Running,
) -> None:
    early = web.store.add_subscriber("early@example.com")
    with web.store.transaction() as conn:  # what migration m011 leaves for them
        conn.execute("UPDATE subscribers SET legacy_links = 1 WHERE id = ?", (early.id,))
    later = web.store.add_subscriber("later@example.com")
    with web.client() as client:
        assert (
            client.get(f"/feeds/{legacy_feed_token(early.id, key=web.key)}.xml").status_code == 200
        )
        assert client.get(feed_url(web, early.id)).status_code == 200
        assert (
            client.get(f"/feeds/{legacy_feed_token(later.id, key=web.key)}.xml").status_code == 404
        )
        assert client.get(feed_url(web, later.id)).status_code == 200


def test_a_feed_url_names_no_one_once_its_id_is_someone_elses(
    web: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database restored or replaced under the running service: the index it read still
    # maps the token to the id, which now is another person's.
    monkeypatch.setattr(feed_routes, "_REINDEX_EVERY", 0.0)
    reader = web.store.add_subscriber("first@example.com")
    theirs = feed_url(web, reader.id)
    with web.client() as client:
        assert client.get(theirs).status_code == 200
        with web.store.transaction() as conn:
            conn.execute(
                "UPDATE subscribers SET email = ?, email_key = ? WHERE id = ?",
                ("second@example.com", "second@example.com", reader.id),
            )
        assert client.get(theirs).status_code == 404
        assert client.get(feed_url(web, reader.id)).status_code == 200  # the new one's


def test_an_old_private_feed_file_is_never_served(web: Running) -> None:
    reader = web.store.add_subscriber("old@example.com")
    path = feed_url(web, reader.id)
    old = web.settings.site_dir / path.lstrip("/")
    old.parent.mkdir(exist_ok=True)
    old.write_text("<rss>stale</rss>", encoding="utf-8")
    web.store.set_status(reader.id, "unsubscribed")
    with web.client() as client:
        assert client.get(path).status_code == 404


def test_a_new_digest_shows_in_the_feed(web: Running, tmp_path: Path) -> None:
    from newsletter.digest.parse import parse_digest

    reader = web.store.add_subscriber("news@example.com")
    with web.client() as client:
        before = feedparser.parse(client.get(feed_url(web, reader.id)).content)
        text = "## Daily Papers (2024-12-20)\n\n### [Brand New](https://arxiv.org/abs/2412.77777)\nVote: 9\n"
        web.store.save_digests([(parse_digest(text).digest, "new.md")])
        web.app.state.private_feeds.forget()  # what the digest watcher does after storing
        after = feedparser.parse(client.get(feed_url(web, reader.id)).content)
    assert after.entries[0].id == "https://arxiv.org/abs/2412.77777"
    assert len(after.entries) == len(before.entries) + 1
