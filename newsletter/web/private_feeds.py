"""GET /feeds/<token>.xml: a subscriber's private feed, assembled on request.

The token is the one emails link (`tokens.feed_token`: 128 bits of HMAC over the subscriber
id and address, hex; for subscribers from before tokens held the address, the older token over
the id alone answers too). It does not carry the id, so the service keeps an index from token
to id, computed in a worker thread and extended with the ids added since (one indexed query
when a token is not found). The subscriber is read from the store on every request and the
token checked against that row again: after an unsubscribe, a bounce, a deletion or a
database replaced under the service, the next request answers 404. The feed is assembled from
entries cached per window (publish/private.py), in a worker thread; its gzip form is kept by
ETag (a bounded cache), so a reader that fetches an unchanged feed again costs no compression.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import re
import threading
import time
from collections import OrderedDict

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..model import Filters, Subscriber
from ..publish.private import (
    EntryCache,
    PrivateFeed,
    PrivateFeeds,
    load_private_feeds,
    window_fingerprint,
)
from ..store import Store
from ..tokens import feed_token, legacy_feed_token
from .service import service
from .static import FEED_MAX_AGE, accepts_gzip, etag_matches

_TOKEN = re.compile(r"[0-9a-f]{32}")
_WINDOW_TTL = 30.0  # seconds a window is used before the store's digests are compared again
_GZIP_MIN = 1024
_PACKED_BYTES = 32 * 1024 * 1024  # gzipped feeds kept, least recently used out
# Seconds between whole re-readings of the token index, for an unknown token: ids below the
# highest one read (a restored or replaced database) are not among "the ids added since".
_REINDEX_EVERY = 60.0


class PackedFeeds:
    """Gzipped feed bodies by ETag, at most `limit` bytes of them; safe across worker threads."""

    def __init__(self, limit: int = _PACKED_BYTES) -> None:
        self.limit = limit
        self.size = 0
        self._packed: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def gzip(self, etag: str, body: bytes) -> bytes:
        """`body` gzipped (the same bytes each time for one ETag)."""
        with self._lock:
            packed = self._packed.get(etag)
            if packed is not None:
                self._packed.move_to_end(etag)
                return packed
        packed = gzip.compress(body, compresslevel=6, mtime=0)  # outside the lock
        with self._lock:
            if etag not in self._packed and len(packed) <= self.limit:
                self._packed[etag] = packed
                self.size += len(packed)
                while self.size > self.limit:
                    self.size -= len(self._packed.popitem(last=False)[1])
        return packed


def _feed_tokens(subscriber_id: int, email: str, legacy: bool, *, key: bytes) -> list[str]:
    """Every token that names this subscriber's feed: the current one, and the older one for
    a subscriber from before tokens held the address."""
    current = feed_token(subscriber_id, email=email, key=key)
    return [current, legacy_feed_token(subscriber_id, key=key)] if legacy else [current]


def _names(token: str, subscriber: Subscriber, source: PrivateFeedSource) -> bool:
    """Whether `token` is `subscriber`'s: the index may predate a database replaced under
    the service, where the id it maps the token to is now someone else's."""
    legacy = subscriber.legacy_links
    return token in _feed_tokens(subscriber.id, subscriber.email, legacy, key=source.key)


def _new_tokens(store: Store, *, after: int, key: bytes) -> list[tuple[bytes, int]]:
    return [
        (bytes.fromhex(token), subscriber_id)
        for subscriber_id, email, legacy in store.subscriber_addresses(after=after)
        for token in _feed_tokens(subscriber_id, email, legacy, key=key)
    ]


class PrivateFeedSource:
    """The service's private feeds: the token index and the current window, both cached."""

    def __init__(self, *, settings: Settings, key: bytes) -> None:
        self.settings = settings
        self.key = key
        self.entries = EntryCache()  # outlives windows: a new day renders only new entries
        self.packed = PackedFeeds()
        self._ids: dict[bytes, int] = {}  # 16-byte tag -> subscriber id
        self._last_id = 0
        self._indexed_at = float("-inf")  # when the whole index was last read
        self._read_at = float("-inf")  # when the last read of new ids began
        self._index_lock = asyncio.Lock()
        self._window: tuple[float, PrivateFeeds | None] | None = None
        self._window_lock = asyncio.Lock()

    async def subscriber_id(self, request: Request, token: str) -> int | None:
        """The id of the subscriber whose feed token this is, or None."""
        if not _TOKEN.fullmatch(token):
            return None
        tag = bytes.fromhex(token)
        found = self._ids.get(tag)
        if found is not None:
            return found
        asked = time.monotonic()
        async with self._index_lock:  # one refresh at a time; the others find its result
            found = self._ids.get(tag)
            # A read begun after this request came covers every subscriber it could name:
            # a wave of unknown tokens (crawlers, stale links) costs one read, not one each.
            if found is None and self._read_at < asked:
                self._read_at = time.monotonic()
                await self._read_index(request, whole=False)
                found = self._ids.get(tag)
            if found is None and time.monotonic() - self._indexed_at >= _REINDEX_EVERY:
                await self._read_index(request, whole=True)
                found = self._ids.get(tag)
        return found

    async def _read_index(self, request: Request, *, whole: bool) -> None:
        """Add the ids above the highest read (or, `whole`, read every id again)."""
        after = 0 if whole else self._last_id
        added = await service(request).db(_new_tokens, after=after, key=self.key)
        if after == 0:
            self._ids = dict(added)  # also forgets deleted subscribers
            self._indexed_at = time.monotonic()
        else:
            self._ids.update(added)
        if added:
            self._last_id = added[-1][1]

    def forget(self) -> None:
        """Compare the window with the store on the next request (a digest was stored)."""
        self._window = None

    async def window(self, request: Request) -> PrivateFeeds | None:
        """The private feeds of the current feed window, or None without digests."""
        now = time.monotonic()
        current = self._window
        if current is not None and now - current[0] < _WINDOW_TTL:
            return current[1]
        async with self._window_lock:
            if self._window is not None and self._window is not current:
                return self._window[1]  # made while this request waited
            svc = service(request)
            feeds = current[1] if current is not None else None
            if feeds is None or await svc.db(window_fingerprint) != feeds.fingerprint:
                feeds = await svc.db(
                    load_private_feeds, settings=self.settings, entries=self.entries
                )
            self._window = (time.monotonic(), feeds)
            return feeds


def _render(
    feeds: PrivateFeeds,
    filters: Filters,
    *,
    url: str,
    packed: PackedFeeds | None,
    known: str | None,
) -> tuple[PrivateFeed, bytes | None, bool]:
    """The feed; its body to send (None when the client's If-None-Match matches) and if gzipped.

    `packed`: where gzipped bodies are kept, when the client accepts gzip.
    """
    feed = feeds.feed(filters, feed_url=url)
    if known is not None and etag_matches(known, feed.etag):
        return feed, None, False
    if packed is not None and len(feed.body) >= _GZIP_MIN:
        # The ETag is a hash of the body (which names its own URL): same ETag, same bytes.
        return feed, packed.gzip(feed.etag, feed.body), True
    return feed, feed.body, False


async def private_feed(request: Request) -> Response:
    """GET /feeds/TOKEN.xml: the subscriber's papers of the feed window as RSS (404 if inactive)."""
    svc = service(request)
    source: PrivateFeedSource = request.app.state.private_feeds
    name: str = request.path_params["name"]
    token = name.removesuffix(".xml")
    subscriber_id = None if token == name else await source.subscriber_id(request, token)
    subscriber = None if subscriber_id is None else await svc.db(Store.subscriber, subscriber_id)
    if subscriber is None or subscriber.status != "active" or not _names(token, subscriber, source):
        return svc.not_found(request)
    feeds = await source.window(request)
    if feeds is None:
        return svc.not_found(request)
    url = svc.link(f"/feeds/{token}.xml")
    packed = accepts_gzip(request.headers.get("accept-encoding", ""))
    feed, body, gzipped = await anyio.to_thread.run_sync(
        functools.partial(
            _render,
            feeds,
            subscriber.filters,
            url=url,
            packed=source.packed if packed else None,
            known=request.headers.get("if-none-match"),
        )
    )
    etag = f'"{feed.etag}-gzip"' if packed and len(feed.body) >= _GZIP_MIN else f'"{feed.etag}"'
    headers = {
        "etag": etag,
        "cache-control": f"private, max-age={FEED_MAX_AGE}",
        "x-robots-tag": "noindex",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "vary": "Accept-Encoding",
    }
    if body is None:
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["content-encoding"] = "gzip"
    return Response(body, headers=headers, media_type="application/rss+xml; charset=utf-8")
