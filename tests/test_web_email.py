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
from newsletter.mail.confirmation import confirmation_message
from newsletter.mail.outgoing import OutgoingMessage
from newsletter.store import Store
from newsletter.web import create_app
from newsletter.web.service import Service
from tests.conftest import PINNED_NOW

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "db": tmp_path / "mail.db",
            "site_dir": tmp_path / "site",
            "secret_key": "golden-secret-key",
            "base_url": "https://papers.example.com",
            "from_address": "Daily Papers <digest@papers.example.com>",
        },
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store(settings.db, clock=lambda: PINNED_NOW) as opened:
        yield opened


def confirmation(
    settings: Settings, signup_id: int, email: str, *, subscriber_id: int | None
) -> OutgoingMessage:
    return confirmation_message(
        settings=settings,
        key=settings.require_secret_key(),
        email=email,
        signup_id=signup_id,
        subscriber_id=subscriber_id,
        days=7,
        clock=lambda: PINNED_NOW,
    )


def readable(data: bytes) -> str:
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


@pytest.mark.parametrize("already", [False, True], ids=["new", "already-subscribed"])
def test_golden_confirmation_email(
    settings: Settings, store: Store, request: pytest.FixtureRequest, already: bool
) -> None:
    existing = store.add_subscriber("minji@example.com", keywords=["RAG"]) if already else None
    signup = store.add_signup("minji@example.com", keywords=["RAG", "멀티모달"], min_votes=3)
    message = confirmation(
        settings, signup.id, signup.email, subscriber_id=existing.id if existing else None
    )
    assert message.recipient == "minji@example.com"
    assert message.envelope_from == settings.envelope_from
    got = readable(message.data)
    golden = GOLDEN / f"web-confirm-{'already' if already else 'new'}.txt"
    if request.config.getoption("--update-golden"):
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8")
    if already:
        assert "/confirm/" not in got and "https://papers.example.com/p/" in got
    else:
        assert "https://papers.example.com/confirm/" in got


def test_hostile_address_in_confirmation_is_escaped(settings: Settings, store: Store) -> None:
    signup = store.add_signup('"<b>x</b>"@example.com')
    try:
        message = confirmation(settings, signup.id, signup.email, subscriber_id=None)
    except Exception as exc:  # refusing such an address outright is fine too
        assert "address" in str(exc)
        return
    html = readable(message.data).split("--- text/html", 1)[1]
    assert "<b>x</b>" not in html


def test_stale_unconfirmed_signups_are_purged(settings: Settings, store: Store) -> None:
    svc: Service = create_app(settings=settings, clock=lambda: PINNED_NOW).state.service
    old = store.add_signup("old@example.com")
    kept = store.add_signup("kept@example.com")
    assert store.confirm_signup(kept.id) is not None
    svc.clock = lambda: PINNED_NOW + dt.timedelta(days=svc.confirm_days + 2)
    asyncio.run(svc.purge_stale_signups())
    assert store.signup(old.id) is None
    assert store.signup(kept.id) is not None  # a confirmed sign-up is the record of consent
