"""The weekly edition: weekly readers get one email per ISO week, exactly once, via `deliver`.

The week is composed as one digest of its papers (each once, with its newest data), dated its
Monday, by the same composer as the daily email with its `weekly` flag (subject, header and
Message-ID say so). Each reader's filters select from that week. The ledger keys the delivery
by kind "weekly" and the Monday, so a week is never sent twice to one reader and never shares a
row with that Monday's daily email.
"""

from __future__ import annotations

from ..audience.weeks import Week, week_days, week_monday, weeks_of
from ..config import Settings
from ..errors import ConfigError, StoreError
from ..store import Clock, Store, utc_now
from .pipeline import DeliveryReport, Progress, Sender, deliver


def stored_week(store: Store, week: str) -> Week:
    """The week named `week` (`2025-W09`) from the stored digests; a one-line error if none."""
    try:
        monday = week_monday(week)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    found = weeks_of(store.digests(list(week_days(monday))))
    if not found:
        raise StoreError(f"no digests stored for week {week} ({monday} to {week_days(monday)[-1]})")
    return found[0]


async def send_week(
    *,
    store: Store,
    settings: Settings,
    sender: Sender,
    week: str,
    clock: Clock = utc_now,
    resend_ambiguous: bool = False,
    record: bool = True,
    backoff: float = 1.0,
    progress: Progress | None = None,
) -> DeliveryReport:
    """Send the weekly edition of `week` to every active weekly reader who has not had it."""
    from ..mail.compose import Composer  # rendering is only needed once there is a week to send

    found = stored_week(store, week)
    composer = Composer(settings=settings, digest=found.digest(), clock=clock, weekly=True)
    composer.prepare()
    return await deliver(
        date=found.monday,
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
        kind="weekly",
    )
