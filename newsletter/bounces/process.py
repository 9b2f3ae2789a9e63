"""Apply the bounce mailbox to the subscribers: each report read once, each subscriber found.

Whose report it is: a VERP token of ours (signed, names subscriber and day), else our
Message-ID in the returned headers (signed with the same tag), else, from a signed webhook or
with VERP off, what anyone could write: an untagged Message-ID of ours (emails from before the
tag) or the failed recipient's address. Hard bounces mark the
subscriber bounced, soft ones after `bounces_soft_limit` within `bounces_soft_days` days,
complaints unsubscribe them. Recognised reports are recorded (and the mailbox marks them done);
unknown messages are counted and left where they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import NamedTuple, Protocol

from ..config import Settings
from ..mail.message import message_domain
from ..store import BounceRecord, Store
from ..store.bounces import BounceKind, Outcome
from ..store.erasure import report_id_without
from ..tokens import BOUNCE_TAG_HEX, bounce_token_id, read_bounce_token
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
    unproven: int = 0  # naming a subscriber by nothing we signed: applied to no one
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
            + (
                f"; {self.unproven} naming a subscriber by nothing we signed (applied to no one)"
                if self.unproven
                else ""
            )
            + (f"; {self.unreadable} unreadable" if self.unreadable else "")
        )

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


def _our_ids(settings: Settings) -> re.Pattern[str]:
    domain = re.escape(message_domain(settings))
    return re.compile(
        rf"(?:digest|weekly)\.(\d{{4}})-(\d{{2}})-(\d{{2}})\.(\d{{1,12}})"
        rf"(?:\.([0-9a-f]{{{BOUNCE_TAG_HEX}}}))?@{domain}",
        re.IGNORECASE,
    )


class Whose(NamedTuple):
    """Whom a report is about, as `identify` found out."""

    subscriber_id: int | None = None
    day: dt.date | None = None
    message_id: str | None = None  # ours, as quoted in the report
    unproven: bool = False  # it names a subscriber by nothing we signed, which was not enough


def identify(
    report: Report, *, store: Store, settings: Settings, key: bytes, by_address: bool
) -> Whose:
    """Whom the report is about: the subscriber its VERP token names, else the one its signed
    Message-ID of ours names (both checked with the key and their address), else, only when
    `by_address` (a signed webhook, or VERP off), what anyone could have written: an untagged
    Message-ID of ours (as emails carried before Message-IDs were signed; the subscribers of
    that time only) or the failed recipient's address.

    Anyone can mail the bounce box: with VERP on, a report naming a subscriber by nothing we
    signed (a forgery, or an email from before a key change) names no one ("unproven").
    """
    pattern = _our_ids(settings)
    refused: set[int] = set()  # ids of VERP tokens that are not this subscriber's
    for token in report.tokens:
        # The token's HMAC holds the subscriber's address too: a bounce of another
        # database's email (same key, another person under that id) names no one here.
        found = read_bounce_token(token, key=key, find=store.subscriber)
        if found is not None:
            return Whose(found[0].id, found[1], _their_id(report, pattern, found[0].id))
        named = bounce_token_id(token)
        if named is not None:
            refused.add(named)
    failed = {address.lower() for address in report.recipients}
    unproven = False
    for message_id in report.message_ids:
        match = pattern.fullmatch(message_id)
        if match is None:
            continue
        year, month, day, number, tag = match.groups()
        if tag is not None:  # signed with the VERP token's tag: read as that token
            found = read_bounce_token(
                f"{number}-{year}{month}{day}-{tag}", key=key, find=store.subscriber
            )
            if found is not None:
                return Whose(found[0].id, found[1], message_id)
            continue
        # Untagged: anyone can write one for any id. When the VERP token for the same id was
        # refused, the email came from another database (or before a key change): only the
        # failed address can then say it was this subscriber's.
        subscriber = store.subscriber(int(number))
        if subscriber is None or not subscriber.legacy_links:
            continue
        if not by_address:
            unproven = True
            continue
        if subscriber.id in refused and subscriber.email.lower() not in failed:
            continue
        try:
            sent = dt.date(int(year), int(month), int(day))
        except ValueError:
            continue
        return Whose(subscriber.id, sent, message_id)
    for address in report.recipients:
        subscriber = store.subscriber_by_email(address)
        if subscriber is not None:
            return Whose(subscriber.id) if by_address else Whose(unproven=True)
    return Whose(unproven=unproven)


def _their_id(report: Report, pattern: re.Pattern[str], subscriber_id: int) -> str | None:
    """The Message-ID of ours in `report` that names `subscriber_id`, if one does."""
    for message_id in report.message_ids:
        match = pattern.fullmatch(message_id)
        if match is not None and int(match[4]) == subscriber_id:
            return message_id
    return None


def apply_report(
    report: Report,
    *,
    store: Store,
    settings: Settings,
    key: bytes,
    source: str,
    by_address: bool,
) -> tuple[Outcome, Whose]:
    """Record one recognised report and apply it: (what happened, whom it was about).

    The one path every source takes (mailbox, webhook), so a bounce counts the same wherever
    it came from; "seen" when a report with its id was recorded before. `by_address`: whether
    the failed address alone may name a subscriber (`identify`).
    """
    kind: BounceKind = "ignored" if report.kind == "unknown" else report.kind
    while True:
        whose = Whose()
        if kind != "ignored":
            whose = identify(report, store=store, settings=settings, key=key, by_address=by_address)
        record = BounceRecord(
            report_id=report.report_id,
            kind=kind,
            subscriber_id=whose.subscriber_id,
            day=whose.day,
            status=report.status,
            diagnostic=report.diagnostic,
            source=source,
            message_id=whose.message_id,
        )
        record = _without_erased(record, report=report, store=store)
        outcome = store.record_bounce(
            record, soft_limit=settings.bounces_soft_limit, soft_days=settings.bounces_soft_days
        )
        if outcome != "gone":  # else erased meanwhile: about no one now, read so again
            return outcome, whose


# Something that looks like an address, as a diagnostic or an id quotes one.
_QUOTED_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+[^\s<>()\[\]\"',;:.]")


def _without_erased(record: BounceRecord, *, report: Report, store: Store) -> BounceRecord:
    """`record` as an erasure would have left it, when an address it names or quotes was
    erased: a late report about a person who asked to be forgotten (even one about someone
    else, say the address they forwarded to) does not bring their address back."""
    quoted = {*report.recipients, *_QUOTED_ADDRESS.findall(record.diagnostic)}
    quoted.update(_QUOTED_ADDRESS.findall(record.report_id))
    erased = store.erased(sorted(quoted))
    if not erased:
        return record
    report_id = record.report_id
    for email in erased:
        report_id = report_id_without(report_id, email)
    ours = record.message_id if record.subscriber_id is not None else None
    return dataclasses.replace(record, report_id=report_id, diagnostic="", message_id=ours)


def count(summary: BounceSummary, report: Report, outcome: Outcome, whose: Whose) -> None:
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
    if whose.unproven:
        summary.unproven += 1
    elif report.kind != "ignored" and whose.subscriber_id is None:
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
        # Anyone can send it mail: with VERP on, only what we signed names a subscriber.
        outcome, whose = apply_report(
            report,
            store=store,
            settings=settings,
            key=key,
            source=mailbox.name,
            by_address=not settings.verp,
        )
        mailbox.done(handle)
        count(summary, report, outcome, whose)
    summary.unreadable = len(mailbox.problems)
    return summary


def apply_reports(
    store: Store, reports: Iterable[Report], *, settings: Settings, key: bytes, source: str
) -> BounceSummary:
    """Record and apply reports that arrived together (one webhook request, its sender
    authenticated: the address it names is believed), as one summary."""
    summary = BounceSummary(source=source)
    for report in reports:
        summary.read += 1
        outcome, whose = apply_report(
            report, store=store, settings=settings, key=key, source=source, by_address=True
        )
        count(summary, report, outcome, whose)
    return summary
