"""What every handler of the service shares: settings, the store, the key, pages and limits."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from ..audience.match import PreparedDigest
from ..config import Settings
from ..delivery.pipeline import Sender
from ..errors import StoreBusy
from ..model import Subscriber
from ..store import Clock, Store
from ..store.pool import StorePool
from ..tokens import read_subscriber_token, token_id
from .pages import Pages
from .security import CsrfGuard, Network, RateLimiter

_DIGEST_TTL = 30.0  # seconds the newest digest is reused before the store is asked again
# A full quick check reads every page (seconds for a big ledger): /healthz runs one at most this often.
_INTEGRITY_EVERY = 3600.0

STORE_THREADS = 16  # reads running at once (each on its own connection); more wait their turn
# Writes running at once, apart from the reads: SQLite lets one connection write at a time, so
# more would only wait on each other, and writes stuck behind another process's lock must
# never hold the threads that reads, pages and /healthz need.
WRITE_THREADS = 2

P = ParamSpec("P")
T = TypeVar("T")


def _newest(store: Store) -> PreparedDigest | None:
    latest = store.latest_date()
    digest = None if latest is None else store.digest(latest)
    return None if digest is None else PreparedDigest(digest)


def _token_holder(store: Store, *, token: str, purpose: str, key: bytes) -> Subscriber | None:
    """The subscriber a link token was made for, in this store (tokens.read_subscriber_token)."""
    return read_subscriber_token(token, purpose=purpose, key=key, find=store.subscriber)


@dataclass
class Service:
    """The service's state, one per app (`request.app.state.service`)."""

    settings: Settings
    stores: StorePool
    key: bytes
    pages: Pages
    csrf: CsrfGuard
    clock: Clock
    sender_factory: Callable[[], Sender]
    per_address: RateLimiter
    per_client: RateLimiter
    confirm_days: int
    proxies: tuple[Network, ...] = ()  # trusted_proxies: whose X-Forwarded-For is believed
    # The site folder was there (at start or since): its going away is then a fault.
    site_seen: bool = False
    _newest: tuple[float, PreparedDigest | None] | None = field(default=None, repr=False)
    _purged_at: float = field(default=float("-inf"), repr=False)
    _checked_at: float = field(default=float("-inf"), repr=False)
    _threads: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(STORE_THREADS), repr=False
    )
    _writers: anyio.Semaphore = field(
        default_factory=lambda: anyio.Semaphore(WRITE_THREADS), repr=False
    )
    _write_threads: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(WRITE_THREADS), repr=False
    )

    async def db(
        self, fn: Callable[Concatenate[Store, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(store, *args, **kwargs)`, which only reads, in a worker thread, as datasette's
        `execute_fn` does. SQLite calls block: off the event loop they slow the one request
        that waits, never the whole service. Writes go through `write`."""
        return await anyio.to_thread.run_sync(
            lambda: self.stores.run(fn, *args, **kwargs), limiter=self._threads
        )

    async def write(
        self, fn: Callable[Concatenate[Store, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(store, *args, **kwargs)`, which writes, in one of WRITE_THREADS worker threads.

        Writes queue for their threads and, while another process holds the lock, for it: the
        busy timeout bounds both together, so each request answers within it (StoreBusy, a
        503, with nothing written). Reads never wait behind them.
        """
        timeout = self.stores.busy_timeout
        start = time.monotonic()
        with anyio.move_on_after(timeout) as waited:
            await self._writers.acquire()
        if waited.cancelled_caught:
            raise StoreBusy(f"{self.settings.db}: writes waited past the busy timeout")
        try:
            left = max(0.0, timeout - (time.monotonic() - start))
            # Never cancelled once in its thread: a write that committed is answered as such.
            return await anyio.to_thread.run_sync(
                lambda: self.stores.run_within(left, fn, *args, **kwargs),
                limiter=self._write_threads,
            )
        finally:
            self._writers.release()

    def link(self, path: str) -> str:
        """An absolute link on the public base URL."""
        return self.settings.base_url.rstrip("/") + path

    def path(self, path: str) -> str:
        """A link from one of the service's pages: `path` under base_url's path (BasePath)."""
        return self.pages.root + path

    async def subscriber_for(self, token: str, *, purpose: str) -> Subscriber | None:
        """The subscriber a signed token names, or None for a forged, foreign or stale token."""
        if token_id(token) is None:  # malformed: no trip to the store
            return None
        return await self.db(_token_holder, token=token, purpose=purpose, key=self.key)

    async def newest_digest(self) -> PreparedDigest | None:
        """Today's digest (the newest stored), prepared for selection, reused for a few seconds."""
        now = time.monotonic()
        if self._newest is not None and now - self._newest[0] < _DIGEST_TTL:
            return self._newest[1]
        # Read again every few seconds to pick up re-ingested digests; in between, preview
        # after preview reuses one digest's normalised text.
        digest = await self.db(_newest)
        self._newest = (now, digest)
        return digest

    def forget_newest(self) -> None:
        """Drop the cached digest (after the daily job stored a new one)."""
        self._newest = None

    def expired(self, created_at: dt.datetime) -> bool:
        """Whether a sign-up made at `created_at` is too old to confirm."""
        return self.clock() - created_at > dt.timedelta(days=self.confirm_days)

    async def purge_stale_signups(self) -> None:
        """Forget unconfirmed sign-ups past their link's life, at most once an hour."""
        now = time.monotonic()
        if now - self._purged_at >= 3600:
            self._purged_at = now
            before = self.clock() - dt.timedelta(days=self.confirm_days + 1)
            await self.write(Store.purge_signups, before=before)

    def probe_database(self) -> None:
        """StoreError unless the database can be written now (and, hourly, has no damaged page).

        Runs on its own connection, so it can wait in a thread without sharing a transaction.
        """
        self.stores.check_file()
        with Store(self.settings.db, clock=self.clock, create=False) as store:
            store.check_writable(timeout=0.25)  # busy is healthy: do not keep the answer waiting
            now = time.monotonic()
            if now - self._checked_at >= _INTEGRITY_EVERY:
                store.check_integrity(history=True)
                self._checked_at = now

    def site_gone(self, *, present: bool) -> bool:
        """Whether the site folder, once there, is gone now that it is `present` or not (its
        pages and feeds are all 404)."""
        self.site_seen = self.site_seen or present
        return self.site_seen and not present

    def not_found(self, request: Request) -> Response:
        """The 404 page: the same for a missing page and a bad token, so nothing is revealed."""
        return self.pages.render(request, "web/404.html", status=404)


def service(request: Request) -> Service:
    """The service state of the app serving `request`."""
    found: Service = request.app.state.service
    return found
