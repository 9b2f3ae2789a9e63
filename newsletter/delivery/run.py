"""One delivery run's state, shared by its producer and its workers (`deliver` drives it).

The producer streams the audience in batches, reads the ledger, composes, and claims the rows
of `concurrency` messages at a time before queueing them; each worker checks the subscriber is
unchanged just before sending (else composes again or releases the claim), sends with retries
and backoff, and records the outcome: `sent` only after the server's 250 to DATA.
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

from ..errors import DeliveryError, PermanentFailure, SubscriberError, TemporaryFailure
from ..mail.outgoing import OutgoingMessage
from ..model import Subscriber
from ..store import Part, Store
from ..store.ledger import INACTIVE
from .pacer import Pacer
from .refusals import RefusalStreak, masked_reply
from .report import DeliveryReport

__all__ = ["BATCH", "Compose", "Progress", "Run", "Sender"]

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
class Job:
    subscriber: Subscriber
    message: OutgoingMessage
    previous: str = "new"  # the ledger state its claim took over


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class Run:
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
        self.queue: asyncio.Queue[Job | None] = asyncio.Queue()
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
                group: list[Job] = []
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
                    group.append(Job(subscriber, message))
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

    async def hand_over(self, group: list[Job]) -> None:
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

    async def deliver_one(self, job: Job) -> None:
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

    def left(self, job: Job) -> None:
        """The subscriber is no longer active: the claim released, counted as unsubscribed."""
        self.release(job.subscriber, job.previous)
        self.report.unsubscribed += 1
        self.progress("unsubscribed")

    def recompose(self, job: Job) -> Job | None:
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

    def refused(self, job: Job, attempts: int, exc: PermanentFailure) -> None:
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
