"""SMTPSender and the pipeline against real SMTP servers that fail on purpose (aiosmtpd, loopback)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.config import Secret
from newsletter.delivery.refusals import is_bounce
from newsletter.delivery.smtp import SMTPSender, reply_text
from newsletter.errors import ConfigError, DeliveryError, PermanentFailure, TemporaryFailure
from newsletter.mail.outgoing import OutgoingMessage
from newsletter.store import Store
from tests.smtp_servers import RecordingHandler, free_port, smtp_server
from tests.test_deliver import (
    DAY,
    SessionCountingHandler,
    add_people,
    recipients,
    send_all,
    smtp,
)


def outgoing(recipient: str, *, subscriber_id: int = 1) -> OutgoingMessage:
    data = f"From: a@example.com\r\nTo: {recipient}\r\nSubject: t\r\n\r\nbody\r\n".encode()
    return OutgoingMessage(subscriber_id, recipient, "bounces@example.com", "m@example.com", data)


# --- temporary failures: retried with backoff on a new connection, then sent --------------------


async def test_451_then_250_is_retried_on_a_new_connection_and_ends_sent(store: Store) -> None:
    people = add_people(store, 3)
    handler = SessionCountingHandler(reply=lambda env, n: "451 4.3.0 try later" if n == 1 else None)
    with smtp_server(handler) as (server, _):
        report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
    assert (report.sent, report.deferred, report.ok) == (3, 0, True)
    assert recipients(handler) == {p.email: 1 for p in people}
    assert handler.sessions == 2  # reconnected after the 4xx
    first = next(store.deliveries(DAY))
    assert (first.status, first.attempts) == ("sent", 2)


async def test_a_server_that_keeps_answering_4xx_leaves_messages_deferred(store: Store) -> None:
    add_people(store, 2)
    with smtp_server(RecordingHandler(reply=lambda env, n: "452 4.2.2 mailbox full")) as (s, h):
        report = await send_all(store, smtp(s.port), retries=3)
    assert (report.sent, report.deferred, report.ok) == (0, 2, False)
    assert h.attempts == 6
    rows = list(store.deliveries(DAY))
    assert [(r.status, r.attempts) for r in rows] == [("deferred", 3)] * 2
    assert rows[0].last_error == "DATA refused: 452 4.2.2 mailbox full"
    # The next run (server fixed) sends them.
    with smtp_server(RecordingHandler()) as (server, handler):
        report = await send_all(store, smtp(server.port))
    assert (report.sent, len(handler.received)) == (2, 2)


async def test_421_at_rcpt_is_temporary(store: Store) -> None:
    add_people(store, 2)

    @dataclass
    class Closing(SessionCountingHandler):
        refused: int = 0

        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            if self.refused == 0:
                self.refused += 1
                return "421 4.3.2 service shutting down"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    with smtp_server(Closing()) as (server, handler):
        report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
    assert (report.sent, len(handler.received), handler.sessions) == (2, 2, 2)


@dataclass
class DroppingHandler(RecordingHandler):
    """Drops the connection instead of answering DATA, the first `drops` times."""

    drops: int = 1

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.attempts += 1
            drop = self.attempts <= self.drops
        if drop:
            server.transport.abort()  # the reply to DATA never comes
            return "451 never seen"
        self.attempts -= 1  # counted again by the recording handler
        return await super().handle_DATA(server, session, envelope)


async def test_a_connection_dropped_mid_data_is_retried(store: Store) -> None:
    people = add_people(store, 4)
    with smtp_server(DroppingHandler(drops=2)) as (server, handler):
        report = await send_all(store, smtp(server.port, pool_size=2), concurrency=2)
    assert (report.sent, report.ok) == (4, True)
    assert recipients(handler) == {p.email: 1 for p in people}
    assert sum(d.attempts for d in store.deliveries(DAY)) == 6


async def test_a_server_that_always_drops_leaves_the_message_deferred(store: Store) -> None:
    add_people(store, 1)
    with smtp_server(DroppingHandler(drops=100)) as (server, _):
        report = await send_all(store, smtp(server.port), retries=2)
    (row,) = store.deliveries(DAY)
    assert (report.deferred, row.status, row.attempts) == (1, "deferred", 2)
    assert "during DATA" in (row.last_error or "")


@dataclass
class StallingHandler(RecordingHandler):
    """Sits on DATA longer than the client waits, the first `stalls` times."""

    stalls: int = 1
    seconds: float = 2.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.attempts += 1
            stall = self.attempts <= self.stalls
        if stall:
            await asyncio.sleep(self.seconds)
            return "451 4.4.2 too late"  # the client has long gone
        self.attempts -= 1
        return await super().handle_DATA(server, session, envelope)


async def test_a_server_that_stalls_past_the_timeout_is_retried(store: Store) -> None:
    people = add_people(store, 2)
    with smtp_server(StallingHandler(stalls=1)) as (server, handler):
        sender = smtp(server.port, pool_size=1)
        sender.timeout = 0.5
        report = await send_all(store, sender, concurrency=1)
    assert (report.sent, report.ok) == (2, True)
    assert recipients(handler) == {p.email: 1 for p in people}
    first = next(store.deliveries(DAY))
    assert first.attempts == 2


async def test_a_server_that_always_stalls_is_deferred_with_a_timeout_error() -> None:
    with smtp_server(StallingHandler(stalls=100, seconds=1.0)) as (server, _):
        sender = SMTPSender(host="127.0.0.1", port=server.port, tls="none", timeout=0.3)
        with pytest.raises(TemporaryFailure, match="during DATA"):
            await sender.send(outgoing("a@example.com"))
        await sender.aclose()


@contextmanager
def server_on(port: int, handler: RecordingHandler) -> Iterator[None]:
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


async def test_a_pooled_connection_the_server_dropped_is_replaced_transparently() -> None:
    port = free_port()
    first, second = RecordingHandler(), RecordingHandler()
    sender = SMTPSender(host="127.0.0.1", port=port, tls="none", timeout=5)
    with server_on(port, first):
        await sender.send(outgoing("a@example.com"))
    # The server restarted while our connection sat idle in the pool.
    with server_on(port, second):
        await sender.send(outgoing("b@example.com"))
        await sender.aclose()
    assert recipients(first) == {"a@example.com": 1}
    assert recipients(second) == {"b@example.com": 1}


# --- permanent failures ----------------------------------------------------------------------


async def test_550_5_1_1_fails_that_address_bounces_it_and_sends_the_others(store: Store) -> None:
    people = add_people(store, 5)
    gone = people[2]

    def reply(envelope: Any, attempt: int) -> str | None:
        return (
            "550 5.1.1 <x>: Recipient address rejected" if gone.email in envelope.rcpt_tos else None
        )

    with smtp_server(RecordingHandler(reply=reply)) as (server, handler):
        report = await send_all(store, smtp(server.port))
        assert (report.sent, report.failed, report.bounced, report.ok) == (4, 1, 1, False)
        assert set(recipients(handler)) == {p.email for p in people} - {gone.email}
        subscriber = store.subscriber(gone.id)
        assert subscriber is not None and subscriber.status == "bounced"
        row = next(d for d in store.deliveries(DAY) if d.subscriber_id == gone.id)
        assert (row.status, row.attempts) == ("failed", 1)
        # Never mailed again: not on a re-run of this day, nor the next day.
        report = await send_all(store, smtp(server.port))
        assert (report.sent, report.failed, report.ok) == (0, 0, True)
    assert store.delivery_counts(DAY)["failed"] == 1


async def test_a_5xx_that_is_not_about_the_address_fails_without_bouncing(store: Store) -> None:
    (person,) = add_people(store, 1)
    with smtp_server(RecordingHandler(reply=lambda e, n: "554 5.7.1 message refused")) as (s, h):
        report = await send_all(store, smtp(s.port))
    assert (report.failed, report.bounced, h.attempts) == (1, 0, 1)
    subscriber = store.subscriber(person.id)
    assert subscriber is not None and subscriber.status == "active"


async def test_a_refused_envelope_sender_stops_the_run_and_changes_nothing(store: Store) -> None:
    add_people(store, 5)

    class NoSender(RecordingHandler):
        async def handle_MAIL(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            return "553 5.7.1 sender address not allowed"

    with smtp_server(NoSender()) as (server, _):
        report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
    assert report.stopped is not None
    assert "refuses envelope sender bounces@localhost: 553 5.7.1" in report.stopped
    assert sum(store.delivery_counts(DAY).values()) == 0


async def test_non_ascii_addresses_need_a_server_that_offers_smtputf8() -> None:
    with smtp_server(RecordingHandler(), enable_SMTPUTF8=False) as (server, handler):
        sender = SMTPSender(host="127.0.0.1", port=server.port, tls="none", timeout=5)
        with pytest.raises(PermanentFailure, match="SMTPUTF8") as caught:
            await sender.send(outgoing("기자@example.com"))
        assert not caught.value.bounced
        await sender.send(outgoing("ok@example.com"))  # the connection is still good
        await sender.aclose()
    assert recipients(handler) == {"ok@example.com": 1}
    with smtp_server(RecordingHandler(), enable_SMTPUTF8=True) as (server, handler):
        sender = SMTPSender(host="127.0.0.1", port=server.port, tls="none", timeout=5)
        await sender.send(outgoing("기자@example.com"))
        await sender.aclose()
    assert recipients(handler) == {"기자@example.com": 1}


async def test_data_is_dot_stuffed_and_normalised_when_it_needs_it() -> None:
    with smtp_server(RecordingHandler()) as (server, handler):
        sender = SMTPSender(host="127.0.0.1", port=server.port, tls="none", timeout=5)
        tricky = b"Subject: t\r\n\r\n.leading dot\r\n.\r\nbare LF\nend"
        await sender.send(
            OutgoingMessage(1, "a@example.com", "b@example.com", "m@example.com", tricky)
        )
        plain = b"Subject: t\r\n\r\nfast path\r\n"
        await sender.send(OutgoingMessage(2, "c@example.com", "b@example.com", "n@x", plain))
        await sender.aclose()
    assert handler.received[0].data == b"Subject: t\r\n\r\n.leading dot\r\n.\r\nbare LF\r\nend\r\n"
    assert handler.received[1].data == plain


@pytest.mark.parametrize(
    ("code", "text", "bounced"),
    [
        (550, "5.1.1 <a@b>: Recipient address rejected: User unknown", True),
        (550, "5.1.10 null MX", True),
        (553, "mailbox name not allowed: user unknown", True),
        (551, "No such user here", True),
        (550, "Requested action not taken: mailbox unavailable", False),
        (550, "5.7.1 message rejected as spam", False),
        (553, "5.1.8 sender domain does not resolve", False),
        (554, "5.7.0 rejected", False),
        (450, "4.1.1 user unknown (try later)", False),
    ],
)
def test_only_replies_about_a_nonexistent_address_count_as_bounces(
    code: int, text: str, bounced: bool
) -> None:
    assert is_bounce(code, text) is bounced


def test_server_replies_become_one_safe_line() -> None:
    assert reply_text(550, "no\r\nsuch\x1b[31m user") == "550 no such [31m user"


# --- TLS, credentials -------------------------------------------------------------------------


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


async def test_starttls_required_against_a_server_without_it_fails_clearly(
    store: Store,
) -> None:
    add_people(store, 3)
    with smtp_server(RecordingHandler()) as (server, handler):
        sender = SMTPSender(host="127.0.0.1", port=server.port, tls="starttls", timeout=5)
        report = await send_all(store, sender)
    assert report.stopped is not None
    assert "does not offer STARTTLS" in report.stopped and "\n" not in report.stopped
    assert (report.sent, report.deferred, handler.received) == (0, 0, [])
    assert sum(store.delivery_counts(DAY).values()) == 0


async def test_starttls_upgrades_before_anything_is_sent(
    store: Store, certificate: tuple[Path, Path]
) -> None:
    people = add_people(store, 2)
    options = {"tls_context": server_tls(certificate), "require_starttls": True}
    with smtp_server(RecordingHandler(), **options) as (server, handler):
        sender = SMTPSender(
            host="127.0.0.1",
            port=server.port,
            tls="starttls",
            timeout=5,
            tls_context=client_tls(certificate),
        )
        report = await send_all(store, sender)
    assert report.sent == 2  # the server refuses MAIL before STARTTLS, so this went over TLS
    assert recipients(handler) == {p.email: 1 for p in people}


async def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    with smtp_server(RecordingHandler(), ssl_context=server_tls(certificate)) as (server, h):
        sender = SMTPSender(
            host="127.0.0.1", port=server.port, tls="tls", tls_context=client_tls(certificate)
        )
        await sender.send(outgoing("a@example.com"))
        await sender.aclose()
    assert recipients(h) == {"a@example.com": 1}


async def test_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    options = {"tls_context": server_tls(certificate)}
    with smtp_server(RecordingHandler(), **options) as (server, handler):
        sender = SMTPSender(host="127.0.0.1", port=server.port, tls="starttls", timeout=5)
        with pytest.raises(DeliveryError, match="certificate verify failed") as caught:
            await sender.send(outgoing("a@example.com"))
    assert not isinstance(caught.value, TemporaryFailure | PermanentFailure)
    assert handler.received == []


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"news", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


async def test_login_with_the_password_from_settings(certificate: tuple[Path, Path]) -> None:
    options = {
        "tls_context": server_tls(certificate),
        "authenticator": _authenticator,
        "auth_required": True,
    }
    with smtp_server(RecordingHandler(), **options) as (server, handler):

        def sender(password: str) -> SMTPSender:
            return SMTPSender(
                host="127.0.0.1",
                port=server.port,
                tls="starttls",
                user="news",
                password=Secret(password),
                tls_context=client_tls(certificate),
                timeout=5,
            )

        good = sender("s3cret")
        await good.send(outgoing("a@example.com"))
        await good.aclose()
        bad = sender("wrong-password")
        with pytest.raises(DeliveryError) as caught:
            await bad.send(outgoing("b@example.com"))
    assert recipients(handler) == {"a@example.com": 1}
    message = str(caught.value)
    assert "refused the login of news: 535" in message
    assert "wrong-password" not in message and "wrong-password" not in repr(bad)


def test_credentials_never_go_to_a_remote_server_in_plain_text() -> None:
    with pytest.raises(ConfigError, match="without TLS"):
        SMTPSender(host="smtp.example.com", port=25, tls="none", user="u", password="p")
    with pytest.raises(ConfigError, match="PASSWORD"):
        SMTPSender(host="smtp.example.com", port=587, tls="starttls", user="u")


async def test_nobody_listening_stops_the_run(store: Store) -> None:
    add_people(store, 2)
    sender = SMTPSender(host="127.0.0.1", port=free_port(), tls="none", timeout=2)
    report = await send_all(store, sender)
    assert report.stopped is not None and report.stopped.startswith("cannot connect")
    assert sum(store.delivery_counts(DAY).values()) == 0


class ClaimRecordingStore(Store):
    """The real store, also noting every claim the pipeline makes (even those it releases)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claims: list[int] = []

    def claim_deliveries(self, date: Any, claims: Any, **kwargs: Any) -> dict[int, str | None]:
        self.claims.extend(subscriber_id for subscriber_id, _ in claims)
        return super().claim_deliveries(date, claims, **kwargs)


async def test_a_server_that_cannot_be_reached_fails_the_run_before_any_claim(
    tmp_path: Path,
) -> None:
    with ClaimRecordingStore(tmp_path / "claims.db") as store:
        add_people(store, 5)
        sender = SMTPSender(host="127.0.0.1", port=free_port(), tls="none", timeout=2)
        report = await send_all(store, sender)
        assert report.stopped is not None and report.stopped.startswith("cannot connect")
        assert "Connection refused" in report.stopped
        assert store.claims == []
        assert sum(store.delivery_counts(DAY).values()) == 0


async def test_the_connection_opened_before_the_run_carries_its_first_message(
    tmp_path: Path,
) -> None:
    handler = SessionCountingHandler()
    with ClaimRecordingStore(tmp_path / "claims.db") as store:
        people = add_people(store, 3)
        with smtp_server(handler) as (server, _):
            report = await send_all(store, smtp(server.port, pool_size=1), concurrency=1)
        assert report.sent == 3 and sorted(store.claims) == sorted(p.id for p in people)
    assert handler.sessions == 1


@pytest.mark.parametrize(
    ("host", "port", "setting"),
    [
        ("127.0.0.1", 70000, "smtp_port"),
        ("127.0.0.1", -1, "smtp_port"),
        ("127.0.0.1", 0, "smtp_port"),
        ("relay\u2028example.com", 25, "smtp_host"),
        ("", 25, "smtp_host"),
    ],
)
def test_a_port_or_host_that_cannot_be_connected_to_is_refused_up_front(
    host: str, port: int, setting: str
) -> None:
    with pytest.raises(ConfigError, match=f"^setting {setting}: bad value ") as caught:
        SMTPSender(host=host, port=port, tls="none")
    assert "\n" not in str(caught.value) and "\u2028" not in str(caught.value)


async def test_a_user_set_for_a_server_without_auth_says_so() -> None:
    with smtp_server(RecordingHandler()) as (server, handler):
        sender = SMTPSender(
            host="127.0.0.1",
            port=server.port,
            tls="none",
            user="news",
            password=Secret("s3cret"),
            timeout=5,
        )
        with pytest.raises(DeliveryError) as caught:
            await sender.send(outgoing("a@example.com"))
    message = str(caught.value)
    assert message.startswith(f"127.0.0.1:{server.port} offers no AUTH")
    assert "STARTTLS" not in message and "s3cret" not in message
    assert not isinstance(caught.value, TemporaryFailure | PermanentFailure)
    assert handler.received == []
