"""Pending sign-ups awaiting confirmation, and turning a confirmed one into a subscriber."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from ..model import CADENCES, EVERY_PAPER, Filters
from .base import StoreBase, dump_filters, insert_subscriber, load_filters
from .erasure import erased_key

ConfirmOutcome = Literal["created", "reactivated", "already_active", "already_confirmed"]


@dataclass(frozen=True, slots=True)
class Signup:
    """A sign-up form as submitted: the address and filters asked for, and when."""

    id: int
    email: str
    name: str
    filters: Filters
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    nonce: str  # random, named by the confirmation link; "" for sign-ups made before nonces
    cadence: str = "daily"


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What confirming a sign-up did, and the subscriber it concerns."""

    subscriber_id: int
    outcome: ConfirmOutcome


def _signup(row: dict[str, Any]) -> Signup:
    confirmed = row["confirmed_at"]
    return Signup(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        filters=load_filters(row),
        created_at=dt.datetime.fromisoformat(row["created_at"]),
        confirmed_at=dt.datetime.fromisoformat(confirmed) if confirmed else None,
        nonce=row["nonce"],
        cadence=row["cadence"],
    )


class SignupStore(StoreBase):
    """Sign-ups not yet confirmed; only a confirmation creates or reactivates a subscriber."""

    def add_signup(
        self,
        email: str,
        *,
        name: str = "",
        filters: Filters = EVERY_PAPER,
        cadence: str = "daily",
    ) -> Signup:
        """Record a sign-up (email already normalised, filters and cadence validated)."""
        if cadence not in CADENCES:
            raise ValueError(f"unknown cadence {cadence!r}")
        with self.transaction() as conn:
            cursor = conn.execute(
                """INSERT INTO signups (email, name, keywords, exclude, min_votes, max_papers, created_at,
                   nonce, cadence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    email,
                    name,
                    *dump_filters(filters),
                    self.now_text(),
                    secrets.token_urlsafe(12),
                    cadence,
                ),
            )
            new_id = int(cursor.lastrowid or 0)
        found = self.signup(new_id)
        assert found is not None
        return found

    def signup(self, signup_id: int) -> Signup | None:
        """One sign-up by id, confirmed or not."""
        rows = self.query("SELECT * FROM signups WHERE id = ?", (signup_id,))
        return _signup(rows[0]) if rows else None

    def confirm_signup(self, signup_id: int) -> Confirmation | None:
        """Activate (or create) the subscriber a sign-up names, once; None if there is no such sign-up.

        A new or inactive address gets the sign-up's filters; an active subscriber keeps theirs,
        so a stranger's sign-up can never change what an existing subscriber receives.
        """
        now = self.now_text()
        with self.transaction() as conn:
            found = self.signup(signup_id)
            if found is None:
                return None
            email, name, filters = found.email, found.name, found.filters
            current = conn.execute(
                "SELECT id, status FROM subscribers WHERE email_key = lower(?)", (email,)
            ).fetchone()
            if found.confirmed_at is not None and current is not None:
                return Confirmation(int(current[0]), "already_confirmed")
            outcome: ConfirmOutcome
            if current is None:
                subscriber_id = insert_subscriber(
                    conn,
                    email=email,
                    name=name,
                    filters=filters,
                    status="active",
                    now=now,
                    cadence=found.cadence,
                )
                outcome = "created"
                # Their own confirmed request: an erasure no longer keeps them out.
                conn.execute("DELETE FROM erased WHERE address_hash = ?", (erased_key(email),))
            elif current[1] == "active":
                subscriber_id, outcome = int(current[0]), "already_active"
            else:
                subscriber_id, outcome = int(current[0]), "reactivated"
                conn.execute(
                    """UPDATE subscribers SET name = CASE WHEN ? != '' THEN ? ELSE name END, keywords = ?,
                       exclude = ?, min_votes = ?, max_papers = ?, cadence = ?, status = 'active',
                       updated_at = ?, status_changed_at = ? WHERE id = ?""",
                    (name, name, *dump_filters(filters), found.cadence, now, now, subscriber_id),
                )
            conn.execute(
                "UPDATE signups SET confirmed_at = ? WHERE id = ? AND confirmed_at IS NULL",
                (now, signup_id),
            )
        return Confirmation(subscriber_id, outcome)

    def forget_signup(self, signup_id: int) -> None:
        """Delete an unconfirmed sign-up (its confirmation could not be sent)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM signups WHERE id = ? AND confirmed_at IS NULL", (signup_id,))

    def purge_signups(self, *, before: dt.datetime) -> int:
        """Delete unconfirmed sign-ups made before `before`; how many went."""
        cutoff = before.astimezone(dt.UTC).isoformat(timespec="seconds")
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM signups WHERE confirmed_at IS NULL AND created_at < ?", (cutoff,)
            )
            return cursor.rowcount
