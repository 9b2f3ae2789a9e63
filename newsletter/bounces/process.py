"""Apply the bounce mailbox to the subscribers: each report read once, each subscriber found.

Whose report it is: a VERP token of ours (signed, names subscriber and day), else our
Message-ID in the returned headers (signed with the same tag), else, only from a signed webhook
or with VERP off, the failed recipient's address (anyone can mail the bounce box; an untagged
Message-ID, the form before the tag, names no one). Hard bounces mark the
subscriber bounced, soft ones after `bounces_soft_limit` within `bounces_soft_days` days,
complaints unsubscribe them. Recognised reports are recorded (and the mailbox marks them done);
unknown messages are counted and left where they are.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import NamedTuple, Protocol

from ..config import Settings
from ..mail.message import message_domain
from ..store import BounceRecord, Store
from ..store.bounces import BounceKind, Outcome
from ..tokens import BOUNCE_TAG_HEX, bounce_tag_of, read_bounce_token
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
    `by_address` (a signed webhook, or VERP off), the failed recipient's address.

    Anyone can mail the bounce box: a report naming a subscriber only by what anyone could
    write (their address with VERP on, or an untagged Message-ID, the form before the tag,
    which anyone can write for any id) names no one and is "unproven". A token or tag that
    does not check names no one either ("not ours": another database's email, a key since
    changed, or a forgery).
    """
    pattern = _our_ids(settings)
    for token in report.tokens:
        # The token's HMAC holds the subscriber's address too: a bounce of another
        # database's email (same key, another person under that id) names no one here.
        found = read_bounce_token(token, key=key, find=store.subscriber)
        if found is not None:
            tag = bounce_tag_of(token).lower()
            return Whose(found[0].id, found[1], _their_id(report, pattern, found[0].id, tag))
    unproven = False
    for message_id in report.message_ids:
        match = pattern.fullmatch(message_id)
        if match is None:
            continue
        year, month, day, number, tag = match.groups()
        if tag is None:  # untagged: proves nothing, but may name someone
            unproven = unproven or store.subscriber(int(number)) is not None
            continue
        found = read_bounce_token(
            f"{number}-{year}{month}{day}-{tag}", key=key, find=store.subscriber
        )
        if found is not None:
            return Whose(found[0].id, found[1], message_id)
    for address in report.recipients:
        subscriber = store.subscriber_by_email(address)
        if subscriber is not None:
            return Whose(subscriber.id) if by_address else Whose(unproven=True)
    return Whose(unproven=unproven)


def _their_id(report: Report, pattern: re.Pattern[str], subscriber_id: int, tag: str) -> str | None:
    """The Message-ID of ours in `report` of the same email as the VERP token (id and tag)."""
    for message_id in report.message_ids:
        match = pattern.fullmatch(message_id)
        if match is not None and int(match[4]) == subscriber_id and (match[5] or "").lower() == tag:
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
        outcome = store.record_bounce(
            record,
            soft_limit=settings.bounces_soft_limit,
            soft_days=settings.bounces_soft_days,
            quoted=quoted_addresses(report),  # any of them erased: kept without it
        )
        if outcome != "gone":  # else erased meanwhile: about no one now, read so again
            return outcome, whose


# An address as a diagnostic or an id quotes it: the text around an @ up to a separator.
# The look-behind starts each match at a separator, so a long run without one is read once.
_SEPARATOR = r"\s<>()\[\]\"',;:=!/|"
_QUOTED_ADDRESS = re.compile(
    rf"(?<![^{_SEPARATOR}])[^{_SEPARATOR}@]+@[^{_SEPARATOR}@]*[^{_SEPARATOR}@.]"
)


def quoted_addresses(report: Report) -> set[str]:
    """Every address `report` names or quotes (recipients, diagnostic, its id), with its
    domain's other IDNA spelling: what must not be kept once that address is erased."""
    found = {*report.recipients, *_QUOTED_ADDRESS.findall(report.diagnostic)}
    found.update(_QUOTED_ADDRESS.findall(report.report_id))
    for address in list(found):
        local, _, domain = address.rpartition("@")
        try:
            other = domain.encode("idna").decode() if not domain.isascii() else None
            if "xn--" in domain.lower():
                other = domain.encode().decode("idna")
        except UnicodeError:
            other = None
        if other:
            found.add(f"{local}@{other}")
    return found


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
