"""RSS 2.0, Atom 1.0 and JSON Feed 1.1 documents from stored digests (pure and deterministic).

Choices every feed shares, so that rebuilding from the same store gives the same bytes:

- A digest date D is published at D 00:00:00 UTC (`day_start`); a paper's entry is stamped
  that many seconds later as it has papers below it in votes that day (`entry_time`), so the
  times in one feed never repeat (the W3C validator warns on equal Atom `updated` values) and
  readers that sort by time keep the vote order. Nothing reads the clock: a feed's
  `updated`/`lastBuildDate` is its newest entry's time.
- One entry per paper. A paper listed on several days is one entry, dated the day it first
  appeared with its place in that day's votes (published: the time it went out with, which a
  later listing leaves alone, `first_ranks`), showing the newest day's data (updated).
- Entry ids are `https://arxiv.org/abs/<id>`: derived from the arXiv id only, never from the
  title or from our base URL, so they stay the same when the site moves; it is also the
  paper's permalink (RSS `guid isPermaLink="true"`). Daily entries and the feeds themselves use
  name-based UUIDs (`urn:uuid:`) seeded with the list id, for the same reason.
- Text goes through `xml_text`, which drops characters XML 1.0 forbids; HTML content is built
  by an autoescaping template and stored escaped (Atom `type="html"`, never CDATA).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from feedgen.feed import FeedGenerator
from jinja2 import Template
from markupsafe import Markup

from ..audience.match import PreparedDigest, by_votes, paper_order, select_papers
from ..links import arxiv_url, day_url, paper_url, web_url
from ..model import Digest, Filters, Paper, Section
from ..templates import get_template
from .feedtitles import TitleEntry, TitleFeed
from .history import FeedHistory, HistoryExtension
from .websub import HubExtension

FeedKind = Literal["rss", "atom", "json"]
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
LANGUAGE = "ko"
GENERATOR = "newsletter"

# XML 1.0 forbids C0 controls but tab/LF/CR, surrogates and U+FFFE/U+FFFF; HTML5 also reports
# C1 controls and the other noncharacters as parse errors. Drop them all from every output.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
# The noncharacters beyond the BMP take a slow character class: look for them only in text that
# has characters beyond the BMP at all (a quick test).
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_ILLEGAL_ASTRAL = re.compile(
    "["
    + "".join(f"{chr(p * 0x10000 + 0xFFFE)}{chr(p * 0x10000 + 0xFFFF)}" for p in range(1, 17))
    + "]"
)


def _has_illegal(text: str) -> bool:
    return bool(_ILLEGAL.search(text) or (_ASTRAL.search(text) and _ILLEGAL_ASTRAL.search(text)))


def xml_text(text: str) -> str:
    """`text` without the characters XML 1.0 and HTML5 do not allow."""
    text = _ILLEGAL.sub("", text)
    return _ILLEGAL_ASTRAL.sub("", text) if _ASTRAL.search(text) else text


def clean_paper(paper: Paper) -> Paper:
    """`paper` with illegal characters removed from its text and unsafe URLs replaced."""
    link = web_url(paper.url) or arxiv_url(paper.arxiv_id)
    image = web_url(paper.image)
    texts = (paper.title, paper.display_title, *paper.authors)
    texts += tuple(s.name + s.text for s in paper.sections)
    # Every illegal character is unprintable, and isprintable() is far quicker than a regex.
    clean = all(t.isprintable() or not _has_illegal(t) for t in texts)
    if clean and link == paper.url and image == paper.image:
        return paper
    return replace(
        paper,
        display_title=xml_text(paper.display_title),
        title=xml_text(paper.title),
        url=link,
        image=image,
        is_thumbnail=paper.is_thumbnail and image is not None,
        authors=tuple(xml_text(a) for a in paper.authors),
        sections=tuple(Section(xml_text(s.name), xml_text(s.text)) for s in paper.sections),
    )


def day_start(date: dt.date) -> dt.datetime:
    """The timestamp a digest date is published at: 00:00:00 UTC that day."""
    return dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)


def entry_time(date: dt.date, *, below: int) -> dt.datetime:
    """When a paper's entry is stamped: its day's start plus one second per paper voted below it."""
    return day_start(date) + dt.timedelta(seconds=below)


def name_id(list_id: str, *parts: str) -> str:
    """A permanent `urn:uuid:` for a feed or daily entry, independent of the base URL."""
    return uuid.uuid5(uuid.NAMESPACE_URL, ":".join(("newsletter", list_id, *parts))).urn


def paper_anchor(paper: Paper) -> str:
    """The fragment id of a paper's card on its day page."""
    return f"paper-{paper.arxiv_id}"


def _digest(day: Digest | PreparedDigest) -> Digest:
    return day.digest if isinstance(day, PreparedDigest) else day


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One paper entry: the newest data for the paper, dated the day it first appeared."""

    paper: Paper
    published: dt.datetime  # on the first day the paper appeared in any digest
    updated: dt.datetime  # on the day whose data `paper` holds
    content_html: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """What a feed says about itself."""

    title: str
    description: str
    home_url: str  # the HTML page the feed belongs to
    id: str  # permanent Atom feed id
    updated: dt.date  # newest digest of the feed (its entries may be stamped later that day)
    author: str  # used for the feed, and for entries without authors
    history: FeedHistory | None = None  # RFC 5005 links and flags (RSS and Atom only)
    hub: str = ""  # WebSub hub named with rel="hub" (RSS and Atom); empty: none


def paper_html(
    paper: Paper, *, page_url: str, paper_url: str, template_dir: Path | None = None
) -> str:
    """A paper's feed content: thumbnail, authors, votes, summary sections, links (escaped)."""
    # Jinja hands out a new template object when the file changes, so an edited template is
    # never answered from the cache (serve --watch builds in one long-lived process).
    template = get_template("site/feed_paper.html", user_dir=template_dir)
    return _render_paper(template, paper, page_url, paper_url)


@functools.lru_cache(maxsize=4096)
def _render_paper(template: Template, paper: Paper, page_url: str, paper_url: str) -> str:
    return template.render(paper=paper, page_url=page_url, paper_url=paper_url)


def shown_days(
    digests: Sequence[Digest | PreparedDigest], *, filters: Filters | None = None
) -> dict[str, tuple[Paper, dt.date, int]]:
    """Each paper's entry source: (its newest selected data, that day, papers voted below it)."""
    newest: dict[str, tuple[Paper, dt.date, int]] = {}
    # Pass PreparedDigests (text normalised once) when selecting for many filter sets.
    for day in sorted(digests, key=lambda d: _digest(d).date):
        digest = _digest(day)
        if filters is None:
            papers: Iterable[Paper] = digest.papers
        else:
            papers = (pick.paper for pick in select_papers(day, filters))
        # Ranked among all of the day's papers, so a paper has the same time in every feed.
        ranked = by_votes(digest.papers)
        below = {p.arxiv_id: len(ranked) - 1 - n for n, p in enumerate(ranked)}
        for paper in papers:
            newest[paper.arxiv_id] = (paper, digest.date, below[paper.arxiv_id])
    return newest


def first_ranks(
    arxiv_ids: Iterable[str],
    *,
    first_seen: Mapping[str, dt.date],
    loaded: Iterable[Digest],
    load: Callable[[list[dt.date]], Sequence[Digest]],
) -> dict[str, int]:
    """Papers voted below each paper on the day it first appeared: what stamped its entry's
    published time when it first went out, so a later listing leaves that time alone.

    `loaded`: digests at hand; the other first days are read with `load` (store.digests).
    """
    days = {d.date: d for d in loaded}
    wanted = {first_seen[i] for i in arxiv_ids if i in first_seen}
    days.update((d.date, d) for d in load(sorted(wanted - days.keys())))
    ranks: dict[str, int] = {}
    for date in wanted & days.keys():
        ranked = by_votes(days[date].papers)
        for n, paper in enumerate(ranked):
            if first_seen.get(paper.arxiv_id) == date:
                ranks[paper.arxiv_id] = len(ranked) - 1 - n
    return ranks


def feed_item(
    paper: Paper,
    *,
    shown: dt.date,
    below: int,
    first_seen: Mapping[str, dt.date],
    first_below: Mapping[str, int],
    base_url: str,
    categories: Mapping[str, tuple[str, ...]] | None = None,
    template_dir: Path | None = None,
) -> FeedItem:
    """The entry for `paper` as listed on `shown` (`below` papers under it in votes that day);
    `first_below` holds the same count for the day it first appeared (`first_ranks`)."""
    clean = clean_paper(paper)
    page_url = f"{day_url(base_url, shown)}#{paper_anchor(clean)}"
    first = min(first_seen.get(paper.arxiv_id, shown), shown)
    first_rank = below if first == shown else first_below.get(paper.arxiv_id, below)
    return FeedItem(
        paper=clean,
        published=entry_time(first, below=first_rank),
        updated=entry_time(shown, below=below),
        content_html=paper_html(
            clean,
            page_url=page_url,
            paper_url=paper_url(base_url, clean.arxiv_id),
            template_dir=template_dir,
        ),
        categories=(categories or {}).get(paper.arxiv_id, ()),
    )


def item_order(item: FeedItem) -> tuple[int, tuple[bool, int, str, str]]:
    """The order of paper entries: newest first appearance first, then `paper_order`."""
    return (-item.published.toordinal(), paper_order(item.paper))


def paper_items(
    digests: Sequence[Digest | PreparedDigest],
    *,
    first_seen: Mapping[str, dt.date],
    first_below: Mapping[str, int],
    base_url: str,
    filters: Filters | None = None,
    categories: Mapping[str, tuple[str, ...]] | None = None,
    template_dir: Path | None = None,
) -> list[FeedItem]:
    """One item per paper of `digests` (or per paper `filters` selects), newest first.

    Items are ordered by the day they first appeared (newest first), then by votes. Each shows
    the newest day's data and links to that day's archive page.
    """
    items = [
        feed_item(
            paper,
            shown=shown,
            below=below,
            first_seen=first_seen,
            first_below=first_below,
            base_url=base_url,
            categories=categories,
            template_dir=template_dir,
        )
        for paper, shown, below in shown_days(digests, filters=filters).values()
    ]
    items.sort(key=item_order)
    return items


def _generator(info: FeedInfo, *, updated: dt.datetime) -> Any:
    """A FeedGenerator with the feed's metadata; the links depend on the format (`_serialize`)."""
    fg = FeedGenerator()
    fg.id(info.id)
    fg.title(xml_text(info.title))
    fg.description(xml_text(info.description))
    fg.language(LANGUAGE)
    fg.generator(GENERATOR)
    fg.author({"name": xml_text(info.author)})
    fg.updated(updated)
    fg.lastBuildDate(updated)
    fg.pubDate(updated)
    # Titles holding markup-like text (`<think>`) are declared or defused (feedtitles.py).
    fg.register_extension("titles", TitleFeed, TitleEntry, atom=True, rss=True)
    if info.history is not None:
        fg.register_extension("history", HistoryExtension, atom=True, rss=True)
        fg.history.history = info.history
        fg.history.root = info.home_url.rstrip("/")
    if info.hub:
        fg.register_extension("websub", HubExtension, atom=True, rss=True)
        fg.websub.hub = info.hub
    return fg


def _serialize(fg: Any, *, kind: Literal["rss", "atom"], feed_url: str, home_url: str) -> bytes:
    """The RSS or Atom bytes of `fg`, whose self link is `feed_url`."""
    feed_type = "application/rss+xml" if kind == "rss" else "application/atom+xml"
    # feedgen uses the last link as the RSS channel link: self first, then the page.
    links = [
        {"href": feed_url, "rel": "self", "type": feed_type},
        {"href": home_url, "rel": "alternate", "type": "text/html"},
    ]
    fg.link(links, replace=True)
    if hasattr(fg, "history"):
        fg.history.kind = kind  # archive links name the document of the same format
    data: bytes = fg.rss_str(pretty=True) if kind == "rss" else fg.atom_str(pretty=True)
    return data


def _write_all(
    fg: Any, *, info: FeedInfo, urls: Mapping[FeedKind, str], json_feed: bytes | None = None
) -> dict[FeedKind, bytes]:
    out: dict[FeedKind, bytes] = {}
    for kind, url in urls.items():
        if kind == "json":
            if json_feed is None:
                raise ValueError("this feed has no JSON Feed form")
            out[kind] = json_feed
        else:
            out[kind] = _serialize(fg, kind=kind, feed_url=url, home_url=info.home_url)
    return out


def _paper_generator(info: FeedInfo, *, updated: dt.datetime) -> Any:
    fg = _generator(info, updated=updated)
    fg.load_extension("dc", atom=False, rss=True)
    fg.load_extension("media", atom=True, rss=True)
    return fg


def _add_paper(fg: Any, item: FeedItem, *, author: str) -> None:
    paper = item.paper
    fe = fg.add_entry(order="append")
    fe.guid(arxiv_url(paper.arxiv_id), permalink=True)
    fe.title(paper.display_title or paper.arxiv_id)
    fe.link(href=paper.url, rel="alternate", type="text/html")
    fe.content(item.content_html, type="html")
    fe.published(item.published)
    fe.updated(item.updated)
    # RSS <author> must be an e-mail address, so there the names go to dc:creator (feedgen
    # leaves RSS authors without an e-mail out); Atom wants an author on every entry.
    names = [a for a in paper.authors if a.strip()] or [author]
    fe.dc.dc_creator(", ".join(names))
    fe.author([{"name": name} for name in names])
    for category in item.categories:
        fe.category(term=xml_text(category))
    if paper.is_thumbnail and paper.image:
        fe.media.thumbnail(url=paper.image, group=None)


def feed_updated(info: FeedInfo, items: Iterable[FeedItem]) -> dt.datetime:
    """A paper feed's `updated`/`lastBuildDate`: its newest entry's time (or its day's start)."""
    return max([day_start(info.updated), *(item.updated for item in items)])


def paper_feeds(
    items: Sequence[FeedItem], *, info: FeedInfo, urls: Mapping[FeedKind, str]
) -> dict[FeedKind, bytes]:
    """The same paper entries as RSS, Atom and/or JSON Feed bytes, in the order given.

    `urls` maps each wanted format to where its file is published (its self link). RSS and
    Atom share one set of feedgen entries, which is most of the work.
    """
    fg = _paper_generator(info, updated=feed_updated(info, items))
    for item in items:
        _add_paper(fg, item, author=info.author)
    json_feed = None
    if "json" in urls:
        json_feed = _json_feed(items, info=info, feed_url=urls["json"])
    return _write_all(fg, info=info, urls=urls, json_feed=json_feed)


_RSS_END = b"  </channel>\n"  # what follows the last <item> of a pretty-printed RSS feed


def rss_frame(info: FeedInfo, *, updated: dt.datetime, feed_url: str) -> tuple[bytes, bytes]:
    """The RSS bytes `paper_feeds` writes around its entries: (before the first, after the last).

    `head + b"".join(rss_entry(i) for i in items) + tail` is byte for byte the RSS document of
    `paper_feeds(items, ...)` when `updated` is `feed_updated(info, items)`.
    """
    data = _serialize(
        _paper_generator(info, updated=updated),
        kind="rss",
        feed_url=feed_url,
        home_url=info.home_url,
    )
    at = data.rindex(_RSS_END)
    return data[:at], data[at:]


def rss_entry(item: FeedItem, *, author: str) -> bytes:
    """One paper's `<item>` element, indented and as `paper_feeds` writes it inside a feed."""
    info = FeedInfo("-", "-", "https://x.invalid/", "urn:x", dt.date(2000, 1, 1), author)
    fg = _paper_generator(info, updated=item.updated)
    _add_paper(fg, item, author=author)
    data = _serialize(fg, kind="rss", feed_url=info.home_url, home_url=info.home_url)
    start = data.index(b"    <item>")
    return data[start : data.rindex(_RSS_END)]


def digest_feeds(
    digests: Sequence[Digest],
    *,
    info: FeedInfo,
    urls: Mapping[FeedKind, str],
    base_url: str,
    list_id: str,
    template_dir: Path | None = None,
) -> dict[FeedKind, bytes]:
    """Feeds with one entry per day (newest first) listing that day's papers in full."""
    root = base_url.rstrip("/")
    fg = _generator(info, updated=day_start(info.updated))
    template = get_template("site/feed_digest.html", user_dir=template_dir)
    for digest in sorted(digests, key=lambda d: d.date, reverse=True):
        page_url = day_url(root, digest.date)
        papers = [clean_paper(p) for p in by_votes(digest.papers)]
        bodies = [
            Markup(
                paper_html(
                    p,
                    page_url=f"{page_url}#{paper_anchor(p)}",
                    paper_url=paper_url(root, p.arxiv_id),
                    template_dir=template_dir,
                )
            )
            for p in papers
        ]
        fe = fg.add_entry(order="append")
        fe.id(name_id(list_id, "digest", digest.date.isoformat()))
        fe.title(f"{xml_text(info.author)} {digest.date.isoformat()} ({len(papers)}편)")
        fe.link(href=page_url, rel="alternate", type="text/html")
        fe.content(template.render(entries=list(zip(papers, bodies, strict=True))), type="html")
        stamp = day_start(digest.date)
        fe.published(stamp)
        fe.updated(stamp)
        fe.author({"name": xml_text(info.author)})
    return _write_all(fg, info=info, urls=urls)


def _rfc3339(stamp: dt.datetime) -> str:
    return stamp.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _json_feed(items: Sequence[FeedItem], *, info: FeedInfo, feed_url: str) -> bytes:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1)."""
    entries: list[dict[str, Any]] = []
    for item in items:
        paper = item.paper
        names = [a for a in paper.authors if a.strip()] or [info.author]
        entry: dict[str, Any] = {
            "id": arxiv_url(paper.arxiv_id),
            "url": paper.url,
            "title": paper.display_title or paper.arxiv_id,
            "content_html": item.content_html,
            "date_published": _rfc3339(item.published),
            "date_modified": _rfc3339(item.updated),
            "authors": [{"name": name} for name in names],
        }
        if paper.is_thumbnail and paper.image:
            entry["image"] = paper.image
        if item.categories:
            entry["tags"] = [xml_text(c) for c in item.categories]
        entries.append(entry)
    return json_feed(info, feed_url=feed_url, items=entries)


def json_feed(info: FeedInfo, *, feed_url: str, items: Sequence[Mapping[str, Any]]) -> bytes:
    """JSON Feed 1.1 bytes: `items` under the feed's title, home page, description and author."""
    feed = {
        "version": JSON_FEED_VERSION,
        "title": xml_text(info.title),
        "home_page_url": info.home_url,
        "feed_url": feed_url,
        "description": xml_text(info.description),
        "language": LANGUAGE,
        "authors": [{"name": xml_text(info.author)}],
        "items": list(items),
    }
    # Compact: only then does json use its C encoder, and readers do not care about layout.
    return (json.dumps(feed, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
