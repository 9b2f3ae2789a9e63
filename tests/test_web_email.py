"""The sign-up confirmation email: golden text and HTML for both cases, hostile input escaped."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import SubscriberError
from newsletter.model import Filters
from newsletter.store import Store
from newsletter.web import create_app
from newsletter.web.service import Service
from newsletter.web.signup import confirmation_message
from tests.conftest import PINNED_NOW, TEST_KEY

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def svc(tmp_path: Path) -> Service:
    settings = load_settings(
        environ={},
        overrides={
            "db": tmp_path / "mail.db",
            "site_dir": tmp_path / "site",
            "secret_key": TEST_KEY,
            "base_url": "https://papers.example.com",
            "from_address": "Daily Papers <digest@papers.example.com>",
        },
    )
    app = create_app(settings=settings, clock=lambda: PINNED_NOW)
    found: Service = app.state.service
    return found


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
    svc: Service, request: pytest.FixtureRequest, already: bool
) -> None:
    store: Store = svc.store
    if already:
        store.add_subscriber("minji@example.com", filters=Filters(keywords=("RAG",)))
    signup = store.add_signup(
        "minji@example.com", filters=Filters(keywords=("RAG", "멀티모달"), min_votes=3)
    )
    message = confirmation_message(svc, signup, already_subscribed=already)
    assert message.recipient == "minji@example.com"
    assert message.envelope_from == svc.settings.envelope_from
    got = readable(message.data)
    golden = GOLDEN / f"web-confirm-{'already' if already else 'new'}.txt"
    if request.config.getoption("--update-golden"):
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8")
    if already:
        assert "/confirm/" not in got and "https://papers.example.com/p/" in got
    else:
        assert "https://papers.example.com/confirm/" in got


def test_address_that_cannot_be_a_header_is_refused(svc: Service) -> None:
    # The form refuses it earlier; the message builder refuses it again rather than emit it.
    signup = svc.store.add_signup('"<b>x</b>"@example.com')
    with pytest.raises(SubscriberError, match="cannot be used as an email address in a header"):
        confirmation_message(svc, signup, already_subscribed=False)


def test_markup_characters_of_a_valid_address_are_escaped_in_html(svc: Service) -> None:
    address = "o'hara&co@example.com"  # ' and & are valid in a local part
    svc.store.add_subscriber(address, filters=Filters(keywords=("RAG",)))
    signup = svc.store.add_signup(address)
    message = confirmation_message(svc, signup, already_subscribed=True)
    text, html = readable(message.data).split("--- text/plain", 1)[1].split("--- text/html")
    assert f"{address} already receives" in text
    assert "o&#39;hara&amp;co@example.com already receives" in html
    assert address not in html


def test_stale_unconfirmed_signups_are_purged(svc: Service) -> None:
    import datetime as dt

    old = svc.store.add_signup("old@example.com")
    kept = svc.store.add_signup("kept@example.com")
    assert svc.store.confirm_signup(kept.id) is not None
    svc.clock = lambda: PINNED_NOW + dt.timedelta(days=svc.confirm_days + 2)
    svc.purge_stale_signups()
    assert svc.store.signup(old.id) is None
    assert svc.store.signup(kept.id) is not None  # a confirmed sign-up is the record of consent
