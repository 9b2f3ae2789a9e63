"""The daily job: ingest new digests, rebuild the site and feeds, send the newest day.

One function for every door: `newsletter run` (cron, CI), `newsletter serve --watch` and
`newsletter demo` all call `run_daily`, so they ingest, build and send the same way and through
the same delivery ledger (a second run, or a restart, never mails anyone twice).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .audience.weeks import week_days, week_monday, weekly_due
from .config import Settings
from .delivery.pipeline import DeliveryReport, Progress, Sender, deliver
from .delivery.testcopy import send_test_copy
from .digest.ingest import IngestReport, ingest_paths
from .errors import ConfigError
from .mail.compose import Composer
from .mail.outgoing import OutgoingMessage
from .store import Clock, Part, Store, utc_now

if TYPE_CHECKING:  # the site's builder is imported when a run builds, not for a send
    from .publish.build import BuildReport

__all__ = ["DailyReport", "day_composer", "run_daily", "send_day", "send_test_day"]


@dataclass(frozen=True, slots=True)
class DailyReport:
    """What one daily run did: the ingest, the build and the delivery (None: not done)."""

    ingest: IngestReport = field(default_factory=IngestReport)
    build: BuildReport | None = None
    delivery: DeliveryReport | None = None
    search_error: str | None = None  # the search index failed; the pages and mail still went
    week: str | None = None  # the weekly edition due this run (`weekly_due`), if one is
    weekly: DeliveryReport | None = None  # its send; None with `week` set: no digest that week

    @property
    def ok(self) -> bool:
        """True when every file was ingested and the sends left nothing deferred, failed or
        ambiguous."""
        sends = (self.delivery, self.weekly)
        return not self.ingest.failed and all(r is None or r.ok for r in sends)

    @property
    def exit_code(self) -> int:
        """The exit status of `newsletter run`: 1 when a file failed or a send did not all go."""
        sends = (self.delivery, self.weekly)
        return 1 if self.ingest.failed or any(r is not None and r.exit_code for r in sends) else 0


async def send_day(
    *,
    store: Store,
    settings: Settings,
    sender: Sender,
    date: dt.date | None = None,
    clock: Clock = utc_now,
    resend_ambiguous: bool = False,
    record: bool = True,
    backoff: float = 1.0,
    progress: Progress | None = None,
    part: Part | None = None,
    composer: Composer | None = None,
) -> DeliveryReport:
    """Send one day's digest (default: the newest) with the settings' concurrency, rate, retries.

    The sender is not closed here. A StoreError says when the day (or any digest) is missing.
    `part` (index, count): only the subscribers whose id % count == index (newsletter.parallel).
    `composer`: the day's, already prepared (`day_composer`); its clock is used, and `date`,
    if given, must be its day (ValueError otherwise).
    """
    if composer is None:
        composer = day_composer(store=store, settings=settings, date=date, clock=clock)
    elif date is not None and date != composer.digest.date:
        raise ValueError(f"asked to send {date}, given the composer of {composer.digest.date}")
    return await deliver(
        date=composer.digest.date,
        store=store,
        compose=composer.compose,
        sender=sender,
        concurrency=settings.concurrency,
        rate=settings.rate,
        retries=settings.retries,
        backoff=backoff,
        resend_ambiguous=resend_ambiguous,
        record=record,
        progress=progress,
        part=part,
    )


def day_composer(
    *, store: Store, settings: Settings, date: dt.date | None, clock: Clock = utc_now
) -> Composer:
    """The composer of one day (default: the newest), its pieces rendered (`Composer.prepare`)."""
    composer = Composer(settings=settings, digest=store.digest_for(date), clock=clock)
    composer.prepare()
    return composer


async def send_test_day(
    *,
    store: Store,
    settings: Settings,
    sender: Sender,
    to: str,
    date: dt.date | None = None,
    clock: Clock = utc_now,
) -> tuple[dt.date, OutgoingMessage | None]:
    """Send one test copy of a day (default: the newest) to `to`; no ledger, no subscriber links.

    Returns the day and the message sent (None when every selection is empty). The sender is
    not closed here.
    """
    digest = store.digest_for(date)
    composer = Composer(settings=settings, digest=digest, clock=clock)
    message = await send_test_copy(store=store, compose=composer.compose, sender=sender, to=to)
    return digest.date, message


async def run_daily(
    store: Store,
    *,
    settings: Settings,
    digests: Sequence[Path],
    sender_factory: Callable[[], Sender],
    clock: Clock | None = None,
    only_if_changed: bool = False,
    send: bool = True,
    record: bool = True,
    resend_ambiguous: bool = False,
    backoff: float = 1.0,
    progress: Progress | None = None,
    on_ingested: Callable[[IngestReport], None] | None = None,
    on_built: Callable[[BuildReport], None] | None = None,
) -> DailyReport:
    """Ingest `digests` (files or folders), rebuild `settings.site_dir`, send the newest day,
    then refresh the site's search index (a failure there is the report's `search_error`).

    Files that fail to parse are reported in the ingest report; the good ones are kept and the
    run goes on. `only_if_changed` builds and sends only when the ingest added or updated a
    digest (a watcher polling an unchanged folder); `send=False` stops after the build. The
    sender is made by `sender_factory` only when there is a day to send, and closed before
    returning. `on_ingested` and `on_built` see each step as soon as it is done (to print
    progress). Building and sending with no digest stored raises the store's StoreError.
    Other arguments are `send_day`'s.
    """
    ingest = ingest_paths(store, digests) if digests else IngestReport()
    if on_ingested is not None:
        on_ingested(ingest)
    if only_if_changed and not ingest.changed:
        return DailyReport(ingest=ingest)
    from .publish.build import build_site

    built = build_site(store, settings=settings)
    if on_built is not None:
        on_built(built)
    if not send:
        return DailyReport(ingest=ingest, build=built, search_error=_search_index(built))
    # Asked before the sender exists: with nothing stored, nothing is opened.
    newest = store.digest_for(None).date
    clock = clock or store.clock
    week = weekly_due(clock().date(), weekly_day=settings.weekly_day)
    weekly = None
    sender = sender_factory()
    try:
        delivery = await send_day(
            store=store,
            date=newest,
            settings=settings,
            sender=sender,
            clock=clock,
            resend_ambiguous=resend_ambiguous,
            record=record,
            backoff=backoff,
            progress=progress,
        )
        # The weekly edition from its day to the end of the week: a run that failed or was
        # missed on the day catches up later (the ledger sends each reader one copy).
        # (None with `week` set: no digest of that week is stored.)
        if week is not None and delivery.stopped is None and _stored(store, week):
            from .delivery.weekly import send_week

            weekly = await send_week(
                store=store,
                settings=settings,
                sender=sender,
                week=week,
                clock=clock,
                resend_ambiguous=resend_ambiguous,
                record=record,
                backoff=backoff,
            )
    finally:
        await sender.aclose()
    # After the mail: Pagefind can take minutes on a large site, and the day's email must not
    # wait for the search page (which finds the new day once its index is rebuilt).
    search_error = _search_index(built)
    return DailyReport(
        ingest=ingest,
        build=built,
        delivery=delivery,
        search_error=search_error,
        week=week,
        weekly=weekly,
    )


def _stored(store: Store, week: str) -> bool:
    """Whether any digest of `week` is stored (its dates only: send_week loads the papers)."""
    return not set(week_days(week_monday(week))).isdisjoint(store.digest_dates())


def _search_index(built: BuildReport) -> str | None:
    """Refresh the site's search index after `built`; what went wrong, or None. A failing
    index is reported, not raised: the pages and the mail do not depend on it."""
    from .publish.searchindex import refresh_search_index

    try:
        refresh_search_index(built.out_dir)
    except ConfigError as exc:
        return str(exc)
    return None
