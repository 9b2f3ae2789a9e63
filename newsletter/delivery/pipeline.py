"""The send pipeline: every active subscriber gets one day's email exactly once, through a Sender.

For each active subscriber (streamed in batches, so memory stays flat): look up the ledger and
compose the message; claim the ledger rows of `concurrency` composed messages at a time (one
transaction, committed before anything is sent); then in one of `concurrency` workers check the
subscriber is still active and unchanged (an unsubscribe that committed meanwhile releases the
claim, a change of preferences composes the message again), send with retries and backoff, and
record the outcome (the run's state: run.py). `sent` is written only after the server's 250 to
DATA. A claim left by a run that died is ambiguous: reported, and resent only when asked
(`resend_ambiguous`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

from ..errors import DeliveryError, PermanentFailure, TemporaryFailure
from ..store import Part, Store
from .heap import frozen_heap
from .report import DeliveryReport
from .run import BATCH, Compose, Progress, Run, Sender
from .runlock import another_send_running, edition_lock, send_lock

__all__ = [
    "BATCH",
    "Compose",
    "DeliveryReport",
    "PermanentFailure",
    "Progress",
    "Sender",
    "TemporaryFailure",
    "deliver",
    "settle_claims",
]


async def deliver(
    *,
    date: dt.date,
    store: Store,
    compose: Compose,
    sender: Sender,
    concurrency: int = 8,
    rate: float = 0.0,
    retries: int = 3,
    backoff: float = 1.0,
    resend_ambiguous: bool = False,
    record: bool = True,
    progress: Progress | None = None,
    give_up_after: int = 50,
    sent_batch: int | None = None,
    part: Part | None = None,
    kind: str = "daily",
) -> DeliveryReport:
    """Send `date`'s email to every active subscriber who still needs it; returns the report.

    `kind` "daily" sends to daily readers, keyed in the ledger by the digest's day; "weekly"
    to weekly readers, keyed by the Monday of the week (`date`).

    `compose` returns None for an empty selection (counted as skipped). `retries` is attempts per
    message; temporary failures wait `backoff`, 2x, 4x... seconds in between, then the message is
    left deferred for the next run. `record=False` (dry runs, outboxes) reads the ledger but writes
    nothing. Claims are committed `concurrency` at a time and sent outcomes `sent_batch` (default
    2 x concurrency) at a time, so a crash leaves at most 3 x concurrency (claimed and queued or
    in flight) + sent_batch claims ambiguous. The sender is not closed
    here. Errors from `compose` stop the run and propagate. `part` (index, count) sends only to
    the subscribers whose id % count == index: one process's share of a split send. While it
    composes, what was alive when it began is kept from the garbage collector (`frozen_heap`):
    prepare the composer (`Composer.prepare`) first, so the day's pieces are among it.
    """
    # Only one send at a time may take over ambiguous claims (runlock); a split send's
    # parent holds the lock for its workers.
    locked = record and part is None and str(store.path) != ":memory:"
    with contextlib.ExitStack() as stack:
        try:
            if locked:
                stack.enter_context(send_lock(store.path, alone=resend_ambiguous))
                stack.enter_context(edition_lock(store.path, kind=kind, date=date))
            await sender.open()
        except DeliveryError as exc:  # nothing can be sent: stop before anything is claimed
            report = DeliveryReport(date=date, dry_run=not record, stopped=str(exc))
        else:
            report = await _run(
                Run(
                    date=date,
                    store=store,
                    compose=compose,
                    sender=sender,
                    concurrency=concurrency,
                    rate=rate,
                    retries=retries,
                    backoff=backoff,
                    resend_ambiguous=resend_ambiguous,
                    record=record,
                    progress=progress,
                    give_up_after=give_up_after,
                    sent_batch=sent_batch or 2 * max(1, concurrency),
                    part=part,
                    kind=kind,
                )
            )
    if record:  # the lock let go: what is still claimed may be another send's in flight
        settle_claims(report, store=store, part=part, kind=kind, locked=locked)
    return report


async def _run(run: Run) -> DeliveryReport:
    """The run's producer and workers, to its end; the report."""
    workers = [asyncio.create_task(run.work()) for _ in range(run.concurrency)]
    try:
        with frozen_heap():
            await run.produce()
        await asyncio.wait(workers)  # not gather: an interrupt must not cancel messages mid-send
    except BaseException:
        # Interrupted or compose failed: messages on the wire finish, queued ones are dropped
        # (never claimed), so a clean interrupt leaves nothing ambiguous.
        run.stop("interrupted")
        await asyncio.wait(workers)
        raise
    finally:
        if run.record:
            run.flush()
    if run.errors:
        raise run.errors[0]
    return run.report


def settle_claims(
    report: DeliveryReport, *, store: Store, part: Part | None, kind: str, locked: bool
) -> None:
    """Count the claims left in the ledger once a send is over, in `report`.

    They are ambiguous unless another send of the same edition (kind and date) still runs.
    `locked`: this send held the edition's lock and has let go of it. Then they are that send's
    messages in flight, or a dead run's, which that send reports when it ends (the send of the
    edition that ends last sees no other).
    """
    claimed = store.delivery_counts(report.date, part=part, kind=kind)["claimed"]
    # Asked even with nothing claimed: the one that finds no other removes the lock file.
    others = locked and another_send_running(store.path, kind=kind, date=report.date)
    if claimed and others:
        report.in_other_send, report.ambiguous = claimed, 0
    else:
        report.ambiguous = claimed
