"""Erasing a person at their request: their rows go, their address stays only as a hash.

A subscriber who asks to be forgotten (GDPR article 17, PIPA article 36) loses every row that
names them: the subscriber, their ledger rows, their bounce reports and their sign-ups. What
is kept is a SHA-256 of the address in lower case, so a later `subscribers import` of an old
list never adds them again; signing up again through the form (their own, confirmed request)
lifts it. Only this module writes the `erased` table.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ..errors import StoreError
from .base import StoreBase

# SQLite's lower() changes A-Z only: email_key and these hashes agree on any address.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def erased_key(email: str) -> str:
    """The hash an erased address is kept as (hex SHA-256 of it in lower case)."""
    return hashlib.sha256(email.translate(_ASCII_LOWER).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Erased:
    """What erasing an address removed: the subscriber ids (the subscriber, and any case
    variant an old version stored, see m006) and how many ledger rows, bounce reports
    (stripped of whom they were about) and sign-ups."""

    subscriber_ids: tuple[int, ...]
    deliveries: int
    bounces: int
    signups: int


def report_id_without(report_id: str, email: str) -> str:
    """A bounce report's id as kept once `email` is erased: its hash when it quotes the
    address (a webhook's id may), else itself, so the report is still known as seen."""
    if email.translate(_ASCII_LOWER) in report_id.translate(_ASCII_LOWER):
        return "erased:" + hashlib.sha256(report_id.encode()).hexdigest()
    return report_id


def _like_escaped(text: str) -> str:
    """`text` for a LIKE pattern with ESCAPE '\\': its own % and _ match only themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ErasureStore(StoreBase):
    """The `erased` table and the one erasure of a person's rows."""

    def erase_address(
        self, email: str, *, hold: AbstractContextManager[object] | None = None
    ) -> Erased:
        """Delete every row naming `email` (any case) and keep its hash, in one transaction.
        An address never seen is kept as a hash all the same: a request not to be added.

        Bounce reports about them are stripped rather than deleted: nobody, no diagnostic, no
        Message-ID, an id that quoted the address replaced by its hash. A report still known
        by its id is "seen" when the mailbox is read again, so it cannot come back.

        `hold` (runlock.between_sends) is entered once the write lock is held and let go
        after the commit: no send starts meanwhile, and none is kept waiting on SQLite.

        The bytes go for good: SQLite's secure_delete overwrites what is deleted (else it
        stays in free space), and the write-ahead log is then checkpointed into the file, so
        a copy of the database file alone holds no trace of them either (at once when no
        reader holds an old snapshot for 2 s; else at the next checkpoint).
        """
        (previous,) = self.conn.execute("PRAGMA secure_delete").fetchone()
        self.conn.execute("PRAGMA secure_delete = 1")
        try:
            erased = self._erase(email, hold=hold)
        finally:
            self.conn.execute(f"PRAGMA secure_delete = {int(previous)}")
        with contextlib.suppress(StoreError), self.lock_waits(2.0):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return erased

    def _erase(self, email: str, *, hold: AbstractContextManager[object] | None) -> Erased:
        with contextlib.ExitStack() as stack, self.transaction() as conn:
            if hold is not None:
                stack.enter_context(hold)
            # lower(email), not email_key: case variants an old version kept have none (m006).
            ids = tuple(
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM subscribers WHERE lower(email) = lower(?) ORDER BY id",
                    (email,),
                )
            )
            bounces = self._strip_bounces(ids, email)
            deliveries = 0
            for subscriber_id in ids:
                deliveries += conn.execute(
                    "DELETE FROM deliveries WHERE subscriber_id = ?", (subscriber_id,)
                ).rowcount
                conn.execute("DELETE FROM subscribers WHERE id = ?", (subscriber_id,))
            if ids:  # their ids are never handed out again (m013)
                conn.execute(
                    """INSERT INTO subscriber_id_floor (one, floor) VALUES (1, ?)
                       ON CONFLICT (one) DO UPDATE SET floor = max(floor, excluded.floor)""",
                    (max(ids),),
                )
            signups = conn.execute(
                "DELETE FROM signups WHERE lower(email) = lower(?)", (email,)
            ).rowcount
            conn.execute(
                "INSERT OR IGNORE INTO erased (address_hash, erased_at) VALUES (?, ?)",
                (erased_key(email), self.now_text()),
            )
        return Erased(ids, deliveries, bounces, signups)

    def _strip_bounces(self, ids: tuple[int, ...], email: str) -> int:
        """Strip the reports about `ids` of whom they were about, and every report that
        quotes `email` (in the diagnostic, or the id a webhook made of it) of the quote, even
        one about another subscriber (say the address they forwarded to), which keeps whom it
        was about. Quoting is a substring match: a report quoting joann@… loses its
        diagnostic when ann@… is erased, a small loss for never keeping the address. How
        many were stripped."""
        pattern = "%" + _like_escaped(email.translate(_ASCII_LOWER)) + "%"
        marks = ",".join("?" * len(ids)) or "NULL"
        rows = self.conn.execute(
            f"""SELECT id, report_id, subscriber_id, message_id FROM bounces
                WHERE subscriber_id IN ({marks})
                   OR lower(diagnostic) LIKE ? ESCAPE '\\' OR lower(report_id) LIKE ? ESCAPE '\\'""",
            (*ids, pattern, pattern),
        ).fetchall()
        for row_id, report_id, subscriber_id, message_id in rows:
            theirs = subscriber_id is None or subscriber_id in ids
            self.conn.execute(
                """UPDATE bounces SET subscriber_id = ?, diagnostic = '', message_id = ?,
                   report_id = ? WHERE id = ?""",
                (
                    None if theirs else subscriber_id,
                    None if theirs else message_id,
                    report_id_without(report_id, email),
                    row_id,
                ),
            )
        return len(rows)

    def erased(self, emails: list[str]) -> set[str]:
        """Those of `emails` that were erased (compared in lower case)."""
        return erased_among(self.conn, emails)


def erased_among(conn: sqlite3.Connection, emails: Collection[str]) -> set[str]:
    """Those of `emails` that were erased (compared in lower case), read through `conn`."""
    if not emails or conn.execute("SELECT 1 FROM erased LIMIT 1").fetchone() is None:
        return set()  # the usual case: nobody erased, nothing to hash
    keyed = [(erased_key(e), e) for e in emails]  # two spellings may share one key
    names = sorted({key for key, _ in keyed})
    found: set[str] = set()
    for start in range(0, len(names), 500):  # within SQLite's host-parameter limit
        chunk = names[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT address_hash FROM erased WHERE address_hash IN ({marks})", chunk
        ).fetchall()
        found.update(r[0] for r in rows)
    return {email for key, email in keyed if key in found}
