"""DKIM: every message we make verifies with dkimpy against the record `dkim keygen` prints, and
stops verifying when a signed header is altered or added."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import stat
from collections.abc import Callable
from pathlib import Path

import dkim as dkimpy
import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import Settings
from newsletter.daily import send_day
from newsletter.delivery.smtp import SMTPSender
from newsletter.digest.ingest import ingest_paths
from newsletter.errors import ConfigError
from newsletter.mail.compose import Composer, compose_naive
from newsletter.mail.confirmation import confirmation_message
from newsletter.mail.dkim import SIGNED_HEADERS, DkimSigner, generate_key, signer_for
from newsletter.model import Filters, Subscriber
from newsletter.store import Store

from .conftest import DIGESTS, PINNED_NOW, TEST_KEY
from .smtp_servers import RecordingHandler, smtp_server

BASE = Settings().replace(
    base_url="https://papers.example.com",
    from_address="Daily Papers <digest@papers.example.com>",
    reply_to="editor@papers.example.com",
    envelope_from="bounces@papers.example.com",
    secret_key=TEST_KEY,
)
PEOPLE = [
    Subscriber(id=1, email="all@example.com", name=""),
    Subscriber(id=2, email="minji@example.com", name="김민지", filters=Filters(keywords=("LLM",))),
]


def clock() -> dt.datetime:
    return PINNED_NOW


Verify = Callable[[bytes], bool]


@pytest.fixture(params=["rsa", "ed25519"])
def keyed(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Settings, Verify]:
    """Settings signing with a key made by the real CLI, and a verifier for the printed record."""
    out = CliRunner().invoke(
        main,
        [
            *("dkim", "keygen", "--selector", "news", "--domain", "papers.example.com"),
            *("--out", str(tmp_path / "keys"), "--type", request.param),
        ],
    )
    assert out.exit_code == 0, out.output
    record = out.stdout.strip()
    assert record.startswith("news._domainkey.papers.example.com. IN TXT ")
    txt = "".join(re.findall(r'"([^"]*)"', record)).encode()
    assert txt.startswith(b"v=DKIM1; k=" + request.param.encode())

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return txt if name == b"news._domainkey.papers.example.com." else None

    settings = BASE.replace(
        dkim_selector="news",
        dkim_domain="papers.example.com",
        dkim_key_file=tmp_path / "keys" / "news.private",
    )
    return settings, lambda data: bool(dkimpy.verify(data, dnsfunc=dns))


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    args = ["dkim", "keygen", "--selector", "s1", "--domain", "example.com", "--out", str(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert stat.S_IMODE((tmp_path / "s1.private").stat().st_mode) == 0o600
    assert (tmp_path / "s1.txt").read_text().startswith("s1._domainkey.example.com. IN TXT")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1
    assert again.stderr.strip() == (
        f"error: {tmp_path / 's1.private'} exists; choose another selector or folder"
    )


def test_fast_path_messages_verify(digests_store: Store, keyed: tuple[Settings, Verify]) -> None:
    settings, verify = keyed
    composer = Composer(settings=settings, digest=digests_store.digest_for(None), clock=clock)
    for person in PEOPLE:
        message = composer.compose(person)
        assert message is not None
        assert message.data.startswith(b"DKIM-Signature: v=1; a=")
        assert verify(message.data)
        assert b"t=1734080400;" in message.data  # the composer's clock, not the wall clock


def test_naive_and_confirmation_messages_verify(
    digests_store: Store, keyed: tuple[Settings, Verify]
) -> None:
    settings, verify = keyed
    digest = digests_store.digest_for(None)
    naive = compose_naive(settings=settings, digest=digest, subscriber=PEOPLE[1], clock=clock)
    assert naive is not None and verify(naive.data)
    confirm = confirmation_message(
        settings=settings,
        key=TEST_KEY.encode(),
        email="new@example.com",
        signup_id=7,
        nonce="n" * 16,
        subscriber=None,
        days=3,
        clock=clock,
    )
    assert verify(confirm.data)


def _header_lines(data: bytes) -> list[bytes]:
    """The message's header fields, each with its continuation lines."""
    head = data.partition(b"\r\n\r\n")[0]
    return re.findall(rb"^[^ \t][^\r\n]*(?:\r\n[ \t][^\r\n]*)*", head, re.M)


def test_altering_or_adding_any_signed_header_breaks_the_signature(
    digests_store: Store, keyed: tuple[Settings, Verify]
) -> None:
    settings, verify = keyed
    composer = Composer(settings=settings, digest=digests_store.digest_for(None), clock=clock)
    message = composer.compose(PEOPLE[1])
    assert message is not None
    data = message.data
    assert verify(data)
    head, _, body = data.partition(b"\r\n\r\n")
    present = {line.split(b":")[0].lower().decode(): line for line in _header_lines(data)}
    checked = 0
    for name in SIGNED_HEADERS:
        extra = f"{name}: added@example.com\r\n".encode()
        # Above the signed copy (only over-signing catches that: verifiers read from the
        # bottom) and below it.
        assert not verify(extra + data), f"{name} could be added on top"
        assert not verify(head + b"\r\n" + extra + b"\r\n" + body), f"{name} could be added"
        if name in present:
            line = present[name]
            changed = line[:-1] + (b"X" if line[-1:] != b"X" else b"Y")
            assert not verify(data.replace(line, changed, 1)), f"{name} could be altered"
            checked += 1
    assert checked == len(SIGNED_HEADERS)  # a digest carries every one: each was tried
    assert not verify(data.replace(b"\r\n\r\n", b"\r\n\r\nX", 1))  # and the body


def test_a_relay_that_rewrites_date_and_message_id_and_adds_feedback_id_keeps_it_valid(
    digests_store: Store, keyed: tuple[Settings, Verify]
) -> None:
    # Amazon SES replaces Date and Message-ID and adds its own Feedback-ID: a signature over
    # those (or over-signing Feedback-ID) broke there.
    settings, verify = keyed
    composer = Composer(settings=settings, digest=digests_store.digest_for(None), clock=clock)
    message = composer.compose(PEOPLE[1])
    assert message is not None
    relayed = re.sub(
        rb"\r\nDate: [^\r]*", b"\r\nDate: Fri, 13 Dec 2024 09:00:07 +0000", message.data
    )
    relayed = re.sub(
        rb"\r\nMessage-ID: [^\r]*", b"\r\nMessage-ID: <0100abc@email.amazonses.com>", relayed
    )
    assert relayed.count(b"amazonses") == 1 and b"09:00:07" in relayed
    relayed = b"Feedback-ID: 1.us-east-1.x:AmazonSES\r\n" + relayed
    assert verify(relayed)
    ours = next(line for line in _header_lines(message.data) if line.startswith(b"Feedback-ID:"))
    assert not verify(relayed.replace(ours, ours + b"X"))  # our own Feedback-ID stays signed


def test_sent_messages_verify_after_smtp(tmp_path: Path, keyed: tuple[Settings, Verify]) -> None:
    settings, verify = keyed
    handler = RecordingHandler()
    with Store(tmp_path / "s.db", clock=clock) as store, smtp_server(handler) as (server, _):
        assert not ingest_paths(store, DIGESTS).failed
        for person in PEOPLE:
            store.add_subscriber(person.email, name=person.name, filters=person.filters)
        sender = SMTPSender(host="127.0.0.1", port=server.port, tls="none")
        report = asyncio.run(send_day(store=store, settings=settings, sender=sender, clock=clock))
        assert report.sent == 2
    assert len(handler.received) == 2
    assert all(verify(received.data) for received in handler.received)


def test_half_set_or_unusable_dkim_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dkim_domain, dkim_key_file not set"):
        signer_for(BASE.replace(dkim_selector="news"))
    missing = BASE.replace(
        dkim_selector="news", dkim_domain="example.com", dkim_key_file=tmp_path / "none.pem"
    )
    with pytest.raises(ConfigError, match=r"none\.pem: cannot read"):
        signer_for(missing)
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM RSA or ed25519 private key"):
        signer_for(missing.replace(dkim_key_file=tmp_path / "bad.pem"))
    assert signer_for(BASE) is None


def test_signer_needs_a_header_block() -> None:
    signer = DkimSigner(selector="s", domain="example.com", key_pem=generate_key("ed25519"))
    with pytest.raises(ValueError, match="blank line"):
        signer.sign(b"From: a@example.com\r\n", now=PINNED_NOW)


@pytest.fixture(scope="module")
def digests_store() -> Store:
    store = Store(":memory:")
    assert not ingest_paths(store, DIGESTS).failed
    return store
