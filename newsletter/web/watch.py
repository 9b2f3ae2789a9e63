"""The daily job inside the service: poll a folder, and when a digest lands ingest, build, send.

Each pass calls `newsletter.daily.run_daily`, the same job as `newsletter run`, so sending goes
through the same delivery ledger: a restart (or a second pass over an unchanged folder) never
mails anyone twice. Only the newest stored digest is ever sent, so pointing the service at a
folder of old digests does not mail the whole archive. A file is taken only once its size and
time stopped changing between two polls (or it is older than one poll), so a digest still being
copied in is not read half-written.

A pass that fails, whatever the exception, is logged as one line and retried with a growing
delay (`interval`, doubled per failure, at most `retry_after`); polling never stops. Files that
were being ingested when a pass failed are retried one per pass, so one bad file cannot hold
back the digests that arrive after it. `health()` reports the last failure until the work it
interrupted has succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..daily import DailyReport, run_daily
from ..delivery.pipeline import Sender
from ..digest.ingest import IngestReport, find_digest_files
from ..errors import Interrupted, NewsletterError
from ..store import Clock, Store
from ..text import shown_path
from .logs import log_event

_FileKey = tuple[int, int]  # (mtime_ns, size): a file changed when this does


@dataclass
class WatchPass:
    """What one poll did."""

    ingested: dict[str, str] = field(default_factory=dict)  # file -> added/updated/unchanged/failed
    built: bool = False
    sent_date: dt.date | None = None
    delivery: str | None = None  # the delivery report's summary line
    weekly: str | None = None  # the weekly edition's, when one was due: "2025-W09: sent 3, ..."
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WatchFailure:
    """The last failed pass: what went wrong and when (the service's clock)."""

    error: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class _Suspect:
    """A file that was being ingested when a pass failed: retried alone, later each time."""

    key: _FileKey
    attempts: int
    retry_at: float  # time.monotonic()


def _describe(exc: Exception) -> str:
    """One line for a log or /healthz: our errors say what to fix; anything else names its type."""
    text = str(exc) if isinstance(exc, NewsletterError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]


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
        check_file: Callable[[], None] | None = None,
    ) -> None:
        """`check_file`: raises when the database is not the file the service opened (the
        pool's check), so a pass never works on a file swapped in under the service."""
        self.settings = settings
        self.check_file = check_file
        self.sender_factory = sender_factory
        self.retry_after = retry_after
        self.folder = Path(folder)
        self.interval = interval
        self.clock = clock
        self.on_change: Callable[[], None] | None = None
        self.passes: list[WatchPass] = []  # the last few, newest last (for tests)
        self.failure: WatchFailure | None = None  # the last failure, until its work succeeded
        self.missing: str | None = None  # says the folder is gone, while it is
        self.crashed: WatchFailure | None = None  # a poll that raised, until one does not
        self.rejected: dict[str, str] = {}  # digest -> why it does not parse, until it does
        self._unreadable: set[str] = set()  # what the folder holds that cannot be read, told once
        self._done: dict[str, _FileKey] = {}  # file -> key when ingested (or found unparsable)
        self._seen: dict[str, _FileKey] = {}  # file -> key at the last poll
        self._suspects: dict[str, _Suspect] = {}
        self._failures = 0  # failed passes in a row
        # When to build and send even if no digest changed: at once on the first poll (a restart
        # finishes what the last run left), later to retry deferred mail or a failed build/send.
        self._publish_at: float | None = 0.0
        self._publish_failed = False
        self._task: asyncio.Task[None] | None = None
        self._published: dt.date | None = None  # the newest day this watcher has sent
        # The pass under way in the worker thread: its loop and task, for `stop` to cancel.
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Task[DailyReport]] | None = None

    def health(self) -> dict[str, object]:
        """`{"ok": ..., "error": ..., "at": ...}` for /healthz: not ok while a failure is unresolved."""
        failure = self.crashed or self.failure
        if self.missing is not None:
            return {"ok": False, "error": self.missing, "at": None}
        if failure is not None:
            return {"ok": False, "error": failure.error, "at": failure.at.isoformat()}
        if self.rejected:  # a digest that does not parse: its day is not published or sent
            why = next(iter(self.rejected.values()))
            more = f" (and {len(self.rejected) - 1} more)" if len(self.rejected) > 1 else ""
            return {"ok": False, "error": f"{why}{more}", "at": None}
        return {"ok": True, "error": None, "at": None}

    def ready_files(self, now: float) -> tuple[list[Path], list[Path]]:
        """(fresh, due): files new or changed since taken and no longer being written; and
        files a failed pass left behind whose retry time (`now`, monotonic) has come."""
        fresh: list[Path] = []
        due: list[Path] = []
        wall = time.time()
        seen: dict[str, _FileKey] = {}
        for path in self._scan():
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_mtime_ns, st.st_size)
            name = shown_path(path)  # as the ingest report names it
            seen[name] = key
            if self._done.get(name) == key:
                continue
            settled = self._seen.get(name) == key or wall - st.st_mtime >= self.interval
            if not settled:
                continue
            suspect = self._suspects.get(name)
            if suspect is None or suspect.key != key:  # new, or edited since it failed
                self._suspects.pop(name, None)
                fresh.append(path)
            elif now >= suspect.retry_at:
                due.append(path)
        self._seen = seen
        for name in [name for name in self.rejected if name not in seen]:  # taken away
            del self.rejected[name]
        return fresh, due

    def _scan(self) -> list[Path]:
        """The folder's digest files; says once (log, /healthz) what it cannot look at."""
        try:
            why = None if stat.S_ISDIR(os.stat(self.folder).st_mode) else "is not a folder"
        except FileNotFoundError:
            why = "does not exist"
        except OSError as exc:
            why = f"cannot be read: {exc.strerror or exc}"
        if why is not None:
            if self.missing is None:
                self.missing = f"{self.folder}: the watched folder {why}"
                log_event("watch.failed", level=logging.ERROR, error=self.missing)
            return []
        self.missing = None
        files, problems = find_digest_files([self.folder])
        for problem in problems:
            if str(problem) not in self._unreadable:
                self._unreadable.add(str(problem))
                log_event("watch.warning", level=logging.WARNING, notice=str(problem))
        return files

    def run_once(self) -> WatchPass | None:
        """One poll: ingest what is ready; build and send if anything changed (or when due).

        Never raises: a failure is logged, kept for /healthz and retried later.
        """
        now = time.monotonic()
        fresh, due = self.ready_files(now)
        force = self._publish_at is not None and now >= self._publish_at
        # A file that made a pass fail is retried alone, never in a pass that has other work.
        batch = fresh if fresh or force else due[:1]
        if not batch and not force:
            return None
        result = WatchPass()
        try:
            daily = self._pass(batch, result, force=force)
        except Interrupted as exc:  # stopping: not a failure, and nothing more to do
            log_event("watch.stopped", level=logging.WARNING, error=str(exc))
            return result
        except Exception as exc:  # whatever it is, the watcher must outlive it
            self._failed(exc, batch, result, force=force, now=now)
        else:
            self._succeeded(daily, batch, force=force, now=now)
        if result.ingested or result.built or result.sent_date:
            log_event(
                "watch.pass",
                ingested=result.ingested,
                built=result.built,
                sent=result.sent_date.isoformat() if result.sent_date else None,
                delivery=result.delivery,
                weekly=result.weekly,
            )
            if self.on_change is not None:
                self.on_change()
        self.passes = [*self.passes[-9:], result]
        return result

    def _pass(self, batch: list[Path], result: WatchPass, *, force: bool) -> DailyReport:
        """Ingest `batch`; build and send when a digest changed, or when `force`d and any is stored."""

        def ingested(report: IngestReport) -> None:
            for f in report.files:
                result.ingested[f.path] = f.status
                if f.status == "failed":
                    why = f.error or f"{f.path}: failed"
                    self.rejected[f.path] = why
                    log_event("watch.rejected", level=logging.ERROR, file=f.path, error=why)
                else:
                    self.rejected.pop(f.path, None)
                # The key of the poll, not a new stat: a file that changed since is taken again.
                # Unparsable files too: they are read again once they change, not every poll.
                if (key := self._seen.get(f.path)) is not None:
                    self._done[f.path] = key
            for warning in report.warnings:
                log_event("watch.warning", level=logging.WARNING, notice=str(warning))

        # Not created: the service made it at start; a file removed or replaced since is an
        # error (checked again once open: it could be swapped in between).
        if self.check_file is not None:
            self.check_file()
        with Store(self.settings.db, clock=self.clock, create=False) as store:
            if self.check_file is not None:
                self.check_file()

            # A newer day than the last this watcher sent came in another way (a CLI ingest,
            # or one that won the race for a file here): it is built and sent all the same.
            newest = store.latest_date()
            behind = newest is not None and newest != self._published

            # Runs in the watcher's worker thread, so it gets an event loop of its own; `stop`
            # cancels it there, as Ctrl-C stops a send: messages on the wire finish.
            async def job() -> DailyReport:
                task = asyncio.current_task()
                assert task is not None
                self._running = (asyncio.get_running_loop(), task)
                try:
                    return await run_daily(
                        store,
                        settings=self.settings,
                        digests=batch,
                        sender_factory=self.sender_factory,
                        clock=self.clock,
                        only_if_changed=not (force or behind) or newest is None,
                        on_ingested=ingested,
                    )
                finally:
                    self._running = None

            try:
                daily = asyncio.run(job())
            except asyncio.CancelledError:
                raise Interrupted(
                    "the service is stopping: messages in flight were finished, the rest "
                    "wait for the next pass"
                ) from None
        result.built = daily.build is not None
        if daily.search_error is not None:  # the pages and the mail went; say why search did not
            log_event("watch.search_failed", level=logging.WARNING, error=daily.search_error)
        if daily.delivery is not None:
            result.sent_date = daily.delivery.date
            result.delivery = daily.delivery.summary()
            if daily.delivery.stopped is not None:
                # No server, a refused login or sender: the pass failed (logged, shown by
                # /healthz, retried later), though nothing raised.
                raise NewsletterError(f"the send stopped: {daily.delivery.stopped}")
        if daily.weekly is not None:
            result.weekly = f"{daily.week}: {daily.weekly.summary()}"
            if daily.weekly.stopped is not None:
                raise NewsletterError(f"the weekly send stopped: {daily.weekly.stopped}")
        return daily

    def _delay(self, failures: int) -> float:
        """Seconds before retrying after `failures` failures in a row: doubling, capped."""
        return float(min(self.retry_after, self.interval * 2**failures))

    def _failed(
        self, exc: Exception, batch: list[Path], result: WatchPass, *, force: bool, now: float
    ) -> None:
        error = _describe(exc)
        result.error = error
        self._failures += 1
        delay = self._delay(self._failures)  # for the build and send; files count their own
        # Files not ingested when it failed may be what failed: each is retried on its own.
        names = [shown_path(p) for p in batch]
        suspects = [n for n in names if self._done.get(n) != self._seen.get(n)]
        for name in suspects:
            key = self._seen.get(name)
            if key is None:
                continue
            previous = self._suspects.get(name)
            attempts = previous.attempts + 1 if previous else 1
            self._suspects[name] = _Suspect(key, attempts, now + self._delay(attempts))
        if force or not suspects:  # the build or the send failed, or a due one did not happen
            self._publish_failed = True
            self._publish_at = now + delay
        self.failure = WatchFailure(error=error, at=self.clock())
        retries = [self._suspects[n].retry_at for n in suspects if n in self._suspects]
        if self._publish_at is not None:
            retries.append(self._publish_at)
        # One line, no traceback: a poison file must not fill the log every few seconds.
        log_event(
            "watch.failed",
            level=logging.ERROR,
            error=error,
            files=suspects,
            retry_in=round(min(retries, default=now) - now, 1),
        )

    def _succeeded(self, daily: DailyReport, batch: list[Path], *, force: bool, now: float) -> None:
        self._failures = 0
        for path in batch:
            self._suspects.pop(shown_path(path), None)
        if daily.delivery is not None:
            self._published = daily.delivery.date
        if daily.build is not None:
            self._publish_failed = False
            # Deferred mail and a stopped run are retried later, not only on the next digest.
            sent = all(r is None or r.ok for r in (daily.delivery, daily.weekly))
            self._publish_at = None if sent else now + self.retry_after
        elif force:  # nothing stored yet: the next digest to land is built and sent
            self._publish_failed = False
            self._publish_at = None
        if not self._suspects and not self._publish_failed:
            self.failure = None

    def start(self) -> None:
        """Start polling in the background of the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="digest-watcher")

    async def _loop(self) -> None:
        while True:
            try:
                # Ingest, build and send are blocking; a thread keeps the service answering.
                await asyncio.to_thread(self.run_once)
                self.crashed = None
            except Exception as exc:  # run_once records its own failures; this is a last guard
                error = _describe(exc)
                log_event("watch.failed", level=logging.ERROR, error=error)
                self.crashed = WatchFailure(error=error, at=self.clock())  # /healthz says so
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Stop polling; a pass under way stops too, once its messages in flight are finished
        (the service's shutdown waits for it, so nothing is left claimed)."""
        running = self._running
        if running is not None:
            loop, task = running
            with contextlib.suppress(RuntimeError):  # its loop just closed: the pass is over
                loop.call_soon_threadsafe(task.cancel)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
