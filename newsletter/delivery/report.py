"""What one delivery run did, and what it found in the ledger: counts, a summary, an exit code."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass
class DeliveryReport:
    """What one run did (counts of this run) and what it found in the ledger."""

    date: dt.date
    sent: int = 0
    skipped: int = 0  # empty selection
    unsubscribed: int = 0  # stopped being active during the run: not sent
    deferred: int = 0
    failed: int = 0
    bounced: int = 0  # of the failed: address does not exist, subscriber marked bounced
    ambiguous: int = 0  # claims left by a run that died (message may or may not have gone)
    # claims found at the end while another send of the database still ran: its messages in
    # flight (or a dead run's, which that send reports when it ends), so not counted ambiguous
    in_other_send: int = 0
    already_sent: int = 0
    already_failed: int = 0
    stopped: str | None = None  # why the run stopped early, if it did
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing is deferred, failed or ambiguous and the run did not stop."""
        return not (self.deferred or self.failed or self.ambiguous or self.stopped)

    @property
    def exit_code(self) -> int:
        """1 unless everything went; a dry run, which sends nothing, fails only when it stopped."""
        if self.dry_run:
            return 0 if self.stopped is None else 1
        return 0 if self.ok else 1

    def summary(self) -> str:
        """The one-line summary: sent / skipped / deferred / failed / ambiguous."""
        verb = "would send" if self.dry_run else "sent"
        line = (
            f"{verb} {self.sent}, skipped {self.skipped + self.unsubscribed}, deferred {self.deferred}, "
            f"failed {self.failed}, ambiguous {self.ambiguous}"
        )
        notes = []
        if self.unsubscribed:  # among the skipped: left while the run went, not an empty selection
            notes.append(f"{self.unsubscribed} unsubscribed during the run")
        if self.bounced:
            notes.append(f"{self.bounced} bounced")
        if self.in_other_send:
            notes.append(f"{self.in_other_send} claimed by another send still running")
        if self.already_sent or self.already_failed:
            notes.append(f"earlier runs: {self.already_sent} sent, {self.already_failed} failed")
        return f"{line} ({'; '.join(notes)})" if notes else line
