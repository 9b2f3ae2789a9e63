"""The daily job inside the service: poll a folder, and when a digest lands ingest, build, send.

Each pass calls `newsletter.daily.run_daily`, the same job as `newsletter run`, so sending goes
through the same delivery ledger: a restart (or a second pass over an unchanged folder) never
mails anyone twice. Only the newest stored digest is ever
sent, so pointing the service at a folder of old digests does not mail the whole archive.
A file is taken only once its size and time stopped changing between two polls (or it is
older than one poll), so a digest still being copied in is not read half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..daily import run_daily
from ..delivery.pipeline import Sender
from ..digest.ingest import IngestReport, find_digest_files
from ..errors import NewsletterError
from ..store import Clock, Store
from .logs import log_event


@dataclass
class WatchPass:
    """What one poll did."""

    ingested: dict[str, str] = field(default_factory=dict)  # file -> added/updated/unchanged/failed
    built: bool = False
    sent_date: dt.date | None = None
    delivery: str | None = None  # the delivery report's summary line
    error: str | None = None


class DigestWatcher:
    """Polls `folder` every `interval` seconds in the background of the service."""

    def __init__(
        self,
        *,
        settings: Settings,
        folder: Path,
        sender_factory: Callable[[], Sender],
        interval: float = 5.0,
        retry_after: float = 300.0,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.sender_factory = sender_factory
        self.retry_after = retry_after
        self.folder = Path(folder)
        self.interval = interval
        self.clock = clock
        self.on_change: Callable[[], None] | None = None
        self.passes: list[WatchPass] = []  # the last few, newest last (for /healthz and tests)
        self._done: dict[str, tuple[int, int]] = {}  # file -> (mtime_ns, size) when taken
        self._seen: dict[str, tuple[int, int]] = {}  # file -> (mtime_ns, size) at the last poll
        self._first = True
        self._retry_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def ready_files(self) -> list[Path]:
        """Files new or changed since they were taken, and no longer being written."""
        ready: list[Path] = []
        now = time.time()
        seen: dict[str, tuple[int, int]] = {}
        for path in find_digest_files([self.folder]) if self.folder.is_dir() else []:
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_mtime_ns, st.st_size)
            name = str(path)
            seen[name] = key
            if self._done.get(name) == key:
                continue
            settled = self._seen.get(name) == key or now - st.st_mtime >= self.interval
            if settled:
                ready.append(path)
        self._seen = seen
        return ready

    def run_once(self) -> WatchPass | None:
        """One poll: ingest what is ready; build and send if anything changed (or on the first poll)."""
        ready = self.ready_files()
        retry = self._retry_at is not None and time.monotonic() >= self._retry_at
        if not ready and not self._first and not retry:
            return None
        result = WatchPass()

        def ingested(report: IngestReport) -> None:
            for f in report.files:
                result.ingested[f.path] = f.status
                if f.status != "failed":
                    st = os.stat(f.path)
                    self._done[f.path] = (st.st_mtime_ns, st.st_size)
            for warning in report.warnings:
                log_event("watch.warning", level=logging.WARNING, notice=str(warning))

        try:
            with Store(self.settings.db, clock=self.clock) as store:
                # Runs in the watcher's worker thread, so it gets an event loop of its own.
                daily = asyncio.run(
                    run_daily(
                        store,
                        settings=self.settings,
                        digests=ready,
                        sender_factory=self.sender_factory,
                        clock=self.clock,
                        only_if_changed=not (self._first or retry) or store.latest_date() is None,
                        on_ingested=ingested,
                    )
                )
            result.built = daily.build is not None
            if daily.delivery is not None:
                result.sent_date = daily.delivery.date
                result.delivery = daily.delivery.summary()
                # Deferred mail and a stopped run are retried later, not only on the next digest.
                ok = daily.delivery.ok
                self._retry_at = None if ok else time.monotonic() + self.retry_after
        except (NewsletterError, OSError) as exc:
            result.error = str(exc)
            self._retry_at = time.monotonic() + self.retry_after
            log_event("watch.failed", level=logging.ERROR, error=str(exc)[:300])
        self._first = False
        if result.ingested or result.built or result.sent_date:
            log_event(
                "watch.pass",
                ingested=result.ingested,
                built=result.built,
                sent=result.sent_date.isoformat() if result.sent_date else None,
                delivery=result.delivery,
            )
            if self.on_change is not None:
                self.on_change()
        self.passes = [*self.passes[-9:], result]
        return result

    def start(self) -> None:
        """Start polling in the background of the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="digest-watcher")

    async def _loop(self) -> None:
        while True:
            # Ingest, build and send are blocking; a thread keeps the service answering meanwhile.
            await asyncio.to_thread(self.run_once)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Stop polling (a pass in progress finishes its current message first)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
