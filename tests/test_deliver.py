"""The send pipeline against real aiosmtpd servers and a real SQLite ledger: exactly once, always."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings
from newsletter.delivery.heap import frozen_heap
from newsletter.delivery.outbox import CountingSender, OutboxSender
from newsletter.delivery.pipeline import DeliveryReport, Sender, deliver
from newsletter.delivery.smtp import SMTPSender
from newsletter.delivery.testcopy import send_test_copy
from newsletter.errors import DeliveryError, TemporaryFailure
from newsletter.mail.message import simple_message
from newsletter.mail.outgoing import OutgoingMessage
from newsletter.model import Filters, Subscriber
from newsletter.store import Store
from tests.conftest import PINNED_NOW
from tests.smtp_servers import RecordingHandler, smtp_server

DAY = dt.date(2024, 12, 13)
SETTINGS = Settings()


def compose_for(
    day: dt.date = DAY, *, empty: Collection[str] = ()
) -> Callable[[Subscriber], OutgoingMessage | None]:
    """A small stdlib compose: one text message per subscriber, None for addresses in `empty`."""

    def compose(subscriber: Subscriber) -> OutgoingMessage | None:
        if subscriber.email in empty:
            return None
        message_id = f"digest.{day}.{subscriber.id}@test.example"
        data = simple_message(
            settings=SETTINGS,
            to=subscriber.email,
            subject=f"Daily Papers {day}",
            text=f"Hello {subscriber.name or subscriber.email}, papers of {day}.",
            message_id=message_id,
            clock=lambda: PINNED_NOW,
        )
        return OutgoingMessage(
            subscriber.id, subscriber.email, SETTINGS.envelope_from, message_id, data
        )

    return compose


def add_people(store: Store, count: int, *, start: int = 0) -> list[Subscriber]:
    return [
        store.add_subscriber(f"reader{i}@example.com", name=f"Reader {i}")
        for i in range(start, start + count)
    ]


@dataclass
class SessionCountingHandler(RecordingHandler):
    """A recording server that also counts SMTP sessions (EHLOs): one per connection."""

    sessions: int = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.sessions += 1
        return responses


def recipients(handler: RecordingHandler) -> Counter[str]:
    return Counter(r for received in handler.received for r in received.rcpt_tos)


def smtp(port: int, **options: Any) -> SMTPSender:
    options.setdefault("pool_size", 4)
    return SMTPSender(host="127.0.0.1", port=port, tls="none", timeout=5, **options)


async def send_all(
    store: Store, sender: Sender, *, compose: Any = None, close: bool = True, **options: Any
) -> DeliveryReport:
    options.setdefault("concurrency", 4)
    options.setdefault("backoff", 0.01)
    try:
        return await deliver(
            date=DAY, store=store, compose=compose or compose_for(), sender=sender, **options
        )
    finally:
        if close:
            await sender.aclose()


async def test_every_subscriber_gets_exactly_one_message_and_a_rerun_sends_nothing(
    store: Store,
) -> None:
    people = add_people(store, 30)
    with smtp_server(RecordingHandler()) as (server, handler):
        report = await send_all(store, smtp(server.port))
        assert (report.sent, report.ok, report.summary().split(",")[0]) == (30, True, "sent 30")
        assert recipients(handler) == Counter(p.email for p in people)
        message = handler.received[0].message
        assert message["Subject"] == f"Daily Papers {DAY}"
        assert handler.received[0].mail_from == SETTINGS.envelope_from  # bounces, not From

        again = await send_all(store, smtp(server.port))
        assert (again.sent, again.already_sent, again.ok) == (0, 30, True)
        assert len(handler.received) == 30

        newcomer = store.add_subscriber("late@example.com")
        third = await send_all(store, smtp(server.port))
        assert third.sent == 1
        assert recipients(handler)[newcomer.email] == 1
    rows = {d.subscriber_id: d for d in store.deliveries(DAY)}
    assert all(d.status == "sent" and d.attempts == 1 for d in rows.values())
    assert rows[people[3].id].message_id == f"digest.{DAY}.{people[3].id}@test.example"


async def test_composing_runs_with_the_heap_frozen_and_unfrozen_after(store: Store) -> None:
    add_people(store, 5)
    plain = compose_for()
    seen: list[int] = []

    def compose(subscriber: Subscriber) -> OutgoingMessage | None:
        seen.append(gc.get_freeze_count())
        return plain(subscriber)

    assert gc.get_freeze_count() == 0
    report = await send_all(store, CountingSender(), compose=compose)
    assert report.sent == 5 and len(seen) == 5
    assert all(count > 0 for count in seen)  # what existed before the send was set aside
    assert gc.get_freeze_count() == 0  # and given back to the collector


def test_a_frozen_heap_inside_another_leaves_the_freeze_to_it() -> None:
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen  # the inner one did not unfreeze
    assert gc.get_freeze_count() == 0


async def test_empty_selections_are_skipped_recorded_and_reconsidered(store: Store) -> None:
    people = add_people(store, 4)
    quiet = {people[1].email}
    with smtp_server(RecordingHandler()) as (server, handler):
        report = await send_all(store, smtp(server.port), compose=compose_for(empty=quiet))
        assert (report.sent, report.skipped, report.ok) == (3, 1, True)
        assert "skipped 1" in report.summary()
        assert store.delivery_states(DAY, [people[1].id]) == {people[1].id: "skipped"}
        # Their keywords changed and the day now has something for them: the re-run sends it.
        report = await send_all(store, smtp(server.port))
        assert (report.sent, report.already_sent) == (1, 3)
        assert recipients(handler)[people[1].email] == 1


async def test_only_active_subscribers_are_mailed(store: Store) -> None:
    people = add_people(store, 3)
    store.set_status(people[0].id, "unsubscribed")
    store.add_subscriber("pending@example.com", status="pending")
    with smtp_server(RecordingHandler()) as (server, handler):
        await send_all(store, smtp(server.port))
    assert set(recipients(handler)) == {people[1].email, people[2].email}


async def test_an_unsubscribe_that_commits_during_a_send_is_honoured(
    store: Store, tmp_path: Path
) -> None:
    people = add_people(store, 12)
    leaver = people[8]

    def unsubscribe_when_third_arrives(envelope: Any, attempt: int) -> str | None:
        if envelope.rcpt_tos == [people[2].email]:
            # The web service's one-click unsubscribe, from its own connection, mid-send.
            with Store(tmp_path / "test.db") as web:
                web.set_status(leaver.id, "unsubscribed")
        return None

    with smtp_server(RecordingHandler(reply=unsubscribe_when_third_arrives)) as (server, handler):
        report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
    got = recipients(handler)
    assert leaver.email not in got
    assert all(got[p.email] == 1 for p in people if p is not leaver)
    assert (report.sent, report.unsubscribed, report.ok) == (11, 1, True)
    assert report.summary() == (
        "sent 11, skipped 1, deferred 0, failed 0, ambiguous 0 (1 unsubscribed during the run)"
    )
    assert store.delivery_states(DAY, [leaver.id]) == {}


async def test_connections_are_reused_and_recycled(store: Store) -> None:
    add_people(store, 20)
    with smtp_server(SessionCountingHandler()) as (server, handler):
        sender = smtp(server.port, pool_size=1, messages_per_connection=6)
        report = await send_all(store, sender, concurrency=1)
    assert report.sent == 20
    assert handler.sessions == 4  # 6 + 6 + 6 + 2


async def test_the_rate_limit_spaces_messages(store: Store) -> None:
    add_people(store, 8)
    with smtp_server(RecordingHandler()) as (server, handler):
        started = time.perf_counter()
        await send_all(store, smtp(server.port), rate=40.0)
        elapsed = time.perf_counter() - started
    assert len(handler.received) == 8
    assert elapsed >= 7 / 40 * 0.9


async def test_ambiguous_claims_are_reported_and_resent_only_when_asked(store: Store) -> None:
    people = add_people(store, 5)
    # A run that died after claiming (maybe after the server accepted): the row says `claimed`.
    store.claim_delivery(DAY, people[2].id, message_id="x@y")
    with smtp_server(RecordingHandler()) as (server, handler):
        report = await send_all(store, smtp(server.port))
        assert (report.sent, report.ambiguous, report.ok) == (4, 1, False)
        assert "ambiguous 1" in report.summary()
        assert people[2].email not in recipients(handler)

        report = await send_all(store, smtp(server.port), resend_ambiguous=True)
        assert (report.sent, report.ambiguous, report.ok) == (1, 0, True)
    assert recipients(handler)[people[2].email] == 1


async def test_deferred_messages_are_sent_by_the_next_run(store: Store) -> None:
    people = add_people(store, 3)
    store.claim_delivery(DAY, people[0].id, message_id="x@y")
    store.finish_delivery(DAY, people[0].id, status="deferred", attempts=3, error="451")
    with smtp_server(RecordingHandler()) as (server, handler):
        report = await send_all(store, smtp(server.port))
    assert report.sent == 3
    assert recipients(handler)[people[0].email] == 1
    (row,) = [d for d in store.deliveries(DAY) if d.subscriber_id == people[0].id]
    assert (row.status, row.attempts) == ("sent", 4)


async def test_a_dry_run_reads_the_ledger_and_writes_nothing(store: Store) -> None:
    people = add_people(store, 4)
    store.claim_delivery(DAY, people[0].id, message_id="x@y")
    store.finish_delivery(DAY, people[0].id, status="sent", attempts=1)
    counter = CountingSender()
    report = await send_all(
        store, counter, record=False, compose=compose_for(empty={people[3].email})
    )
    assert (counter.count, report.sent, report.skipped, report.already_sent) == (2, 2, 1, 1)
    assert report.summary().startswith("would send 2, skipped 1")
    assert store.delivery_counts(DAY)["sent"] == 1
    assert sum(store.delivery_counts(DAY).values()) == 1


async def test_the_outbox_writes_one_eml_file_per_message(store: Store, tmp_path: Path) -> None:
    people = add_people(store, 3)
    outbox = OutboxSender(tmp_path / "outbox")
    report = await send_all(store, outbox, record=False)
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert report.sent == 3
    assert [f.name for f in files] == [
        f"{p.id:07d}-{p.email}.eml" for p in sorted(people, key=lambda p: p.id)
    ]
    assert b"\r\nSubject: Daily Papers 2024-12-13\r\n" in files[0].read_bytes()


async def test_a_test_copy_goes_to_one_address_and_leaves_no_trace(store: Store) -> None:
    people = add_people(store, 3)
    with smtp_server(RecordingHandler()) as (server, handler):
        sender = smtp(server.port)
        message = await send_test_copy(
            store=store,
            compose=compose_for(empty={people[0].email}),
            sender=sender,
            to="me@example.org",
        )
        await sender.aclose()
    assert message is not None and message.subscriber_id == 0
    assert recipients(handler) == Counter({"me@example.org": 1})
    assert handler.received[0].message["To"] == "me@example.org"
    assert sum(store.delivery_counts(DAY).values()) == 0


class FlakySender:
    """A sender that fails in a scripted way, to drive the pipeline's own decisions."""

    def __init__(self, outcomes: Iterable[Exception | None]) -> None:
        self.outcomes = iter(outcomes)
        self.sent: list[str] = []

    async def open(self) -> None:
        pass

    async def send(self, message: OutgoingMessage) -> None:
        outcome = next(self.outcomes, None)
        if outcome is not None:
            raise outcome
        self.sent.append(message.recipient)

    async def aclose(self) -> None:
        pass


async def test_a_sender_that_cannot_work_stops_the_run_and_releases_its_claim(
    store: Store,
) -> None:
    add_people(store, 6)
    sender = FlakySender([DeliveryError("cannot connect to SMTP server 127.0.0.1:1")] * 10)
    report = await send_all(store, sender, concurrency=1)
    assert report.stopped == "cannot connect to SMTP server 127.0.0.1:1"
    assert (report.sent, report.deferred, report.ok) == (0, 0, False)
    assert sum(store.delivery_counts(DAY).values()) == 0  # the ledger is as before the run


async def test_a_run_gives_up_after_many_deferrals_in_a_row(store: Store) -> None:
    add_people(store, 40)
    sender = FlakySender(TemporaryFailure("421 4.3.2 shutting down") for _ in range(10**6))
    report = await send_all(store, sender, concurrency=1, retries=2, give_up_after=5)
    assert report.deferred == 5
    assert report.stopped is not None and "5 deferred messages in a row" in report.stopped
    counts = store.delivery_counts(DAY)
    assert (counts["deferred"], counts["claimed"], sum(counts.values())) == (5, 0, 5)
    (row, *_) = store.deliveries(DAY)
    assert (row.attempts, row.last_error) == (2, "421 4.3.2 shutting down")


async def test_errors_from_compose_stop_the_run_and_leave_no_claims(store: Store) -> None:
    add_people(store, 30)
    good = compose_for()
    calls = 0

    def breaks_on_the_twentieth(subscriber: Subscriber) -> OutgoingMessage | None:
        nonlocal calls
        calls += 1
        if calls == 20:
            raise DeliveryError("template failed")
        return good(subscriber)

    counter = CountingSender()
    with pytest.raises(DeliveryError, match="template failed"):
        await send_all(store, counter, compose=breaks_on_the_twentieth, concurrency=2)
    counts = store.delivery_counts(DAY)
    assert counts["claimed"] == 0
    assert counts["sent"] == counter.count < 20


async def test_cancelling_a_run_leaves_only_in_flight_messages_claimed(store: Store) -> None:
    add_people(store, 50)

    class SlowSender(CountingSender):
        async def send(self, message: OutgoingMessage) -> None:
            await asyncio.sleep(0.02)
            await super().send(message)

    task = asyncio.create_task(send_all(store, SlowSender(), concurrency=3))
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    counts = store.delivery_counts(DAY)
    # In-flight messages are allowed to finish: nothing is left ambiguous by a clean interrupt.
    assert counts["claimed"] == 0
    assert 0 < counts["sent"] < 50


async def test_two_runs_at_once_still_mail_everyone_exactly_once(
    store: Store, tmp_path: Path
) -> None:
    people = add_people(store, 60)
    with (
        smtp_server(RecordingHandler()) as (server, handler),
        Store(tmp_path / "test.db") as other,
    ):
        first, second = await asyncio.gather(
            send_all(store, smtp(server.port), concurrency=3),
            send_all(other, smtp(server.port), concurrency=3),
        )
    assert recipients(handler) == Counter(p.email for p in people)
    assert first.sent + second.sent == 60
    # The run that ends first sees the other still holding the send lock: what that one has
    # claimed is in flight, not ambiguous. By the end nothing is left unresolved.
    assert (first.ambiguous, second.ambiguous) == (0, 0)
    assert store.delivery_counts(DAY)["claimed"] == 0


async def test_a_subscriber_no_message_can_be_built_for_fails_alone(store: Store) -> None:
    people = add_people(store, 3)
    broken = store.add_subscriber("bad address@example.com")  # stored before validation existed
    with smtp_server(RecordingHandler()) as (server, handler):
        report = await send_all(store, smtp(server.port))
    assert (report.sent, report.failed, report.ok) == (3, 1, False)
    assert set(recipients(handler)) == {p.email for p in people}
    (row,) = store.deliveries(DAY, status="failed")
    assert (row.subscriber_id, row.attempts) == (broken.id, 0)
    assert "cannot be used as an email address" in (row.last_error or "")


def test_an_outbox_that_is_not_a_folder_is_one_plain_line() -> None:
    with pytest.raises(DeliveryError) as caught:
        OutboxSender(Path("/dev/null"))
    assert str(caught.value) == "/dev/null: cannot create outbox folder: not a folder"


async def test_a_test_copy_takes_a_daily_readers_filters_and_no_ones_name(store: Store) -> None:
    # A weekly reader never gets a day's email, and no reader's name should reach the tester.
    store.add_subscriber(
        "weekly@example.com",
        name="Weekly Reader",
        cadence="weekly",
        filters=Filters(keywords=("agents",)),
    )
    daily = store.add_subscriber("daily@example.com", name="Daily Reader")
    composed: list[Subscriber] = []
    compose = compose_for()

    def recording(subscriber: Subscriber) -> OutgoingMessage | None:
        composed.append(subscriber)
        return compose(subscriber)

    message = await send_test_copy(
        store=store, compose=recording, sender=CountingSender(), to="me@example.org"
    )
    assert message is not None
    [used] = composed
    assert (used.id, used.email, used.name, used.filters) == (
        0,
        "me@example.org",
        "",
        daily.filters,
    )
