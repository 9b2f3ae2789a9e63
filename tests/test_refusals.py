"""Synchronous refusals, classified: only a refusal of the recipient bounces a subscriber; a relay
refusing how we send (sender identity, login, TLS, policy, protocol) stops the run and changes no
subscriber. Real aiosmtpd servers answering at RCPT or at DATA."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from newsletter.delivery.pipeline import DeliveryReport
from newsletter.delivery.refusals import RefusalStreak, classify_refusal, masked_reply
from newsletter.store import Store
from tests.smtp_servers import RecordingHandler, smtp_server
from tests.test_deliver import DAY, add_people, send_all, smtp

SES_SANDBOX = (
    "554 Message rejected: Email address is not verified. The following identities failed "
    "the check in region US-EAST-1: digest@papers.example.com"
)
# Replies about how we send: each would refuse every message.
SETUP_REFUSALS = [
    SES_SANDBOX,
    "550 5.7.1 <reader0@example.com>: Relay access denied",
    "530 5.7.0 Authentication required",
    "550 5.7.1 Sender address rejected: not owned by user bounces@localhost",
    "554 5.7.1 bounces@localhost: not permitted",
    "501 5.5.2 Syntax error in parameters",
    "550 5.5.0 Requested action not taken",
    "553 5.1.8 Domain of sender address does not resolve",
    "550 5.7.26 Unauthenticated email from papers.example.com is not accepted (DMARC)",
    "554 5.7.0 Must issue a STARTTLS command first",
]


@dataclass
class Refusing(RecordingHandler):
    """Refuses the first recipient with `answer` at `stage` (RCPT or DATA); accepts the others."""

    stage: str = "RCPT"
    answer: str = ""
    victim: str = "reader0@example.com"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.stage == "RCPT" and address == self.victim:
            return self.answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def __post_init__(self) -> None:
        if self.stage == "DATA":
            self.reply = lambda env, n: self.answer if self.victim in env.rcpt_tos else None


async def send_three(
    store: Store, *, stage: str, answer: str
) -> tuple[DeliveryReport, list[str], int]:
    """Three subscribers sent to a server refusing the first: report, statuses, messages taken."""
    people = add_people(store, 3)
    with smtp_server(Refusing(stage=stage, answer=answer)) as (server, handler):
        report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
    statuses = [store.subscriber(p.id).status for p in people]  # type: ignore[union-attr]
    return report, statuses, len(handler.received)


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
@pytest.mark.parametrize("answer", SETUP_REFUSALS)
async def test_a_refusal_of_how_we_send_stops_the_run_and_changes_no_subscriber(
    store: Store, stage: str, answer: str
) -> None:
    report, statuses, taken = await send_three(store, stage=stage, answer=answer)
    assert report.stopped is not None
    assert "\n" not in report.stopped
    assert answer.split(" ", 1)[1][:30] in report.stopped
    assert report.stopped.endswith("no subscriber was changed") or "envelope sender" in (
        report.stopped
    )
    assert (report.sent, report.failed, report.bounced) == (0, 0, 0)
    assert taken == 0
    assert statuses == ["active"] * 3
    assert sum(store.delivery_counts(DAY).values()) == 0  # the claim was released


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
@pytest.mark.parametrize(
    "answer",
    [
        "550 5.1.1 <reader0@example.com>: Recipient address rejected: User unknown",
        "550 5.1.1 The email account that you tried to reach does not exist",
        "553 mailbox name not allowed: user unknown",
    ],
)
async def test_a_refusal_of_the_recipient_bounces_only_that_subscriber(
    store: Store, stage: str, answer: str
) -> None:
    report, statuses, taken = await send_three(store, stage=stage, answer=answer)
    assert (report.sent, report.failed, report.bounced, report.stopped) == (2, 1, 1, None)
    assert statuses == ["bounced", "active", "active"]
    assert taken == 2


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
async def test_a_refusal_of_this_message_fails_it_and_sends_the_rest(
    store: Store, stage: str
) -> None:
    answer = "554 5.7.1 Message rejected as spam"
    report, statuses, taken = await send_three(store, stage=stage, answer=answer)
    assert (report.sent, report.failed, report.bounced, report.stopped) == (2, 1, 0, None)
    assert statuses == ["active"] * 3
    assert taken == 2


@pytest.mark.parametrize(
    ("stage", "code", "text", "verdict"),
    [
        ("MAIL", 552, "5.3.4 message too big", "failed"),
        ("MAIL", 550, "5.7.1 no", "stop"),
        ("RCPT", 451, "4.7.1 greylisted", "temporary"),
        ("RCPT", 550, "5.2.1 The email account that you tried to reach is disabled", "failed"),
        ("DATA", 550, "5.1.1 bounces+x@papers.example.com unknown", "stop"),
    ],
)
def test_classify_refusal(stage: str, code: int, text: str, verdict: str) -> None:
    sender = "bounces+x@papers.example.com"
    assert classify_refusal(stage=stage, code=code, text=text, sender=sender) == verdict


@dataclass
class RefusingAll(RecordingHandler):
    """Refuses at RCPT every recipient that `refuses(address)`, with `answer` (`{rcpt}`: the address)."""

    answer: str = ""
    refuses: Any = None

    count: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.refuses(address):
            self.count += 1
            return self.answer.format(rcpt=address, n=1000 + 37 * self.count)
        envelope.rcpt_tos.append(address)
        return "250 OK"


def add_spread(store: Store, count: int, *, domains: int) -> list[str]:
    """`count` subscribers, their addresses spread over `domains` domains in turn."""
    return [store.add_subscriber(f"reader{i}@d{i % domains}.example").email for i in range(count)]


BLOCKLISTED = "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.example.org"


@pytest.mark.parametrize(
    "answer",
    [BLOCKLISTED, "554 5.7.1 <{rcpt}>: Client host rejected: quota exceeded for this month"],
)
async def test_a_relay_refusing_everyone_alike_stops_the_run_and_leaves_the_list_unsent(
    store: Store, answer: str
) -> None:
    addresses = add_spread(store, 40, domains=4)
    relay = RefusingAll(answer=answer, refuses=lambda address: True)
    with smtp_server(relay) as (server, handler):
        report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
    assert report.stopped is not None
    assert "stopped after 10 recipients at 4 domains in a row were refused alike" in report.stopped
    assert "(the last: reader9@d1.example: RCPT refused: 554 5.7.1 " in report.stopped
    assert (report.sent, report.failed, report.bounced) == (0, 0, 0)
    assert sum(store.delivery_counts(DAY).values()) == 0  # nobody failed: all left for a rerun
    assert {s.status for s in store.subscribers()} == {"active"}
    with smtp_server(RecordingHandler()) as (server, handler):
        again = await send_all(store, smtp(server.port), concurrency=4)
    assert again.ok and again.sent == 40
    assert sorted(r for m in handler.received for r in m.rcpt_tos) == sorted(addresses)


async def test_with_many_connections_the_refusals_after_the_stop_are_left_unsent_too(
    store: Store,
) -> None:
    add_spread(store, 60, domains=5)
    relay = RefusingAll(answer=BLOCKLISTED, refuses=lambda address: True)
    with smtp_server(relay) as (server, _):
        report = await send_all(store, smtp(server.port, pool_size=8), concurrency=8)
    assert report.stopped is not None and "refused alike" in report.stopped
    assert (report.sent, report.failed) == (0, 0)
    assert sum(store.delivery_counts(DAY).values()) == 0


DOMAIN_NOT_FOUND = "450 4.1.2 <{rcpt}>: Recipient address rejected: Domain not found"


async def test_one_domain_deferring_all_its_readers_does_not_stop_the_run(
    store: Store,
) -> None:
    # A bulk import sorted by domain: a block of a domain that is down for now, then the rest.
    dead = [store.add_subscriber(f"user{i}@dead.example").email for i in range(30)]
    others = add_spread(store, 6, domains=3)
    relay = RefusingAll(answer=DOMAIN_NOT_FOUND, refuses=lambda address: address in dead)
    with smtp_server(relay) as (server, handler):
        report = await send_all(
            store, smtp(server.port, pool_size=1), concurrency=1, retries=1, give_up_after=10
        )
        got = sorted(r for m in handler.received for r in m.rcpt_tos)
    assert report.stopped is None  # it used to stop after 10, and every rerun at the same place
    assert (report.sent, report.deferred) == (6, 30)
    assert got == sorted(others)


async def test_a_dead_domain_then_greylisting_elsewhere_does_not_stop_the_run(
    store: Store,
) -> None:
    # The block's deferrals and two greylisted readers at other domains span 3 domains, but
    # for two reasons: not one relay refusing everyone.
    dead = [store.add_subscriber(f"user{i}@dead.example").email for i in range(30)]
    grey = [store.add_subscriber(f"r@grey{i}.example").email for i in range(2)]
    others = add_spread(store, 6, domains=3)

    class Mixed(RefusingAll):
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            if address in grey:
                return "451 4.7.1 Greylisted, please try again in 300 seconds"
            return await super().handle_RCPT(server, session, envelope, address, options)

    relay = Mixed(answer=DOMAIN_NOT_FOUND, refuses=lambda address: address in dead)
    with smtp_server(relay) as (server, handler):
        report = await send_all(
            store, smtp(server.port, pool_size=1), concurrency=1, retries=1, give_up_after=10
        )
        got = sorted(r for m in handler.received for r in m.rcpt_tos)
    assert report.stopped is None
    assert (report.sent, report.deferred) == (6, 32)
    assert got == sorted(others)


async def test_deferrals_at_every_domain_still_stop_the_run(store: Store) -> None:
    add_spread(store, 40, domains=4)
    relay = RefusingAll(answer=DOMAIN_NOT_FOUND, refuses=lambda address: True)
    with smtp_server(relay) as (server, _):
        report = await send_all(
            store, smtp(server.port, pool_size=1), concurrency=1, retries=1, give_up_after=10
        )
    assert report.stopped is not None and "10 deferred messages in a row" in report.stopped
    assert (report.sent, report.deferred) == (0, 10)
    assert sum(store.delivery_counts(DAY).values()) == 10  # the rest never claimed


async def test_one_domain_refused_alike_fails_its_readers_and_the_others_are_sent(
    store: Store,
) -> None:
    """A dead domain's mailboxes all get the same words: that is them, not the relay."""
    dead = [store.add_subscriber(f"old{i}@gone.example").email for i in range(12)]
    others = add_spread(store, 6, domains=3)
    relay = RefusingAll(answer=BLOCKLISTED, refuses=lambda address: address in dead)
    with smtp_server(relay) as (server, handler):
        report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
    assert (report.sent, report.failed, report.stopped) == (6, 12, None)
    assert sorted(r for m in handler.received for r in m.rcpt_tos) == sorted(others)


async def test_refusals_between_accepted_messages_are_each_recipients_own(store: Store) -> None:
    addresses = add_spread(store, 30, domains=5)
    refused = set(addresses[::2])
    relay = RefusingAll(answer=BLOCKLISTED, refuses=lambda address: address in refused)
    with smtp_server(relay) as (server, _):
        report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
    assert (report.sent, report.failed, report.stopped) == (15, 15, None)
    assert store.delivery_counts(DAY)["failed"] == 15


def test_refusal_streak_needs_the_same_words_at_several_domains() -> None:
    streak = RefusalStreak(at=3, domains=2)
    assert not streak.add("RCPT 554 no", recipient="a@x.example")
    assert not streak.add("RCPT 554 no", recipient="b@x.example")
    assert not streak.add("RCPT 554 no", recipient="c@x.example")  # 3 in a row, one domain
    assert streak.add("RCPT 554 no", recipient="d@Y.example")
    assert streak.add("RCPT 554 no", recipient="e@x.example")  # stays past its mark
    assert not streak.add("RCPT 554 other words", recipient="e@z.example")  # starts again
    assert not streak.add(None, recipient="")
    assert streak.count == 0


def test_masked_reply_hides_what_differs_from_recipient_to_recipient() -> None:
    def masked(text: str, recipient: str) -> str:
        return masked_reply(stage="RCPT", code=554, text=text, recipient=recipient)

    one = masked("5.7.1 <Ana@X.example>: host  rejected", "ana@x.example")
    two = masked("5.7.1 <bo@y.example>: host rejected", "bo@y.example")
    assert one == two == "RCPT 554 5.7.1 <<recipient>>: host rejected"
    assert masked("5.7.1 spam, id=4F2A9C (ana.lee)", "ana.lee@x.example") == (
        "RCPT 554 5.7.1 spam, # (<local>)"
    )
    assert masked("5.7.1 spam, id=77B01 (bo)", "bo@y.example") == "RCPT 554 5.7.1 spam, # (bo)"
    assert masked("5.1.1 user unknown", "a@x.example") != masked(
        "5.7.1 user unknown", "a@x.example"
    )
    assert masked_reply(stage="DATA", code=554, text="x", recipient="") == "DATA 554 x"


RELAY_TABLE = (
    "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in relay recipient table"
)


@pytest.mark.parametrize(
    ("answer", "domains"),
    [
        (RELAY_TABLE, 4),  # a bounce's words, yet the relay's own table is wrong
        ("554 5.7.1 Message rejected as spam, id={n}", 4),  # a new id in every reply
        (BLOCKLISTED, 2),  # a list at two domains only
        (BLOCKLISTED, 1),
    ],
)
async def test_the_relay_refusing_everyone_is_found_whatever_differs_between_replies(
    store: Store, answer: str, domains: int
) -> None:
    add_spread(store, 30, domains=domains)
    relay = RefusingAll(answer=answer, refuses=lambda address: True)
    with smtp_server(relay) as (server, _):
        report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
    assert report.stopped is not None and "refused alike (the last: " in report.stopped
    assert (report.sent, report.failed, report.bounced) == (0, 0, 0)
    assert sum(store.delivery_counts(DAY).values()) == 0
    assert {s.status for s in store.subscribers()} == {"active"}  # nobody left bounced


@dataclass
class SlowToAccept(RefusingAll):
    """Takes `accept_delay` over each message it accepts, `refuse_delay` over each refusal."""

    accept_delay: float = 0.0
    refuse_delay: float = 0.0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.refuses(address):
            await asyncio.sleep(self.refuse_delay)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.accept_delay)
        return await super().handle_DATA(server, session, envelope)


async def test_refusals_before_a_slow_accepted_message_are_undone_with_the_streak(
    store: Store,
) -> None:
    # Two connections: one carries the only accepted message, slowly; meanwhile the other
    # gets a few refusals (fewer than the streak needs). The accept then resets the streak,
    # which later trips: the refusals from before it are the relay's too.
    addresses = add_spread(store, 40, domains=4)
    relay = SlowToAccept(
        answer=BLOCKLISTED,
        refuses=lambda address: address != addresses[0],
        accept_delay=0.6,
        refuse_delay=0.1,
    )
    with smtp_server(relay) as (server, handler):
        report = await send_all(store, smtp(server.port, pool_size=2), concurrency=2)
    assert report.stopped is not None and "refused alike" in report.stopped
    assert (report.sent, report.failed) == (1, 0)
    assert [r.rcpt_tos for r in handler.received] == [[addresses[0]]]
    counts = store.delivery_counts(DAY)
    assert (counts["sent"], counts["failed"], counts["claimed"]) == (1, 0, 0)
