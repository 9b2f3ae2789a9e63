"""The send pipeline: every active subscriber gets one day's email exactly once, through a Sender.

For each active subscriber (streamed in batches, so memory stays flat): look up the ledger and
compose the message; claim the ledger rows of `concurrency` composed messages at a time (one
transaction, committed before anything is sent); then in one of `concurrency` workers check the
subscriber is still active (an unsubscribe that committed meanwhile releases the claim), send
with retries and backoff, and record the outcome. `sent` is written only after the server's 250
to DATA. A claim left by a run that died is ambiguous: reported, and resent only when asked
(`resend_ambiguous`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..errors import (
    DeliveryError,
    PermanentFailure,
    SubscriberError,
    TemporaryFailure,
)
from ..mail.outgoing import OutgoingMessage
from ..model import Subscriber
from ..store import Part, Store
from ..store.ledger import INACTIVE
from .heap import frozen_heap
from .pacer import Pacer
from .refusals import RefusalStreak, masked_reply
from .report import DeliveryReport
from .runlock import another_send_running, edition_lock, send_lock

__all__ = [
    "Compose",
    "DeliveryReport",
    "PermanentFailure",
    "Progress",
    "Sender",
    "TemporaryFailure",
    "deliver",
]

Compose = Callable[[Subscriber], OutgoingMessage | None]
Progress = Callable[[str], None]
T = TypeVar("T")
BATCH = 500


class Sender(Protocol):
    """Where messages go: SMTP (newsletter.delivery.smtp), a folder of .eml files (newsletter.delivery.outbox).

    `open` gets ready before the first message is claimed (SMTP: connects and logs in) and
    raises DeliveryError when the sender cannot work at all, so such a run claims nothing.
    `send` returns once the message is accepted. It raises TemporaryFailure (try again later),
    PermanentFailure (never; `.bounced` when the address does not exist) or any other
    DeliveryError when the sender cannot work at all (no connection, TLS, login): the run stops.
    """

    async def open(self) -> None: ...

    async def send(self, message: OutgoingMessage) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Job:
    subscriber: Subscriber
    message: OutgoingMessage
    previous: str = "new"  # the ledger state its claim took over


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class _Run:
    """The state of one delivery run, shared by the producer and the workers."""

    def __init__(
        self,
        *,
        date: dt.date,
        store: Store,
        compose: Compose,
        sender: Sender,
        concurrency: int,
        rate: float,
        retries: int,
        backoff: float,
        resend_ambiguous: bool,
        record: bool,
        progress: Progress | None,
        give_up_after: int,
        sent_batch: int,
        part: Part | None,
        kind: str,
    ) -> None:
        self.date = date
        self.kind = kind
        self.store = store
        self.compose = compose
        self.sender = sender
        self.concurrency = max(1, concurrency)
        self.pacer = Pacer(rate if record else 0.0)  # a dry run or an outbox sends nothing
        self.retries = max(1, retries)
        self.backoff = backoff
        self.resend_ambiguous = resend_ambiguous
        self.record = record
        self.progress = progress or (lambda outcome: None)
        self.give_up_after = give_up_after
        self.sent_batch = max(1, sent_batch)
        self.part = part
        self.unflushed: list[tuple[int, int]] = []
        self.first_unflushed = 0.0
        self.report = DeliveryReport(date=date, dry_run=not record)
        # Made at the first deferral, as `streak` at the first refusal (both count domains).
        self.deferrals: RefusalStreak | None = None
        self.domains: int | None = None  # the list's domains, up to 3: counted once needed
        # Made at the first refusal for good, which is rare: it counts the list's domains.
        self.streak: RefusalStreak | None = None
        # Every refusal of this run by its masked reply: (subscriber, state taken over, bounced).
        # When a streak stops the run, all of them with its reply are undone, those refused
        # before a message that was already on the wire was accepted included.
        self.refusals: dict[str, list[tuple[Subscriber, str, bool]]] = {}
        self.errors: list[Exception] = []
        # Claimed messages wait here: with the group being claimed, those in flight and the sent
        # rows not yet flushed (2 x concurrency), a crash leaves at most 5 x concurrency ambiguous.
        # (`room` bounds the queue: the queue itself is unbounded, so its end markers always go in.)
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.room = asyncio.Semaphore(self.concurrency)
        self.stopping = asyncio.Event()

    def stop(self, reason: str) -> None:
        if self.report.stopped is None:
            self.report.stopped = reason
        self.stopping.set()  # wakes workers waiting out a backoff

    async def pause(self, seconds: float) -> None:
        """Wait `seconds` before a retry, or less when the run stops meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def produce(self) -> None:
        """Compose messages for every active subscriber the ledger says still needs one."""
        try:
            # The daily edition goes to daily readers, the weekly one to weekly readers.
            audience = self.store.active_subscribers(batch=BATCH, cadence=self.kind, part=self.part)
            for batch in _batched(audience, BATCH):
                if self.report.stopped:
                    break
                states = self.store.delivery_states(
                    self.date, [s.id for s in batch], kind=self.kind
                )
                skipped: list[int] = []
                group: list[_Job] = []
                for subscriber in batch:
                    if self.report.stopped:
                        break
                    state = states.get(subscriber.id)
                    if state == "sent":
                        self.report.already_sent += 1
                        self.progress("already sent")
                        continue
                    if state == "failed":
                        self.report.already_failed += 1
                        self.progress("already failed")
                        continue
                    if state == "claimed" and not self.resend_ambiguous:
                        if not self.record:
                            self.report.ambiguous += 1
                        self.progress("ambiguous")
                        continue
                    try:
                        message = self.compose(subscriber)
                    except SubscriberError as exc:  # e.g. an address no header can hold
                        self.fail_unsendable(subscriber, str(exc))
                        continue
                    if message is None:
                        self.report.skipped += 1
                        skipped.append(subscriber.id)
                        self.progress("skipped")
                        continue
                    group.append(_Job(subscriber, message))
                    if len(group) >= self.concurrency:
                        await self.hand_over(group)
                        group = []
                if group and not self.report.stopped:
                    await self.hand_over(group)
                if self.record:
                    self.store.record_skipped(self.date, skipped, kind=self.kind)
        finally:
            # No await here: an interrupt (Ctrl-C, SIGTERM) cancels this task at its next one,
            # and a worker whose end marker never came would wait for ever.
            for _ in range(self.concurrency):
                self.queue.put_nowait(None)

    async def hand_over(self, group: list[_Job]) -> None:
        """Claim the group's rows in one transaction and queue the claimed messages."""
        jobs = group
        if self.record:
            taken = self.store.claim_deliveries(
                self.date,
                [(job.subscriber.id, job.message.message_id) for job in group],
                take_ambiguous=self.resend_ambiguous,
                kind=self.kind,
            )
            jobs = []
            for job in group:
                previous = taken[job.subscriber.id]
                if previous is None:  # another run claimed or finished it since we looked
                    self.progress("taken")
                elif previous == INACTIVE:
                    self.report.unsubscribed += 1
                    self.progress("unsubscribed")
                else:
                    jobs.append(dataclasses.replace(job, previous=previous))
        queued = 0
        try:
            for job in jobs:
                await self.room.acquire()
                self.queue.put_nowait(job)
                queued += 1
        finally:
            for job in jobs[queued:]:  # interrupted: claimed, never handed to a worker
                self.release(job.subscriber, job.previous)

    async def work(self) -> None:
        """Take claimed messages off the queue and deliver them until the queue ends."""
        while (job := await self.queue.get()) is not None:
            self.room.release()
            try:
                if self.report.stopped:
                    self.release(job.subscriber, job.previous)  # drain: claimed, never sent
                else:
                    await self.deliver_one(job)
            except Exception as exc:  # a bug or a broken database: stop, re-raise after the drain
                self.errors.append(exc)
                self.stop(f"unexpected error: {exc}")

    async def deliver_one(self, job: _Job) -> None:
        # Checked right before sending, so an unsubscribe or a change of preferences that
        # committed since the subscriber was read is honoured.
        state = self.store.state_now(job.subscriber)
        if state == "inactive":
            self.left(job)
            return
        if state == "changed":
            again = self.recompose(job)
            if again is None:
                return
            job = again
        subscriber, message, previous = job.subscriber, job.message, job.previous
        attempts, last_error = 0, ""
        while True:
            await self.pacer.wait(self.stopping)
            if self.report.stopped:  # the run stopped while this one waited: not handed over
                if attempts == 0:
                    self.release(subscriber, previous)
                else:
                    self.finish(subscriber, "deferred", attempts, last_error)
                return
            attempts += 1
            try:
                # From here until send returns, a crash leaves the claim ambiguous.
                await self.sender.send(message)
            except TemporaryFailure as exc:
                last_error = str(exc)
                if attempts >= self.retries:
                    self.finish(subscriber, "deferred", attempts, last_error)
                    return
                await self.pause(self.backoff * 2 ** (attempts - 1))
                continue
            except PermanentFailure as exc:
                self.refused(job, attempts, exc)
                return
            except DeliveryError as exc:
                # The sender cannot work at all and this message never left.
                if attempts == 1:
                    self.release(subscriber, previous)
                else:
                    self.finish(subscriber, "deferred", attempts - 1, last_error)
                self.stop(str(exc))
                return
            self.finish(subscriber, "sent", attempts)
            return

    def left(self, job: _Job) -> None:
        """The subscriber is no longer active: the claim released, counted as unsubscribed."""
        self.release(job.subscriber, job.previous)
        self.report.unsubscribed += 1
        self.progress("unsubscribed")

    def recompose(self, job: _Job) -> _Job | None:
        """The job for the subscriber as stored now, who was written since being read; None
        when they now get nothing here (the claim released and counted, or failed)."""
        fresh = self.store.subscriber(job.subscriber.id)
        if fresh is None or fresh.status != "active":
            self.left(job)
            return None
        try:
            message = self.compose(fresh) if fresh.cadence == self.kind else None
        except SubscriberError as exc:  # e.g. a new address no header can hold
            self.finish(fresh, "failed", 0, str(exc))
            return None
        if message is None:  # nothing matches now, or they moved to the other edition
            self.release(fresh, job.previous)
            self.report.skipped += 1
            self.progress("skipped")
            return None
        return dataclasses.replace(job, subscriber=fresh, message=message)

    def refused(self, job: _Job, attempts: int, exc: PermanentFailure) -> None:
        """A refusal for good: failed (and the address bounced, if it says so), unless it is
        the relay refusing every recipient alike."""
        self.finish(job.subscriber, "failed", attempts, str(exc), bounced=exc.bounced)
        if self.streak is None:  # at 3 domains or, on a list at fewer, at all of them
            self.streak = RefusalStreak(domains=self.spread())
        streak = self.streak
        tripped = streak.add(exc.reply, recipient=job.message.recipient)
        if exc.reply is None:
            return
        alike = self.refusals.setdefault(exc.reply, [])
        alike.append((job.subscriber, job.previous, exc.bounced))
        if not tripped:
            return
        # The relay refuses everyone: what it refused is not these recipients' fault. The streak
        # stays past its mark, so each refusal alike that was in flight is undone here too.
        self.refusals[exc.reply] = []
        for subscriber, previous, bounced in alike:
            self.release(subscriber, previous, held="failed")
            if bounced and self.record:
                self.store.set_status(subscriber.id, "active", only_from="bounced")
            self.report.bounced -= bounced
        self.report.failed -= len(alike)
        self.stop(
            f"stopped after {streak.count} recipients at {len(streak.seen)} domains "
            f"in a row were refused alike (the last: {exc}): that is the relay refusing every "
            f"message, not the addresses; those {len(alike)} were left unsent and no "
            "subscriber was changed; run again once the relay accepts mail"
        )

    def spread(self) -> int:
        """How many recipient domains a run of failures must span to be the relay's doing, not
        one domain's: 3, or all of them on a list at fewer. Counted the first time it is asked
        (a query over the list), which only failures make."""
        if self.domains is None:
            domains = self.store.audience_domains(cadence=self.kind, part=self.part)
            self.domains = max(1, min(3, domains))
        return self.domains

    def fail_unsendable(self, subscriber: Subscriber, error: str) -> None:
        """A subscriber no message can be built for: failed, without ever reaching a server."""
        taken = self.record and self.store.claim_delivery(
            self.date, subscriber.id, message_id="", kind=self.kind
        )
        if self.record and taken is None:
            return
        self.finish(subscriber, "failed", 0, error)

    def flush(self) -> None:
        """Commit the sent outcomes recorded since the last flush."""
        if self.unflushed:
            batch, self.unflushed = self.unflushed, []
            self.store.mark_sent(self.date, batch, kind=self.kind)

    def release(self, subscriber: Subscriber, previous: str, *, held: str = "claimed") -> None:
        if self.record:
            self.store.release_claim(
                self.date, subscriber.id, previous=previous, kind=self.kind, held=held
            )

    def finish(
        self,
        subscriber: Subscriber,
        status: str,
        attempts: int,
        error: str | None = None,
        *,
        bounced: bool = False,
    ) -> None:
        if self.record:
            if status == "sent":
                # Sent rows are committed in small batches (one commit per message would cost
                # as much as the SMTP work). A crash before the flush leaves them `claimed`:
                # reported as ambiguous, never silently resent.
                self.unflushed.append((subscriber.id, attempts))
                now = asyncio.get_running_loop().time()
                if len(self.unflushed) == 1:
                    self.first_unflushed = now
                if len(self.unflushed) >= self.sent_batch or now - self.first_unflushed > 0.25:
                    self.flush()
            else:
                self.store.finish_delivery(
                    self.date,
                    subscriber.id,
                    status=status,
                    attempts=attempts,
                    error=error,
                    kind=self.kind,
                )
        report = self.report
        if status == "sent":
            report.sent += 1
            for streak in (self.deferrals, self.streak):
                if streak is not None:
                    streak.add(None, recipient="")
        elif status == "deferred":
            report.deferred += 1
            if self.deferrals is None:
                self.deferrals = RefusalStreak(at=self.give_up_after, domains=self.spread())
            streak = self.deferrals
            reply = masked_reply(stage="", code=0, text=error or "", recipient=subscriber.email)
            if streak.add(reply, recipient=subscriber.email):
                self.stop(
                    f"stopped after {streak.count} deferred messages in a row "
                    f"(last: {error}); run again later to send the rest"
                )
        else:
            report.failed += 1
            if bounced:
                report.bounced += 1
                if self.record:
                    self.store.set_status(subscriber.id, "bounced")
        self.progress(status)


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
                _Run(
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


async def _run(run: _Run) -> DeliveryReport:
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
