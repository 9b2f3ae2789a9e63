"""Feeds as readers see them: feedparser, the W3C validator's rules, JSON Feed 1.1, golden files."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
import pytest

from newsletter.audience.match import by_votes, select_papers
from newsletter.errors import ConfigError
from newsletter.model import Filters
from newsletter.publish.private import load_private_feeds
from newsletter.publish.topics import topic_slug, topics_from
from newsletter.store import Store

from .sites import (
    BASE,
    GOLDEN,
    HOSTILE,
    MARKUP_TITLE,
    NS,
    RFC822,
    build,
    digest_text,
    make_settings,
    parsed,
    save,
    small_site_fixture,  # noqa: F401 (a fixture)
)

PAPER_FEEDS = ("rss.xml", "atom.xml", "feed.json")
XML_FEEDS = ("rss.xml", "atom.xml", "digests.xml", "digests.atom")


@pytest.fixture
def site(loaded_store: Store, tmp_path: Path) -> Path:
    """The site built from the three real digests, with two topics and one subscriber."""
    loaded_store.add_subscriber("reader@example.com", filters=Filters(keywords=("reasoning",)))
    out = tmp_path / "site"
    build(loaded_store, out, make_settings(tmp_path))
    return out


def expected_order(store: Store) -> list[str]:
    """Newest first-appearance day first, then votes (unknown last), then title."""
    digests = store.digests(store.digest_dates(limit=30))
    first = store.first_seen()
    newest = {}
    for digest in sorted(digests, key=lambda d: d.date):
        for p in digest.papers:
            newest[p.arxiv_id] = p
    return [
        p.arxiv_id
        for p in sorted(
            newest.values(),
            key=lambda p: (
                -first[p.arxiv_id].toordinal(),
                p.votes is None,
                -(p.votes or 0),
                p.display_title.casefold(),
            ),
        )
    ]


def test_feeds_parse_cleanly_with_every_paper_in_order(site: Path, loaded_store: Store) -> None:
    order = expected_order(loaded_store)
    assert len(order) == 9 + 18 + 27
    titles = {
        p.arxiv_id: p.display_title
        for d in loaded_store.digests(loaded_store.digest_dates())
        for p in d.papers
    }
    for name in ("rss.xml", "atom.xml"):
        feed = parsed(site, name)
        assert [e.id for e in feed.entries] == [f"https://arxiv.org/abs/{a}" for a in order]
        assert [e.title for e in feed.entries] == [titles[a] for a in order]  # Korean/TeX intact
        assert all(
            e.link == f"https://arxiv.org/abs/{a}" for e, a in zip(feed.entries, order, strict=True)
        )
        assert feed.version == ("rss20" if name == "rss.xml" else "atom10")
        assert feed.feed.language == "ko"
    # Atom as the RFC 4287 schema has it: a namespaced <feed xml:lang="ko">, and each of its
    # entries with exactly one id, title, updated and an HTML content, in the Atom namespace.
    atom = "{http://www.w3.org/2005/Atom}"
    root = ET.parse(site / "atom.xml").getroot()
    assert root.tag == f"{atom}feed"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "ko"
    assert root.findtext(f"{atom}title") == "Daily Papers"
    entries = root.findall(f"{atom}entry")
    assert [e.findtext(f"{atom}id") for e in entries] == [
        f"https://arxiv.org/abs/{a}" for a in order
    ]
    for entry in entries:
        for child in ("id", "title", "updated", "content"):
            assert len(entry.findall(f"{atom}{child}")) == 1, child
        content = entry.find(f"{atom}content")
        assert content is not None and content.get("type") == "html"
    data = json.loads((site / "feed.json").read_text(encoding="utf-8"))
    assert [i["id"] for i in data["items"]] == [f"https://arxiv.org/abs/{a}" for a in order]
    assert data["items"][0]["title"] == titles[order[0]]
    assert "LLM×MapReduce" in " ".join(i["title"] for i in data["items"])
    daily = parsed(site, "digests.xml")
    assert [e.link for e in daily.entries] == [
        f"{BASE}/2024-12-13.html",
        f"{BASE}/2024-10-16.html",
        f"{BASE}/2024-06-28.html",
    ]
    assert parsed(site, "digests.atom").entries[0].title == "Daily Papers 2024-12-13 (27편)"


def test_rss_follows_the_validator_rules(site: Path) -> None:
    root = ET.parse(site / "rss.xml").getroot()
    channel = root.find("channel")
    assert channel is not None
    self_link = channel.find("atom:link", NS)
    assert self_link is not None
    assert self_link.attrib == {
        "href": f"{BASE}/rss.xml",
        "rel": "self",
        "type": "application/rss+xml",
    }
    assert channel.findtext("link") == f"{BASE}/"
    # The newest entry's time (the top paper of the newest day), never the build time.
    assert channel.findtext("lastBuildDate") == "Fri, 13 Dec 2024 00:00:26 +0000"
    items = channel.findall("item")
    for item in items:
        assert RFC822.match(item.findtext("pubDate") or ""), item.findtext("pubDate")
        assert item.find("author") is None  # RSS <author> must be an e-mail address
        assert item.findtext("dc:creator", namespaces=NS)
        guid = item.find("guid")
        assert guid is not None and guid.get("isPermaLink") == "true"
        assert guid.text == item.findtext("link")
        assert item.find("dc:date", NS) is None  # pubDate and dc:date together is a warning
    avatar = next(i for i in items if i.findtext("link", "").endswith("2410.10816"))
    assert avatar.find("media:thumbnail", NS) is None  # an uploader avatar is not a thumbnail
    thumb = items[0].find("media:thumbnail", NS)
    assert thumb is not None and thumb.get("url", "").startswith(
        "https://cdn-thumbnails.huggingface.co/"
    )
    raw = (site / "rss.xml").read_text(encoding="utf-8")
    assert "CDATA" not in raw


def test_atom_follows_the_validator_rules(site: Path) -> None:
    root = ET.parse(site / "atom.xml").getroot()
    atom = "{http://www.w3.org/2005/Atom}"
    assert root.findtext(f"{atom}id", "").startswith("urn:uuid:")
    assert root.findtext(f"{atom}updated") == "2024-12-13T00:00:26+00:00"
    links = {link.get("rel"): link for link in root.findall(f"{atom}link")}
    assert links["self"].get("href") == f"{BASE}/atom.xml"
    assert links["self"].get("type") == "application/atom+xml"
    ids = []
    for entry in root.findall(f"{atom}entry"):
        ids.append(entry.findtext(f"{atom}id"))
        assert urlsplit(entry.findtext(f"{atom}id", "")).scheme == "https"
        assert entry.findall(f"{atom}author/{atom}name"), "every entry needs an author"
        content = entry.find(f"{atom}content")
        assert content is not None and content.get("type") == "html"
        assert "<h3>" in (content.text or "")  # escaped HTML, decoded once by the parser
        for stamp in ("published", "updated"):
            dt.datetime.fromisoformat(entry.findtext(f"{atom}{stamp}", ""))
    assert len(ids) == len(set(ids))
    assert "CDATA" not in (site / "atom.xml").read_text(encoding="utf-8")
    # The validator warns when two entries of a feed share an updated value.
    for name in ("atom.xml", "digests.atom", "topics/reasoning.atom"):
        entries = ET.parse(site / name).getroot().iter(f"{atom}entry")
        stamps = [e.findtext(f"{atom}updated") for e in entries]
        assert len(stamps) == len(set(stamps)), name


def check_json_feed(data: dict[str, Any]) -> None:
    """The rules of JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/) that apply here."""
    top = {
        "version",
        "title",
        "home_page_url",
        "feed_url",
        "description",
        "user_comment",
        "next_url",
        "icon",
        "favicon",
        "authors",
        "language",
        "expired",
        "hubs",
        "items",
    }
    item_keys = {
        "id",
        "url",
        "external_url",
        "title",
        "content_html",
        "content_text",
        "summary",
        "image",
        "banner_image",
        "date_published",
        "date_modified",
        "authors",
        "tags",
        "language",
        "attachments",
    }
    assert data["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(data["title"], str) and data["title"]
    assert set(data) <= top | {k for k in data if k.startswith("_")}
    assert "author" not in data  # deprecated in 1.1
    for key in ("home_page_url", "feed_url"):
        assert urlsplit(data[key]).scheme in ("http", "https")
    for author in data.get("authors", []):
        assert isinstance(author, dict) and {"name", "url", "avatar"} & set(author)
    assert isinstance(data["items"], list)
    seen = set()
    for item in data["items"]:
        assert set(item) <= item_keys | {k for k in item if k.startswith("_")}
        assert isinstance(item["id"], str) and item["id"] and item["id"] not in seen
        seen.add(item["id"])
        assert "content_html" in item or "content_text" in item
        for key in ("url", "image"):
            if key in item:
                assert urlsplit(item[key]).scheme in ("http", "https")
        for key in ("date_published", "date_modified"):
            if key in item:
                assert re.fullmatch(
                    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", item[key]
                )
        for author in item.get("authors", []):
            assert isinstance(author, dict) and {"name", "url", "avatar"} & set(author)
        assert all(isinstance(t, str) for t in item.get("tags", []))


def test_json_feed_follows_version_1_1(site: Path, loaded_store: Store) -> None:
    data = json.loads((site / "feed.json").read_text(encoding="utf-8"))
    check_json_feed(data)
    assert data["feed_url"] == f"{BASE}/feed.json"
    first = data["items"][0]
    assert first["date_published"] == "2024-12-13T00:00:26Z"  # 26 papers below it that day
    assert first["image"].startswith("https://cdn-thumbnails.huggingface.co/")
    with pytest.raises(AssertionError):  # the checker itself rejects a broken feed
        check_json_feed({**data, "items": [{**first, "id": 5}]})


def test_topic_feeds_hold_matching_papers_and_tag_the_main_feed(
    site: Path, loaded_store: Store
) -> None:
    profile = Filters(keywords=("reasoning", "추론"))
    digests = loaded_store.digests(loaded_store.digest_dates())
    wanted = {pick.paper.arxiv_id for d in digests for pick in select_papers(d, profile)}
    assert wanted
    for name in ("topics/reasoning.xml", "topics/reasoning.atom"):
        feed = parsed(site, name)
        assert {e.id.rsplit("/", 1)[1] for e in feed.entries} == wanted
        assert feed.feed.title == "Daily Papers: Reasoning"
    hangul = topic_slug("에이전트")
    assert re.fullmatch(r"topic-[0-9a-f]{8}", hangul)
    assert (site / f"topics/{hangul}.xml").exists()
    main = parsed(site, "atom.xml")
    tagged = {
        e.id.rsplit("/", 1)[1]
        for e in main.entries
        if any(t.term == "Reasoning" for t in e.get("tags", []))
    }
    assert tagged == wanted


def test_topic_names_become_stable_distinct_slugs() -> None:
    assert topic_slug("Large Language Models") == "large-language-models"
    assert topic_slug("에이전트") == topic_slug("에이전트") != topic_slug("멀티모달")
    assert topic_slug("LLM 에이전트").startswith("llm-") and topic_slug("LLM 에이전트") != "llm"
    with pytest.raises(ConfigError, match="share the feed"):
        topics_from({"LLM": "llm", "llm": "language model"})
    with pytest.raises(ConfigError, match="no keywords"):
        topics_from({"Empty": " ; "})
    # 100 characters that NFKD spells as 400 letters: cut and hashed, still distinct.
    kcal, kcal_too = topic_slug("㎉" * 100), topic_slug("㎉" * 99 + "x")
    assert len(kcal) <= 89 and kcal.startswith("kcalkcal") and kcal != kcal_too


def test_hostile_text_is_escaped_in_every_feed(store: Store, tmp_path: Path) -> None:
    save(
        store,
        digest_text(
            "2024-12-14",
            [
                {
                    "id": "2412.99999",
                    "title": HOSTILE + " \x0b\x01end",
                    "authors": "Eve <img src=x onerror=alert(2)>, Mallory",
                    "new": "<b>bold</b> & </p><script>window.__pwned=1</script>",
                }
            ],
        ),
    )
    out = tmp_path / "site"
    build(store, out, make_settings(tmp_path, topics={"XSS": "script"}))
    for name in (*XML_FEEDS, "topics/xss.xml", "topics/xss.atom"):
        raw = (out / name).read_bytes()
        assert b"<script" not in raw and b"<img src=x" not in raw, name
        assert b"\x0b" not in raw and b"\x01" not in raw, name
        entry = parsed(out, name).entries[0]
        if not name.startswith("digests"):
            # RSS cannot declare a title's type: tag-like text is defused; Atom declares html.
            if name != "atom.xml" and name.endswith(".xml"):
                assert entry.title == '‹script›alert(1)‹/script› & "quotes" end'
            else:
                assert entry.title == '&lt;script&gt;alert(1)&lt;/script&gt; &amp; "quotes" end'
        content = entry.content[0].value if "content" in entry else entry.description
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in content
        assert "<script" not in content
    data = json.loads((out / "feed.json").read_text(encoding="utf-8"))
    item = data["items"][0]
    assert item["title"] == HOSTILE + " end"
    assert item["authors"][0]["name"] == "Eve <img src=x onerror=alert(2)>"
    assert "<script" not in item["content_html"] and "&lt;script&gt;" in item["content_html"]


GOLDEN_FILES = (
    "rss.xml",
    "atom.xml",
    "feed.json",
    "digests.xml",
    "digests.atom",
    "topics/reasoning.xml",
)


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_feed_matches_golden(small_site: Path, name: str, request: pytest.FixtureRequest) -> None:
    golden = GOLDEN / f"feeds-{name.replace('/', '-')}"
    got = (small_site / name).read_bytes()
    if name.endswith(".json"):  # written compact; kept indented here so a diff is readable
        got = json.dumps(json.loads(got), ensure_ascii=False, indent=1).encode() + b"\n"
    if request.config.getoption("--update-golden"):
        golden.write_bytes(got)
    assert got == golden.read_bytes()


# The W3C Feed Validation Service's rules for titles (feedvalidator/validators.py `nonhtml`):
# an end tag of an HTML element in RSS text is ContainsHTML; in an Atom text construct without a
# type, ContainsUndeclaredHTML; so is an HTML entity name left in the text.
_HTML_END_TAG = re.compile(r"</(\w+)>")
_HTML_TAGS = {"script", "b", "i", "p", "sub", "sup", "em", "a", "span", "div", "think"}
_ENTITY = re.compile(r"&(#?\w+)")


def _looks_like_html(text: str) -> bool:
    from html.entities import name2codepoint

    tags = [t.lower() for t in _HTML_END_TAG.findall(text)]
    entities = [e for e in _ENTITY.findall(text) if e in name2codepoint or not e.isalpha()]
    return bool(set(tags) & _HTML_TAGS or entities)


def test_titles_with_markup_like_text_follow_the_validator_rules(
    store: Store, tmp_path: Path
) -> None:
    save(
        store,
        digest_text(
            "2024-12-14",
            [
                {"id": "2412.99998", "title": MARKUP_TITLE, "votes": 9},
                {"id": "2412.99997", "title": "Thinking <b>fast</b> &amp; slow", "votes": 3},
            ],
        ),
    )
    out = tmp_path / "site"
    build(store, out, make_settings(tmp_path, site_title="Papers <i>daily</i> & co"))
    written = [
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.suffix in (".xml", ".atom")
    ]
    assert {"rss.xml", "atom.xml", "digests.xml", "digests.atom"} <= set(written)
    for name in written:
        root = ET.parse(out / name).getroot()
        if root.tag == "rss":
            titles = root.findall("channel/title") + root.findall("channel/item/title")
            for title in titles:
                assert not _looks_like_html(title.text or ""), (name, title.text)
        else:
            atom = "{http://www.w3.org/2005/Atom}"
            titles = root.findall(f"{atom}title") + root.findall(f"{atom}entry/{atom}title")
            titles += root.findall(f"{atom}subtitle")
            for title in titles:
                # Markup-like text in an Atom title is declared as HTML (and escaped).
                if any(c in (title.text or "") for c in "<>&"):
                    assert title.get("type") == "html", (name, title.text)
    rss = ET.parse(out / "rss.xml").getroot()
    shown = [t.text for t in rss.findall("channel/item/title")]
    assert shown == ["Retrieval ‹script›x‹/script› & ‹think›", "Thinking ‹b›fast‹/b› ＆amp; slow"]
    assert rss.findtext("channel/title") == "Papers ‹i›daily‹/i› & co"
    atom = "{http://www.w3.org/2005/Atom}"
    entries = ET.parse(out / "atom.xml").getroot().findall(f"{atom}entry")
    first = entries[0].find(f"{atom}title")
    assert first is not None and first.get("type") == "html"
    assert html.unescape(first.text or "") == MARKUP_TITLE
    assert parsed(out, "atom.xml").entries[0].title == html.escape(MARKUP_TITLE, quote=False)
    data = json.loads((out / "feed.json").read_text(encoding="utf-8"))
    assert data["items"][0]["title"] == MARKUP_TITLE  # JSON Feed titles are plain text


def published_times(out: Path) -> dict[str, dict[str, str]]:
    """Each paper entry's published time in the three feeds, by format and entry id."""
    items = json.loads((out / "feed.json").read_text(encoding="utf-8"))["items"]
    return {
        "atom": {e.id: e.published for e in parsed(out, "atom.xml").entries},
        "rss": {e.id: e.published for e in parsed(out, "rss.xml").entries},
        "json": {i["id"]: i["date_published"] for i in items},
    }


def private_published(store: Store, tmp_path: Path) -> dict[str, str]:
    feeds = load_private_feeds(store, settings=make_settings(tmp_path))
    assert feeds is not None
    body = feeds.feed(Filters(), feed_url=f"{BASE}/feeds/x.xml").body
    return {e.id: e.published for e in feedparser.parse(body).entries}


def test_a_paper_listed_again_keeps_the_published_time_it_went_out_with(
    loaded_store: Store, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    build(loaded_store, tmp_path / "before", settings)
    before = published_times(tmp_path / "before")
    private_before = private_published(loaded_store, tmp_path)
    # A paper from the middle of 2024-12-13's votes is listed again the next day, at the top.
    ranked = by_votes(loaded_store.digests([dt.date(2024, 12, 13)])[0].papers)
    again = ranked[len(ranked) // 2]
    save(
        loaded_store,
        digest_text(
            "2024-12-14",
            [
                {"id": again.arxiv_id, "title": again.title, "votes": 999},
                {"id": "2412.99001", "title": "A new paper", "votes": 3},
            ],
        ),
    )
    build(loaded_store, tmp_path / "after", settings)
    after = published_times(tmp_path / "after")
    entry = f"https://arxiv.org/abs/{again.arxiv_id}"
    for kind, times in before.items():
        assert after[kind][entry] == times[entry], kind
        assert {i: after[kind][i] for i in times} == times, kind  # nothing published moved
        assert len(set(after[kind].values())) == len(after[kind]), kind  # no two alike
    private_after = private_published(loaded_store, tmp_path)
    assert private_after[entry] == private_before[entry]
    assert len(set(private_after.values())) == len(private_after)
