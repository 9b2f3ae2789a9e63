"""Subscribers: lookup, listing, status and preference changes. Only an erasure deletes one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import SubscriberError
from ..model import CADENCES, EVERY_PAPER, Filters, ImportReport, Subscriber, SubscriberRow
from .base import Part, dump_filters, insert_subscriber, load_filters
from .erasure import ErasureStore

STATUSES = ("active", "pending", "unsubscribed", "bounced")


def _subscriber(row: dict[str, Any]) -> Subscriber:
    return Subscriber(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        filters=load_filters(row),
        status=row["status"],
        cadence=row["cadence"],
        version=row["version"],
        legacy_links=bool(row["legacy_links"]),
    )


class SubscriberStore(ErasureStore):
    """Subscribers and their filters (and the addresses erased, which are never added back)."""

    def add_subscriber(
        self,
        email: str,
        *,
        name: str = "",
        filters: Filters = EVERY_PAPER,
        status: str = "active",
        cadence: str = "daily",
    ) -> Subscriber:
        """Insert a subscriber (email already normalised); SubscriberError if it exists."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if cadence not in CADENCES:
            raise ValueError(f"unknown cadence {cadence!r}")
        if self.erased([email]):
            raise SubscriberError(
                f"{email} was erased at their request; only they can sign up again (the form)",
                code="erased",
                field="email",
            )
        with self.transaction() as conn:
            # email_key = lower(email): Ana@example.com and ana@example.com are one subscriber.
            if conn.execute(
                "SELECT 1 FROM subscribers WHERE email_key = lower(?)", (email,)
            ).fetchone():
                raise SubscriberError(
                    f"{email} is already a subscriber", code="exists", field="email"
                )
            new_id = insert_subscriber(
                conn,
                email=email,
                name=name,
                filters=filters,
                status=status,
                now=self.now_text(),
                cadence=cadence,
            )
        found = self.subscriber(new_id)
        assert found is not None
        return found

    def subscriber(self, subscriber_id: int) -> Subscriber | None:
        """One subscriber by id, whatever their status."""
        rows = self.query("SELECT * FROM subscribers WHERE id = ?", (subscriber_id,))
        return _subscriber(rows[0]) if rows else None

    def subscriber_by_email(self, email: str) -> Subscriber | None:
        """One subscriber by normalised email (in any case), whatever their status."""
        rows = self.query("SELECT * FROM subscribers WHERE email_key = lower(?)", (email,))
        return _subscriber(rows[0]) if rows else None

    def subscribers(self, *, status: str | None = None) -> list[Subscriber]:
        """All subscribers (or those with `status`), by id."""
        if status is None:
            return [_subscriber(r) for r in self.query("SELECT * FROM subscribers ORDER BY id")]
        return [
            _subscriber(r)
            for r in self.query("SELECT * FROM subscribers WHERE status = ? ORDER BY id", (status,))
        ]

    def active_subscribers(
        self, *, batch: int = 1000, cadence: str | None = None, part: Part | None = None
    ) -> Iterator[Subscriber]:
        """Active subscribers (of one cadence, or all) by id, streamed in batches.

        Batches, so a million subscribers never sit in memory. `part` (index, count): only
        ids with `id % count == index`, one share of a send split across processes.
        """
        index, count = part or (0, 1)
        last = 0
        where = "" if cadence is None else " AND cadence = ?"
        more = () if cadence is None else (cadence,)
        while True:
            rows = self.query(
                f"""SELECT * FROM subscribers WHERE status = 'active'{where} AND id > ?
                    AND id % ? = ? ORDER BY id LIMIT ?""",
                (*more, last, count, index, batch),
            )
            if not rows:
                return
            for row in rows:
                yield _subscriber(row)
            last = rows[-1]["id"]

    def subscriber_addresses(self, *, after: int = 0) -> list[tuple[int, str, bool]]:
        """(id, email, legacy_links) of every subscriber (any status) with an id above
        `after`, ascending: new ones since then. What their link tokens are made of."""
        rows = self.conn.execute(
            "SELECT id, email, legacy_links FROM subscribers WHERE id > ? ORDER BY id", (after,)
        ).fetchall()
        return [(row[0], row[1], bool(row[2])) for row in rows]

    def is_active(self, subscriber_id: int) -> bool:
        """Whether the subscriber is active right now (checked just before each send)."""
        row = self.conn.execute(
            "SELECT status FROM subscribers WHERE id = ?", (subscriber_id,)
        ).fetchone()
        return row is not None and row[0] == "active"

    def state_now(self, subscriber: Subscriber) -> str:
        """Just before a send: "inactive" (not active now), "changed" (written since it was
        read: its preferences may differ) or "same"."""
        row = self.conn.execute(
            "SELECT status, version FROM subscribers WHERE id = ?", (subscriber.id,)
        ).fetchone()
        if row is None or row[0] != "active":
            return "inactive"
        return "same" if row[1] == subscriber.version else "changed"

    def set_status(self, subscriber_id: int, status: str, *, only_from: str | None = None) -> bool:
        """Change a subscriber's status (only from `only_from`, when given); True if it changed.
        Idempotent."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = self.now_text()
        with self.transaction() as conn:
            cursor = conn.execute(
                """UPDATE subscribers SET status = ?, updated_at = ?, status_changed_at = ?
                   WHERE id = ? AND status != ? AND status = coalesce(?, status)""",
                (status, now, now, subscriber_id, status, only_from),
            )
            return cursor.rowcount == 1

    def unsubscribe(self, subscriber_id: int) -> bool:
        """Stop a subscriber's mail at their request; True if it changed. Idempotent.

        A bounced subscriber stays bounced: that status is what keeps them from resuming on
        the preferences page without a confirmed sign-up, and no mail goes to them either way.
        """
        now = self.now_text()
        with self.transaction() as conn:
            cursor = conn.execute(
                """UPDATE subscribers SET status = 'unsubscribed', updated_at = ?, status_changed_at = ?
                   WHERE id = ? AND status NOT IN ('unsubscribed', 'bounced')""",
                (now, now, subscriber_id),
            )
            return cursor.rowcount == 1

    def resume_subscriber(self, subscriber_id: int) -> bool:
        """Make an unsubscribed subscriber active again; True if it changed.

        Only `unsubscribed`: a bounced address stays bounced until a confirmed sign-up shows
        that its mailbox works again.
        """
        now = self.now_text()
        with self.transaction() as conn:
            cursor = conn.execute(
                """UPDATE subscribers SET status = 'active', updated_at = ?, status_changed_at = ?
                   WHERE id = ? AND status = 'unsubscribed'""",
                (now, now, subscriber_id),
            )
            return cursor.rowcount == 1

    def update_filters(
        self,
        subscriber_id: int,
        *,
        filters: Filters,
        name: str | None = None,
        cadence: str | None = None,
    ) -> bool:
        """Replace a subscriber's filters (and name, cadence when given); True if anything changed."""
        current = self.subscriber(subscriber_id)
        if current is None:
            return False
        new_name = current.name if name is None else name
        new_cadence = current.cadence if cadence is None else cadence
        if new_cadence not in CADENCES:
            raise ValueError(f"unknown cadence {new_cadence!r}")
        if (current.name, current.filters, current.cadence) == (new_name, filters, new_cadence):
            return False
        with self.transaction() as conn:
            conn.execute(
                """UPDATE subscribers SET name = ?, keywords = ?, exclude = ?, min_votes = ?, max_papers = ?,
                   cadence = ?, updated_at = ? WHERE id = ?""",
                (new_name, *dump_filters(filters), new_cadence, self.now_text(), subscriber_id),
            )
        return True

    def import_subscribers(
        self, rows: Sequence[SubscriberRow], *, sync: bool = False, dry_run: bool = False
    ) -> ImportReport:
        """Upsert rows by e-mail (in any case) in one transaction; statuses are kept, never reactivated.

        A row's status (`active` unless the CSV says `unsubscribed` or `bounced`) is a new
        subscriber's status; for one already there, a suppression is applied (active to
        unsubscribed or bounced), never the reverse.

        With `sync`, active subscribers missing from `rows` are marked unsubscribed (never
        deleted). With `dry_run`, nothing is written and the report says what would change.
        """
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        left_out: list[str] = []  # erased at their request: never added back by a list
        now = self.now_text()
        with self.transaction() as conn:
            # By email_key; rows are ASCII addresses, so str.lower is SQLite's lower().
            current = {
                r["email_key"]: r
                for r in self.query(
                    """SELECT id, email, email_key, name, keywords, exclude, min_votes, max_papers, status,
                       cadence FROM subscribers WHERE email_key IS NOT NULL"""
                )
            }
            listed: set[str] = set()
            erased = self.erased([r.email for r in rows if r.email.lower() not in current])
            for row in rows:
                key = row.email.lower()
                if key in listed:
                    raise SubscriberError(
                        f"{row.email} appears twice", row=row.row, code="duplicate_email"
                    )
                listed.add(key)
                old = current.get(key)
                if old is None and row.email in erased:
                    left_out.append(row.email)
                    continue
                if old is None:
                    added.append(row.email)
                    if not dry_run:
                        insert_subscriber(
                            conn,
                            email=row.email,
                            name=row.name,
                            filters=row.filters,
                            status=row.status,
                            now=now,
                            cadence=row.cadence,
                        )
                    continue
                suppress = row.status != "active" and old["status"] == "active"
                status = row.status if suppress else old["status"]
                if (row.name, row.filters, row.cadence, status) == (
                    old["name"],
                    load_filters(old),
                    old["cadence"],
                    old["status"],
                ):
                    unchanged.append(old["email"])
                else:
                    updated.append(old["email"])
                    if not dry_run:
                        conn.execute(
                            """UPDATE subscribers SET name = ?, keywords = ?, exclude = ?, min_votes = ?,
                               max_papers = ?, cadence = ?, updated_at = ?, status = ?,
                               status_changed_at = CASE WHEN status = ? THEN status_changed_at
                               ELSE ? END WHERE id = ?""",
                            (
                                row.name,
                                *dump_filters(row.filters),
                                row.cadence,
                                now,
                                status,
                                status,
                                now,
                                old["id"],
                            ),
                        )
            missing = [
                r for key, r in current.items() if key not in listed and r["status"] == "active"
            ]
            if sync and not dry_run:
                conn.executemany(
                    """UPDATE subscribers SET status = 'unsubscribed', updated_at = ?, status_changed_at = ?
                       WHERE id = ? AND status = 'active'""",
                    [(now, now, r["id"]) for r in missing],
                )
        return ImportReport(
            added=tuple(added),
            updated=tuple(updated),
            unchanged=tuple(unchanged),
            unsubscribed=tuple(r["email"] for r in missing) if sync else (),
            erased=tuple(left_out),
            dry_run=dry_run,
        )
