"""The sign-up confirmation email: golden text and HTML for both cases, hostile input escaped."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.errors import SubscriberError
from newsletter.mail.confirmation import confirmation_message
from newsletter.mail.outgoing import OutgoingMessage
from newsletter.model import Filters, Subscriber
from newsletter.store import Store
from newsletter.store.signups import Signup
from newsletter.tokens import read_signup_token
from newsletter.web import create_app
from newsletter.web.service import Service
from tests.conftest import PINNED_NOW, TEST_KEY

GOLDEN = Path(__file__).parent / "golden"
CONFIRM_TOKEN = re.compile(r"/confirm/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "db": tmp_path / "mail.db",
            "site_dir": tmp_path / "site",
            "secret_key": TEST_KEY,
            "base_url": "https://papers.example.com",
            "from_address": "Daily Papers <digest@papers.example.com>",
        },
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store(settings.db, clock=lambda: PINNED_NOW) as opened:
        yield opened


def confirmation(
    settings: Settings, signup: Signup, *, subscriber: Subscriber | None
) -> OutgoingMessage:
    return confirmation_message(
        settings=settings,
        key=settings.require_secret_key(),
        email=signup.email,
        signup_id=signup.id,
        nonce=signup.nonce,
        subscriber=subscriber,
        days=7,
        clock=lambda: PINNED_NOW,
    )


def decoded(data: bytes) -> str:
    """Headers a reader sees and each part decoded; the random Message-ID part pinned."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    lines = [f"{name}: {message[name]}" for name in ("From", "To", "Subject", "Date")]
    lines.append("Message-ID: " + re.sub(r"\.[0-9a-f]{16}@", ".RANDOM@", message["Message-ID"]))
    for kind in ("plain", "html"):
        part = message.get_body(preferencelist=(kind,))
        assert part is not None
        lines += [f"--- text/{kind}", str(part.get_content()).rstrip()]
    return "\n".join(lines).replace("\r\n", "\n") + "\n"


def readable(data: bytes) -> str:
    """`decoded`, with confirmation tokens pinned: they hold the sign-up's random nonce."""
    return CONFIRM_TOKEN.sub("/confirm/TOKEN", decoded(data))


@pytest.mark.parametrize("already", [False, True], ids=["new", "already-subscribed"])
def test_golden_confirmation_email(
    settings: Settings, store: Store, request: pytest.FixtureRequest, already: bool
) -> None:
    existing = (
        store.add_subscriber("minji@example.com", filters=Filters(keywords=("RAG",)))
        if already
        else None
    )
    signup = store.add_signup(
        "minji@example.com", filters=Filters(keywords=("RAG", "멀티모달"), min_votes=3)
    )
    message = confirmation(settings, signup, subscriber=existing)
    assert message.recipient == "minji@example.com"
    assert message.envelope_from == settings.envelope_from
    got = readable(message.data)
    tokens = set(CONFIRM_TOKEN.findall(decoded(message.data)))
    named = {read_signup_token(token, key=settings.require_secret_key()) for token in tokens}
    assert named == (set() if already else {(signup.id, signup.nonce)})
    assert already or len(signup.nonce) >= 16
    golden = GOLDEN / f"web-confirm-{'already' if already else 'new'}.txt"
    if request.config.getoption("--update-golden"):
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8")
    if already:
        assert "/confirm/" not in got and "https://papers.example.com/p/" in got
    else:
        assert "https://papers.example.com/confirm/" in got


def test_address_that_cannot_be_a_header_is_refused(settings: Settings, store: Store) -> None:
    # The form refuses it earlier; the message builder refuses it again rather than emit it.
    signup = store.add_signup('"<b>x</b>"@example.com')
    with pytest.raises(SubscriberError, match="cannot be used as an email address in a header"):
        confirmation(settings, signup, subscriber=None)


def test_markup_characters_of_a_valid_address_are_escaped_in_html(
    settings: Settings, store: Store
) -> None:
    address = "o'hara&co@example.com"  # ' and & are valid in a local part
    existing = store.add_subscriber(address, filters=Filters(keywords=("RAG",)))
    signup = store.add_signup(address)
    message = confirmation(settings, signup, subscriber=existing)
    text, html = readable(message.data).split("--- text/plain", 1)[1].split("--- text/html")
    assert f"{address} already receives" in text
    assert "o&#39;hara&amp;co@example.com already receives" in html
    assert address not in html


def test_stale_unconfirmed_signups_are_purged(settings: Settings, store: Store) -> None:
    svc: Service = create_app(settings=settings, clock=lambda: PINNED_NOW).state.service
    old = store.add_signup("old@example.com")
    kept = store.add_signup("kept@example.com")
    assert store.confirm_signup(kept.id) is not None
    svc.clock = lambda: PINNED_NOW + dt.timedelta(days=svc.confirm_days + 2)
    asyncio.run(svc.purge_stale_signups())
    assert store.signup(old.id) is None
    assert store.signup(kept.id) is not None  # a confirmed sign-up is the record of consent
