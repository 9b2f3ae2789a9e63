"""The delivery ledger: one row per (kind, date, subscriber), claimed before the message is sent.

`kind` is "daily" (date: the digest's day) or "weekly" (date: the Monday of the ISO week the
edition covers), so each edition is delivered at most once and the two never share a row.

States: a row is `claimed` (committed before the SMTP transaction starts), then `sent` (the
server answered 250 to DATA), `deferred` (temporary failure; the next run re-claims it),
`failed` (permanent) or `skipped` (empty selection; re-evaluated by the next run). A row left
`claimed` by a run that died is ambiguous: the message may or may not have been accepted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Part, StoreBase

DELIVERY_STATUSES = ("claimed", "sent", "deferred", "failed", "skipped")
# A run may take over a row in these states; `claimed` only when resending ambiguous claims.
RECLAIMABLE = ("deferred", "skipped")
KINDS = ("daily", "weekly")
INACTIVE = "inactive"  # claim_deliveries: the subscriber is not active, nothing was claimed
_CLAIMS_PER_STATEMENT = 100  # 6 values each, well under SQLite's 32,766 variables


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ledger row, with the subscriber's address."""

    date: dt.date
    subscriber_id: int
    email: str
    status: str
    message_id: str | None
    attempts: int
    last_error: str | None
    claimed_at: str
    updated_at: str
    kind: str = "daily"


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(
        date=dt.date.fromisoformat(row["date"]),
        subscriber_id=row["subscriber_id"],
        email=row["email"] or "",
        status=row["status"],
        message_id=row["message_id"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        claimed_at=row["claimed_at"],
        updated_at=row["updated_at"],
        kind=row["kind"],
    )


class LedgerStore(StoreBase):
    """Claims and outcomes of deliveries."""

    def delivery_states(
        self, date: dt.date, subscriber_ids: Sequence[int], *, kind: str = "daily"
    ) -> dict[int, str]:
        """The ledger status of each of these subscribers for `date` (absent: no row yet)."""
        if not subscriber_ids:
            return {}
        marks = ",".join("?" * len(subscriber_ids))
        rows = self.conn.execute(
            f"""SELECT subscriber_id, status FROM deliveries
                WHERE kind = ? AND date = ? AND subscriber_id IN ({marks})""",
            (kind, date.isoformat(), *subscriber_ids),
        ).fetchall()
        return {int(sid): str(status) for sid, status in rows}

    def claim_delivery(
        self,
        date: dt.date,
        subscriber_id: int,
        *,
        message_id: str,
        take_ambiguous: bool = False,
        kind: str = "daily",
    ) -> str | None:
        """Claim the row before sending; returns the state taken over ("new", "deferred", ...) or None.

        None means another run holds or has finished it. The claim is committed when this returns,
        so a crash from here on leaves an ambiguous `claimed` row, never a silent resend.
        """
        day, now = date.isoformat(), self.now_text()
        # The common case is one autocommit statement: one write, its own transaction.
        cursor = self.conn.execute(
            """INSERT INTO deliveries (kind, date, subscriber_id, status, message_id, attempts, claimed_at,
               updated_at) VALUES (?, ?, ?, 'claimed', ?, 0, ?, ?)
               ON CONFLICT (kind, date, subscriber_id) DO NOTHING""",
            (kind, day, subscriber_id, message_id, now, now),
        )
        if cursor.rowcount == 1:
            return "new"
        with self.transaction() as conn:
            return self._take_over(conn, kind, day, subscriber_id, message_id, now, take_ambiguous)

    def claim_deliveries(
        self,
        date: dt.date,
        claims: Sequence[tuple[int, str]],
        *,
        take_ambiguous: bool = False,
        kind: str = "daily",
    ) -> dict[int, str | None]:
        """Claim several rows in one transaction, each only while its subscriber is active.

        `claims` holds (subscriber id, message id). For each id the result is what
        `claim_delivery` returns (the state taken over, or None when another run holds or has
        finished it), or INACTIVE when the subscriber is no longer active (nothing claimed).
        Committed when this returns.
        """
        if not claims:
            return {}
        day, now = date.isoformat(), self.now_text()
        results: dict[int, str | None] = {}
        with self.transaction() as conn:
            for start in range(0, len(claims), _CLAIMS_PER_STATEMENT):
                chunk = claims[start : start + _CLAIMS_PER_STATEMENT]
                marks = ",".join("?" * len(chunk))
                active = {
                    row[0]
                    for row in conn.execute(
                        f"SELECT id FROM subscribers WHERE status = 'active' AND id IN ({marks})",
                        [subscriber_id for subscriber_id, _ in chunk],
                    )
                }
                wanted = [(i, m) for i, m in chunk if i in active]
                results.update((i, INACTIVE) for i, _ in chunk if i not in active)
                if not wanted:
                    continue
                values = ",".join("(?, ?, ?, 'claimed', ?, 0, ?, ?)" for _ in wanted)
                inserted = {
                    row[0]
                    for row in conn.execute(
                        f"""INSERT INTO deliveries (kind, date, subscriber_id, status, message_id,
                           attempts, claimed_at, updated_at) VALUES {values}
                           ON CONFLICT (kind, date, subscriber_id) DO NOTHING
                           RETURNING subscriber_id""",
                        [v for i, m in wanted for v in (kind, day, i, m, now, now)],
                    )
                }
                for subscriber_id, message_id in wanted:
                    if subscriber_id in inserted:
                        results[subscriber_id] = "new"
                    else:  # a row exists: taken over only from a state a run may take
                        results[subscriber_id] = self._take_over(
                            conn, kind, day, subscriber_id, message_id, now, take_ambiguous
                        )
        return results

    @staticmethod
    def _take_over(
        conn: Any,
        kind: str,
        day: str,
        subscriber_id: int,
        message_id: str,
        now: str,
        take_ambiguous: bool,
    ) -> str | None:
        """Inside a transaction: claim an existing row if its state may be taken; its old state."""
        takeable = (*RECLAIMABLE, "claimed") if take_ambiguous else RECLAIMABLE
        row = conn.execute(
            "SELECT status FROM deliveries WHERE kind = ? AND date = ? AND subscriber_id = ?",
            (kind, day, subscriber_id),
        ).fetchone()
        previous = str(row[0]) if row else ""
        if previous not in takeable:
            return None
        cursor = conn.execute(
            """UPDATE deliveries SET status = 'claimed', message_id = ?, claimed_at = ?, updated_at = ?
               WHERE kind = ? AND date = ? AND subscriber_id = ? AND status = ?""",
            (message_id, now, now, kind, day, subscriber_id, previous),
        )
        return previous if cursor.rowcount == 1 else None

    def release_claim(
        self,
        date: dt.date,
        subscriber_id: int,
        *,
        previous: str,
        kind: str = "daily",
        held: str = "claimed",
    ) -> None:
        """Undo a claim whose message was certainly never handed over (the run stopped first).

        `held` "failed" undoes a claim already recorded failed whose refusal turned out to be
        the relay refusing everyone, not this message.
        """
        day = date.isoformat()
        with self.transaction() as conn:
            if previous == "new":
                conn.execute(
                    """DELETE FROM deliveries WHERE kind = ? AND date = ? AND subscriber_id = ?
                       AND status = ?""",
                    (kind, day, subscriber_id, held),
                )
            else:
                conn.execute(
                    """UPDATE deliveries SET status = ? WHERE kind = ? AND date = ? AND subscriber_id = ?
                       AND status = ?""",
                    (previous, kind, day, subscriber_id, held),
                )

    def finish_delivery(
        self,
        date: dt.date,
        subscriber_id: int,
        *,
        status: str,
        attempts: int,
        error: str | None = None,
        kind: str = "daily",
    ) -> None:
        """Record the outcome of a claimed delivery: sent, deferred or failed."""
        if status not in ("sent", "deferred", "failed"):
            raise ValueError(f"not an outcome: {status!r}")
        self.conn.execute(  # one autocommit statement
            """UPDATE deliveries SET status = ?, attempts = attempts + ?, last_error = ?, updated_at = ?
               WHERE kind = ? AND date = ? AND subscriber_id = ? AND status = 'claimed'""",
            (status, attempts, error, self.now_text(), kind, date.isoformat(), subscriber_id),
        )

    def mark_sent(
        self, date: dt.date, sent: Sequence[tuple[int, int]], *, kind: str = "daily"
    ) -> None:
        """Record several claimed deliveries as sent, in one transaction: (subscriber id, attempts)."""
        if not sent:
            return
        day, now = date.isoformat(), self.now_text()
        with self.transaction() as conn:
            conn.executemany(
                """UPDATE deliveries SET status = 'sent', attempts = attempts + ?, last_error = NULL,
                   updated_at = ? WHERE kind = ? AND date = ? AND subscriber_id = ? AND status = 'claimed'""",
                [(attempts, now, kind, day, sid) for sid, attempts in sent],
            )

    def reopen_failed(self, date: dt.date, *, kind: str = "daily") -> int:
        """Put `date`'s failed rows of still-active subscribers back to deferred: the next run
        tries them again. How many were put back."""
        with self.transaction() as conn:
            cursor = conn.execute(
                """UPDATE deliveries SET status = 'deferred', updated_at = ?
                   WHERE kind = ? AND date = ? AND status = 'failed' AND subscriber_id IN
                   (SELECT id FROM subscribers WHERE status = 'active')""",
                (self.now_text(), kind, date.isoformat()),
            )
            return int(cursor.rowcount)

    def record_skipped(
        self, date: dt.date, subscriber_ids: Sequence[int], *, kind: str = "daily"
    ) -> None:
        """Note subscribers whose selection was empty (one transaction for the batch)."""
        if not subscriber_ids:
            return
        day, now = date.isoformat(), self.now_text()
        with self.transaction() as conn:
            conn.executemany(
                """INSERT INTO deliveries (kind, date, subscriber_id, status, attempts, claimed_at, updated_at)
                   VALUES (?, ?, ?, 'skipped', 0, ?, ?)
                   ON CONFLICT (kind, date, subscriber_id) DO UPDATE SET status = 'skipped',
                   updated_at = excluded.updated_at WHERE status IN ('deferred', 'skipped')""",
                [(kind, day, sid, now, now) for sid in subscriber_ids],
            )

    def deliveries(
        self, date: dt.date, *, status: str | None = None, kind: str = "daily"
    ) -> Iterator[Delivery]:
        """The ledger rows of `date` by subscriber id (streamed), optionally of one status."""
        sql = """SELECT d.*, s.email FROM deliveries d LEFT JOIN subscribers s ON s.id = d.subscriber_id
                 WHERE d.kind = ? AND d.date = ? AND d.subscriber_id > ?"""
        extra: tuple[str, ...] = ()
        if status is not None:
            sql += " AND d.status = ?"
            extra = (status,)
        sql += " ORDER BY d.subscriber_id LIMIT 1000"
        last = -1
        while True:
            rows = self.query(sql, (kind, date.isoformat(), last, *extra))
            if not rows:
                return
            for row in rows:
                yield _delivery(row)
            last = rows[-1]["subscriber_id"]

    def delivery_counts(
        self, date: dt.date, *, kind: str = "daily", part: Part | None = None
    ) -> dict[str, int]:
        """How many ledger rows of `date` (of `part`'s subscribers) are in each state, 0 if none."""
        counts = dict.fromkeys(DELIVERY_STATUSES, 0)
        index, parts = part or (0, 1)
        for status, count in self.conn.execute(
            """SELECT status, COUNT(*) FROM deliveries WHERE kind = ? AND date = ?
               AND subscriber_id % ? = ? GROUP BY status""",
            (kind, date.isoformat(), parts, index),
        ):
            counts[str(status)] = int(count)
        return counts

    def audience_domains(self, *, cadence: str | None = None, part: Part | None = None) -> int:
        """How many domains the active subscribers' addresses (of a cadence, of `part`) are at."""
        index, parts = part or (0, 1)
        row = self.conn.execute(
            """SELECT COUNT(DISTINCT substr(email_key, instr(email_key, '@') + 1)) FROM subscribers
               WHERE status = 'active' AND cadence = coalesce(?, cadence) AND id % ? = ?""",
            (cadence, parts, index),
        ).fetchone()
        return int(row[0])

    def audience_size(self, *, cadence: str | None = None) -> int:
        """How many subscribers (of a cadence) are active now: the most one send can reach."""
        row = self.conn.execute(
            "SELECT COUNT(*) FROM subscribers WHERE status = 'active' AND cadence = coalesce(?, cadence)",
            (cadence,),
        ).fetchone()
        return int(row[0])
