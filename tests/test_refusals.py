"""Synchronous refusals, classified: only a refusal of the recipient bounces a subscriber; a relay
refusing how we send (sender identity, login, TLS, policy, protocol) stops the run and changes no
subscriber. Real aiosmtpd servers answering at RCPT or at DATA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from newsletter.delivery.pipeline import DeliveryReport
from newsletter.delivery.refusals import classify_refusal
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
