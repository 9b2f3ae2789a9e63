"""Apply the bounce mailbox to the subscribers: each report read once, each subscriber found.

Whose report it is: a VERP token of ours (signed, names subscriber and day), else our
Message-ID in the returned headers, else the failed recipient's address. Hard bounces mark the
subscriber bounced, soft ones after `bounces_soft_limit` within `bounces_soft_days` days,
complaints unsubscribe them. Recognised reports are recorded (and the mailbox marks them done);
unknown messages are counted and left where they are.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Protocol

from ..config import Settings
from ..mail.message import message_domain
from ..store import BounceRecord, Store
from ..store.bounces import BounceKind, Outcome
from ..tokens import bounce_token_id, read_bounce_token
from .parse import Report, read_report


class Mailbox(Protocol):
    """Where reports wait: a Maildir, an mbox, a folder of .eml files, an IMAP folder."""

    name: str
    problems: list[str]  # one line per message `messages` could not read (and skipped)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """(key, raw bytes) of each message not yet marked done."""
        ...

    def done(self, key: str) -> None:
        """Mark a recognised message processed (flag or move it), where the mailbox can."""
        ...


@dataclass
class BounceSummary:
    """What one pass over a mailbox found and did."""

    source: str
    read: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    ignored: int = 0  # auto-replies, delays, successes
    unknown: int = 0  # not recognised: left alone
    already: int = 0  # recorded by an earlier pass
    not_ours: int = 0  # recognised, but about no subscriber of ours
    bounced: int = 0  # subscribers marked bounced
    unsubscribed: int = 0  # subscribers unsubscribed by a complaint
    unreadable: int = 0  # messages that could not be read: left where they are

    def line(self) -> str:
        """The one-line summary."""
        return (
            (
                f"{self.source}: read {self.read}: {self.hard} hard, {self.soft} soft, "
                f"{self.complaints} complaints, {self.ignored} ignored, {self.unknown} unknown, "
                f"{self.already} already processed; {self.bounced} subscribers bounced, "
                f"{self.unsubscribed} unsubscribed"
            )
            + (f"; {self.not_ours} about no subscriber of ours" if self.not_ours else "")
            + (f"; {self.unreadable} unreadable" if self.unreadable else "")
        )

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


def _our_ids(settings: Settings) -> re.Pattern[str]:
    domain = re.escape(message_domain(settings))
    return re.compile(
        rf"(?:digest|weekly)\.(\d{{4}}-\d{{2}}-\d{{2}})\.(\d{{1,12}})@{domain}", re.IGNORECASE
    )


def identify(
    report: Report, *, store: Store, settings: Settings, key: bytes
) -> tuple[int | None, dt.date | None, str | None]:
    """(subscriber id, day, our Message-ID) the report is about; Nones when it is nobody's."""
    refused: set[int] = set()  # ids of VERP tokens that are not this subscriber's
    for token in report.tokens:
        # The token's HMAC holds the subscriber's address too: a bounce of another
        # database's email (same key, another person under that id) names no one here.
        found = read_bounce_token(token, key=key, find=store.subscriber)
        if found is not None:
            our_id = next((m for m in report.message_ids if _our_ids(settings).fullmatch(m)), None)
            return found[0].id, found[1], our_id
        named = bounce_token_id(token)
        if named is not None:
            refused.add(named)
    failed = {address.lower() for address in report.recipients}
    pattern = _our_ids(settings)
    for message_id in report.message_ids:
        match = pattern.fullmatch(message_id)
        subscriber = store.subscriber(int(match[2])) if match else None
        if match is None or subscriber is None:
            continue
        # Our Message-ID is not signed. When the VERP token for the same id was refused, the
        # email came from another database (or before a key change): only the failed
        # address can then say it was this subscriber's.
        if subscriber.id in refused and subscriber.email.lower() not in failed:
            continue
        try:
            day = dt.date.fromisoformat(match[1])
        except ValueError:
            continue
        return subscriber.id, day, message_id
    for address in report.recipients:
        subscriber = store.subscriber_by_email(address)
        if subscriber is not None:
            return subscriber.id, None, None
    return None, None, None


def apply_report(
    report: Report, *, store: Store, settings: Settings, key: bytes, source: str
) -> tuple[Outcome, int | None]:
    """Record one recognised report and apply it: (what happened, whom it was about).

    The one path every source takes (mailbox, webhook), so a bounce counts the same wherever
    it came from; "seen" when a report with its id was recorded before.
    """
    kind: BounceKind = "ignored" if report.kind == "unknown" else report.kind
    subscriber_id, day, our_id = (None, None, None)
    if kind != "ignored":
        subscriber_id, day, our_id = identify(report, store=store, settings=settings, key=key)
    outcome = store.record_bounce(
        BounceRecord(
            report_id=report.report_id,
            kind=kind,
            subscriber_id=subscriber_id,
            day=day,
            status=report.status,
            diagnostic=report.diagnostic,
            source=source,
            message_id=our_id,
        ),
        soft_limit=settings.bounces_soft_limit,
        soft_days=settings.bounces_soft_days,
    )
    return outcome, subscriber_id


def count(summary: BounceSummary, report: Report, outcome: Outcome, subscriber: int | None) -> None:
    """Add what applying `report` did to `summary`."""
    if outcome == "seen":
        summary.already += 1
        return
    if report.kind == "hard":
        summary.hard += 1
    elif report.kind == "soft":
        summary.soft += 1
    elif report.kind == "complaint":
        summary.complaints += 1
    else:
        summary.ignored += 1
    if report.kind != "ignored" and subscriber is None:
        summary.not_ours += 1
    summary.bounced += outcome == "bounced"
    summary.unsubscribed += outcome == "unsubscribed"


def process_mailbox(
    mailbox: Mailbox, *, store: Store, settings: Settings, key: bytes
) -> BounceSummary:
    """Read every waiting message of `mailbox`, record and apply what it says."""
    summary = BounceSummary(source=mailbox.name)
    for handle, data in mailbox.messages():
        summary.read += 1
        report = read_report(data)
        if report.kind == "unknown":
            summary.unknown += 1
            continue
        if store.report_seen(report.report_id):
            summary.already += 1
            mailbox.done(handle)
            continue
        outcome, subscriber_id = apply_report(
            report, store=store, settings=settings, key=key, source=mailbox.name
        )
        mailbox.done(handle)
        count(summary, report, outcome, subscriber_id)
    summary.unreadable = len(mailbox.problems)
    return summary


def apply_reports(
    store: Store, reports: Iterable[Report], *, settings: Settings, key: bytes, source: str
) -> BounceSummary:
    """Record and apply reports that arrived together (one webhook request), as one summary."""
    summary = BounceSummary(source=source)
    for report in reports:
        summary.read += 1
        outcome, subscriber_id = apply_report(
            report, store=store, settings=settings, key=key, source=source
        )
        count(summary, report, outcome, subscriber_id)
    return summary
