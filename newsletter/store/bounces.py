"""Bounce and complaint reports: recorded once each, and what they do to a subscriber."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from .base import StoreBase
from .erasure import erased_among, report_id_without

BounceKind = Literal["hard", "soft", "complaint", "ignored"]
# "gone": the subscriber named was erased since the report was read; nothing was written.
Outcome = Literal["recorded", "bounced", "unsubscribed", "seen", "gone"]


@dataclass(frozen=True, slots=True)
class BounceRecord:
    """One report as read: whom it is about (None: nobody of ours) and what it says."""

    report_id: str
    kind: BounceKind
    subscriber_id: int | None = None
    day: dt.date | None = None
    status: str = ""
    diagnostic: str = ""
    source: str = ""
    message_id: str | None = None


def forgotten(record: BounceRecord, erased: Collection[str]) -> BounceRecord:
    """A bounce report as kept when it names or quotes the `erased` addresses: no diagnostic,
    an id quoting one hashed, and our Message-ID only if it is about someone still here."""
    report_id = record.report_id
    for email in erased:
        report_id = report_id_without(report_id, email)
    ours = record.message_id if record.subscriber_id is not None else None
    return dataclasses.replace(record, report_id=report_id, diagnostic="", message_id=ours)


class BounceStore(StoreBase):
    """The `bounces` table: each report once; hard bounces, soft ones past a limit, complaints."""

    def report_seen(self, report_id: str) -> bool:
        """Whether a report with this id was recorded already."""
        return bool(self.query("SELECT 1 FROM bounces WHERE report_id = ?", (report_id,)))

    def record_bounce(
        self,
        record: BounceRecord,
        *,
        soft_limit: int = 3,
        soft_days: int = 14,
        quoted: Collection[str] = (),
    ) -> Outcome:
        """Record one report and apply it in the same transaction; "seen" if recorded before.

        hard: the subscriber is bounced; soft: bounced once `soft_limit` soft bounces fall within
        `soft_days` days; complaint: unsubscribed. Only an active subscriber changes status.
        "gone", with nothing written, when the subscriber named is no longer there (erased
        since the report was read): the caller reads whom it is about again. `quoted`: the
        addresses the report names or quotes; if one was erased, it is kept as `forgotten`
        (checked in the same transaction as the write, so no erasure falls in between).
        """
        now = self.clock()
        with self.transaction() as conn:
            sid = record.subscriber_id
            if sid is not None:
                there = conn.execute("SELECT 1 FROM subscribers WHERE id = ?", (sid,))
                if there.fetchone() is None:
                    return "gone"
            erased = erased_among(conn, quoted)
            if erased:
                record = forgotten(record, erased)
            # ON CONFLICT, not a caught IntegrityError: the store turns that into a StoreError.
            inserted = conn.execute(
                """INSERT INTO bounces (report_id, subscriber_id, day, kind, status, diagnostic,
                   source, message_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (report_id) DO NOTHING""",
                (
                    record.report_id,
                    record.subscriber_id,
                    record.day.isoformat() if record.day else None,
                    record.kind,
                    record.status,
                    record.diagnostic,
                    record.source,
                    record.message_id,
                    self.now_text(),
                ),
            ).rowcount
            if not inserted:
                return "seen"
            if sid is None:
                return "recorded"
            status: str | None = None
            if record.kind == "hard":
                status = "bounced"
            elif record.kind == "complaint":
                status = "unsubscribed"
            elif record.kind == "soft":
                since = (now - dt.timedelta(days=soft_days)).astimezone(dt.UTC)
                (count,) = conn.execute(
                    """SELECT count(*) FROM bounces WHERE subscriber_id = ? AND kind = 'soft'
                       AND recorded_at >= ?""",
                    (sid, since.isoformat(timespec="seconds")),
                ).fetchone()
                if count >= soft_limit:
                    status = "bounced"
            if status is None:
                return "recorded"
            stamp = self.now_text()
            changed = conn.execute(
                """UPDATE subscribers SET status = ?, updated_at = ?, status_changed_at = ?
                   WHERE id = ? AND status = 'active'""",
                (status, stamp, stamp, sid),
            ).rowcount
            if not changed:
                return "recorded"
            return "bounced" if status == "bounced" else "unsubscribed"

    def bounces(self, subscriber_id: int) -> list[BounceRecord]:
        """The reports recorded about one subscriber, oldest first."""
        rows = self.query(
            "SELECT * FROM bounces WHERE subscriber_id = ? ORDER BY id", (subscriber_id,)
        )
        return [
            BounceRecord(
                report_id=row["report_id"],
                kind=row["kind"],
                subscriber_id=row["subscriber_id"],
                day=dt.date.fromisoformat(row["day"]) if row["day"] else None,
                status=row["status"],
                diagnostic=row["diagnostic"],
                source=row["source"],
                message_id=row["message_id"],
            )
            for row in rows
        ]
