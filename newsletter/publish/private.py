"""Private feeds: one subscriber's papers of the feed window as RSS, assembled from cached entries.

`newsletter serve` answers `/feeds/<token>.xml` with these; `build` writes none (a file per
subscriber was gigabytes with realistic, all-different profiles). Work follows the content:
each paper's `<item>` is rendered once per window and kept as bytes keyed by its content
(`EntryCache`); a subscriber's feed is a selection over the window's prepared digests and a
join of those bytes. Bytes are those of `paper_feeds` for the same papers (`rss_frame`,
`rss_entry`), so a private feed reads like every public one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from ..audience.match import PreparedDigest, select_papers
from ..config import Settings
from ..model import Digest, Filters
from ..store import Store
from .feeds import (
    FeedInfo,
    FeedItem,
    day_start,
    feed_item,
    first_ranks,
    item_order,
    name_id,
    rss_entry,
    rss_frame,
    xml_text,
)
from .topics import topic_categories, topics_from

# Stands in for a feed's own URL in cached frames; each subscriber's URL replaces it.
_SELF_PLACEHOLDER = "https://private-feed.invalid/self.xml"
_ENTRY_CACHE_BYTES = 64 * 1024 * 1024  # rendered <item>s kept across windows
_SELECTION_CACHE_BYTES = 32 * 1024 * 1024  # recent subscribers' selections, as counted below
_SELECTION_OVERHEAD = 512  # bytes of dict entry, Filters, tuples and list per cached selection


@dataclass(frozen=True, slots=True)
class PrivateFeed:
    """A private feed as served: its RSS bytes and a strong ETag value (a hash of the bytes)."""

    body: bytes
    etag: str
    entries: int  # how many papers it holds
    left_out: int  # papers selected but past the byte budget


class EntryCache:
    """Rendered `<item>` bytes keyed by the entry's content (bounded, thread-safe, LRU).

    The key holds the paper's data, its day and times: a paper re-ingested with new text
    is a new key, and a new window reuses every entry whose content did not change.
    """

    def __init__(self, *, limit: int = _ENTRY_CACHE_BYTES) -> None:
        self._items: OrderedDict[tuple[FeedItem, str], bytes] = OrderedDict()
        self._bytes = 0
        self._limit = limit
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def entry(self, item: FeedItem, *, author: str) -> bytes:
        """The `<item>` bytes of `item` (rendered on the first request only)."""
        key = (item, author)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        data = rss_entry(item, author=author)  # outside the lock: other threads keep going
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self._limit and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
        return data


@dataclass(frozen=True, slots=True)
class _Entry:
    order: tuple[int, tuple[bool, int, str, str]]
    updated: dt.datetime
    data: bytes


class PrivateFeeds:
    """Every subscriber's private feed over one feed window (the newest `feed_days` digests).

    Made once per window (`load_private_feeds`); `feed()` is called from worker threads.
    """

    def __init__(
        self,
        window: Sequence[Digest],
        *,
        settings: Settings,
        first_seen: Mapping[str, dt.date],
        first_below: Mapping[str, int],
        fingerprint: str,
        entries: EntryCache | None = None,
    ) -> None:
        self.fingerprint = fingerprint  # of the stored digests this window was made from
        self.budget = settings.private_feed_bytes
        self._root = settings.base_url.rstrip("/")
        self._template_dir = settings.template_dir
        self._first_seen = first_seen
        self._first_below = first_below
        self._cache = entries if entries is not None else EntryCache()
        # Oldest first: a paper listed on several selected days shows its newest day's data.
        self._days = [PreparedDigest(d) for d in sorted(window, key=lambda d: d.date)]
        # Papers voted below each paper that day: its entry time (feeds.entry_time).
        self._below = [
            {p.arxiv_id: len(day.papers) - 1 - n for n, p in enumerate(day.papers)}
            for day in self._days
        ]
        topics = topics_from(settings.topics)
        self._categories = topic_categories(self._days, topics)
        title = xml_text(settings.site_title)
        self.info = FeedInfo(
            title=f"{title} (내 구독)",
            description=f"{title}: 구독 설정(키워드, 최소 추천 수)에 맞는 논문",
            home_url=f"{self._root}/",
            id=name_id(settings.list_id, "private"),
            updated=max((d.date for d in window), default=dt.date(1970, 1, 1)),
            author=title,
        )
        self._entries: dict[tuple[str, dt.date], _Entry] = {}
        self._frames: dict[dt.datetime, tuple[bytes, bytes]] = {}
        self._selections: OrderedDict[Filters, tuple[list[_Entry], int]] = OrderedDict()
        self._selection_bytes = 0
        self._lock = threading.Lock()

    def _entry(self, day: int, arxiv_id: str) -> _Entry:
        date = self._days[day].digest.date
        found = self._entries.get((arxiv_id, date))
        if found is None:
            paper = next(p for p in self._days[day].papers if p.arxiv_id == arxiv_id)
            item = feed_item(
                paper,
                shown=date,
                below=self._below[day][arxiv_id],
                first_seen=self._first_seen,
                first_below=self._first_below,
                base_url=self._root,
                categories=self._categories,
                template_dir=self._template_dir,
            )
            data = self._cache.entry(item, author=self.info.author)
            found = _Entry(order=item_order(item), updated=item.updated, data=data)
            self._entries[(arxiv_id, date)] = found  # a race renders twice, harmlessly
        return found

    def _frame(self, updated: dt.datetime) -> tuple[bytes, bytes]:
        frame = self._frames.get(updated)
        if frame is None:
            frame = rss_frame(self.info, updated=updated, feed_url=_SELF_PLACEHOLDER)
            self._frames[updated] = frame
        return frame

    def _select(self, filters: Filters) -> tuple[list[_Entry], int]:
        """The entries `filters` select, newest first, within the budget; and how many were cut."""
        with self._lock:
            cached = self._selections.get(filters)
            if cached is not None:
                self._selections.move_to_end(filters)
                return cached
        shown: dict[str, int] = {}
        for n, day in enumerate(self._days):
            # Nothing about these keywords is remembered by the window's days: a subscriber
            # may change them at will, and the days live as long as the window (a month of
            # them, in a long-running service).
            for pick in select_papers(day, filters, cache=False):
                shown[pick.paper.arxiv_id] = n
        picked = sorted((self._entry(n, a) for a, n in shown.items()), key=lambda e: e.order)
        # The frame's length does not depend on its dates (fixed-width RFC 822 stamps).
        head, tail = self._frame(day_start(self.info.updated))
        room = self.budget - len(head) - len(tail)
        kept: list[_Entry] = []
        for entry in picked:
            if len(entry.data) > room:
                break  # newest first: stop at the first that does not fit
            room -= len(entry.data)
            kept.append(entry)
        result = (kept, len(picked) - len(kept))
        with self._lock:
            if filters not in self._selections:
                self._selections[filters] = result
                self._selection_bytes += _selection_cost(filters, kept)
            while self._selection_bytes > _SELECTION_CACHE_BYTES and self._selections:
                dropped, (entries, _) = self._selections.popitem(last=False)
                self._selection_bytes -= _selection_cost(dropped, entries)
        return result

    def feed(self, filters: Filters, *, feed_url: str) -> PrivateFeed:
        """The RSS feed of `filters` published at `feed_url` (its self link)."""
        kept, left_out = self._select(filters)
        latest = max([day_start(self.info.updated), *(e.updated for e in kept)])
        head, tail = self._frame(latest)
        link = escape(feed_url, {'"': "&quot;"}).encode()
        # The self link counts against the budget too: a longer URL than the placeholder's
        # pushes out entries, so the whole document stays within it.
        while (
            kept
            and len(head)
            + len(tail)
            + len(link)
            - len(_SELF_PLACEHOLDER)
            + sum(len(e.data) for e in kept)
            > self.budget
        ):
            kept = kept[:-1]
            left_out += 1
        body = b"".join(
            [head.replace(_SELF_PLACEHOLDER.encode(), link), *(e.data for e in kept), tail]
        )
        return PrivateFeed(
            body=body,
            etag=hashlib.sha256(body).hexdigest()[:32],
            entries=len(kept),
            left_out=left_out,
        )


def _selection_cost(filters: Filters, entries: list[_Entry]) -> int:
    """What keeping one selection costs: its key's text and a reference per entry (the entries'
    bytes belong to the window and the EntryCache), never nothing, so an empty one counts too."""
    text = sum(len(word) for word in (*filters.keywords, *filters.exclude))
    return _SELECTION_OVERHEAD + text + 8 * len(entries)


def window_fingerprint(store: Store) -> str:
    """A hash of every stored digest's content: it changes whenever a private feed may."""
    hashes = sorted((d.isoformat(), h) for d, h in store.digest_hashes().items())
    return hashlib.sha256(repr(hashes).encode()).hexdigest()


def load_private_feeds(
    store: Store, *, settings: Settings, entries: EntryCache | None = None
) -> PrivateFeeds | None:
    """The private feeds of the stored feed window, or None when no digest is stored."""
    fingerprint = window_fingerprint(store)
    window = store.digests(store.digest_dates(limit=settings.feed_days))
    if not window:
        return None
    ids = {p.arxiv_id for d in window for p in d.papers}
    first_seen = store.first_seen(ids)
    return PrivateFeeds(
        window,
        settings=settings,
        first_seen=first_seen,
        first_below=first_ranks(ids, first_seen=first_seen, loaded=window, load=store.digests),
        fingerprint=fingerprint,
        entries=entries,
    )
