"""Sign-up with confirmation over real HTTP and real SMTP: no enumeration, rate limits, expiry."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsletter.mail.confirmation import confirmation_message
from newsletter.model import Filters
from newsletter.web import signup as signup_module
from newsletter.web.security import Limit, SignupLimits
from tests.smtp_servers import Received, RecordingHandler, smtp_server
from tests.web_server import Running, service

_emails = count(1)
GENEROUS = SignupLimits(per_address=Limit(100, 3600), per_client=Limit(1000, 3600))


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, RecordingHandler]]:
    with (
        smtp_server() as (controller, handler),
        service(
            tmp_path_factory.mktemp("signup"),
            smtp_port=controller.port,
            app_options={"signup_limits": GENEROUS},
        ) as running,
    ):
        yield running, handler


def fresh_address() -> str:
    return f"new{next(_emails)}@example.com"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def sign_up(
    client: httpx.Client, *, headers: dict[str, str] | None = None, **fields: str
) -> httpx.Response:
    form = client.get("/subscribe")
    assert form.status_code == 200
    return client.post("/subscribe", data={"csrf": csrf_of(form.text), **fields}, headers=headers)


def mail_to(handler: RecordingHandler, address: str, *, timeout: float = 30) -> EmailMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: list[Received] = [r for r in handler.received if address in r.rcpt_tos]
        if found:
            return found[-1].message
        time.sleep(0.02)
    raise AssertionError(f"no mail to {address}")


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def confirm_link(message: EmailMessage) -> str:
    found = re.search(r"(http://\S+/confirm/\S+)", text_of(message))
    assert found, text_of(message)
    return found.group(1)


def without_tokens(html: str) -> str:
    return re.sub(r'name="csrf" value="[^"]+"', "", html)


def test_sign_up_confirm_activates(web: tuple[Running, RecordingHandler]) -> None:
    running, handler = web
    address = fresh_address()
    before = len(running.store.subscribers())
    with running.client() as client:
        page = sign_up(client, email=f"  {address} ", keywords="LLM; agents", min_votes="7")
        assert page.status_code == 200
        assert "Check your email" in page.text and "메일을 확인해 주세요" in page.text
        assert running.store.subscriber_by_email(address) is None  # nothing until confirmed
        message = mail_to(handler, address)
        assert message["To"] == address
        assert "Confirm your subscription" in str(message["Subject"])
        link = confirm_link(message)
        assert link.startswith(running.url + "/confirm/")
        html = message.get_body(preferencelist=("html",))
        assert html is not None and link in str(html.get_content())
        # Opening the link (as a mail scanner would) only shows a button.
        shown = client.get(link)
        assert shown.status_code == 200 and 'id="confirm"' in shown.text
        assert running.store.subscriber_by_email(address) is None
        done = client.post(link, data={"csrf": csrf_of(shown.text)})
        assert done.status_code == 200
        assert "You are subscribed" in done.text
        # Confirming again (a double click, a second device) answers like the first time.
        again = client.post(link, data={"csrf": csrf_of(shown.text)})
        assert again.status_code == 200 and "You are subscribed" in again.text
        reopened = client.get(link)  # the link opened later shows the result, not the button
        assert reopened.status_code == 200 and 'id="confirm"' not in reopened.text
    subscriber = running.store.subscriber_by_email(address)
    assert subscriber is not None
    assert (subscriber.status, subscriber.filters.keywords, subscriber.filters.min_votes) == (
        "active",
        ("LLM", "agents"),
        7,
    )
    preferences = f"/p/{running.token(subscriber.id, 'preferences')}"
    assert preferences in done.text and preferences in again.text and preferences in reopened.text
    assert len(running.store.subscribers()) == before + 1  # one sign-up, one subscriber


def test_repeated_sign_up_does_not_reveal_status(web: tuple[Running, RecordingHandler]) -> None:
    running, handler = web
    member = running.store.add_subscriber(
        fresh_address(), filters=Filters(keywords=("RAG",), min_votes=3)
    )
    stranger = fresh_address()
    with running.client() as client:
        known = sign_up(client, email=member.email, keywords="hijack", min_votes="0")
        unknown = sign_up(client, email=stranger, keywords="hijack", min_votes="0")
    assert known.status_code == unknown.status_code == 200
    assert without_tokens(known.text) == without_tokens(unknown.text)
    # Only the owner of the address learns which case it was, from the email.
    told = mail_to(handler, member.email)
    assert "already receives" in text_of(told)
    assert f"/p/{running.token(member.id, 'preferences')}" in text_of(told)
    assert "/confirm/" not in text_of(told)
    assert "/confirm/" in text_of(mail_to(handler, stranger))
    after = running.store.subscriber(member.id)
    assert after is not None and after.filters.keywords == ("RAG",) and after.filters.min_votes == 3


def test_confirming_a_stale_sign_up_keeps_an_active_subscribers_filters(
    web: tuple[Running, RecordingHandler],
) -> None:
    running, handler = web
    address = fresh_address()
    with running.client() as client:
        sign_up(client, email=address, keywords="first", min_votes="1")
        link = confirm_link(mail_to(handler, address))
        running.store.add_subscriber(address, filters=Filters(keywords=("kept",), min_votes=9))
        shown = client.get(link)
        client.post(link, data={"csrf": csrf_of(shown.text)})
    found = running.store.subscriber_by_email(address)
    assert (
        found is not None and found.filters.keywords == ("kept",) and found.filters.min_votes == 9
    )


def test_confirmation_reactivates_an_unsubscribed_address(
    web: tuple[Running, RecordingHandler],
) -> None:
    running, handler = web
    gone = running.store.add_subscriber(
        fresh_address(), status="unsubscribed", filters=Filters(keywords=("old",))
    )
    with running.client() as client:
        sign_up(client, email=gone.email, keywords="new topic", min_votes="2")
        link = confirm_link(mail_to(handler, gone.email))
        shown = client.get(link)
        client.post(link, data={"csrf": csrf_of(shown.text)})
    found = running.store.subscriber(gone.id)
    assert found is not None
    assert (found.status, found.filters.keywords, found.filters.min_votes) == (
        "active",
        ("new topic",),
        2,
    )


def test_an_old_confirmation_link_never_says_subscribed_after_an_unsubscribe(
    web: tuple[Running, RecordingHandler],
) -> None:
    running, handler = web
    address = fresh_address()
    with running.client() as client:
        sign_up(client, email=address, keywords="LLM", min_votes="0")
        link = confirm_link(mail_to(handler, address))
        shown = client.get(link)
        assert client.post(link, data={"csrf": csrf_of(shown.text)}).status_code == 200
        found = running.store.subscriber_by_email(address)
        assert found is not None
        assert client.post(f"/u/{running.token(found.id, 'unsubscribe')}").status_code == 200
        opened = client.get(link)  # the first email's link, opened again later
        posted = client.post(link, data={"csrf": csrf_of(shown.text)})  # a tab left open
    for page in (opened, posted):
        assert page.status_code == 200
        assert "You are subscribed" not in page.text
        assert "You are unsubscribed" in page.text and address in page.text
    gone = running.store.subscriber(found.id)
    assert gone is not None and gone.status == "unsubscribed"  # the link changes nothing


def test_invalid_form_gets_messages(web: tuple[Running, RecordingHandler]) -> None:
    running, handler = web
    before = len(handler.received)
    with running.client() as client:
        response = sign_up(client, email="not an address", keywords="x", min_votes="many")
    assert response.status_code == 422
    for text in (
        "Please enter a valid e-mail address.",
        "올바른 이메일 주소를 입력해 주세요.",
        "Each keyword needs at least 2 characters.",
        "Minimum votes must be a whole number",
    ):
        assert text in response.text
    assert 'value="not an address"' in response.text
    time.sleep(0.2)
    assert len(handler.received) == before


@pytest.mark.parametrize("attack", ["no token", "foreign origin", "rebound host"])
def test_cross_site_sign_up_is_refused(web: tuple[Running, RecordingHandler], attack: str) -> None:
    running, _ = web
    address = fresh_address()
    with running.client() as client:
        form = client.get("/subscribe")
        data = {"email": address, "keywords": "", "min_votes": "0"}
        headers: dict[str, str] = {}
        if attack == "no token":
            client.cookies.clear()
        elif attack == "foreign origin":
            data["csrf"] = csrf_of(form.text)
            headers["origin"] = "https://evil.example"
        else:  # DNS rebinding: a page of evil.example reaches us, under its own name
            data["csrf"] = csrf_of(form.text)
            headers.update(origin="http://evil.example", host="evil.example")
        response = client.post("/subscribe", data=data, headers=headers)
    assert response.status_code == 403
    assert running.store.subscriber_by_email(address) is None


def test_cross_site_confirmation_is_refused(web: tuple[Running, RecordingHandler]) -> None:
    running, handler = web
    address = fresh_address()
    with running.client() as client:
        assert sign_up(client, email=address, keywords="", min_votes="0").status_code == 200
        link = confirm_link(mail_to(handler, address))
        shown = client.get(link)
        refused = client.post(
            link, data={"csrf": csrf_of(shown.text)}, headers={"origin": "https://evil.example"}
        )
    assert refused.status_code == 403
    assert "This request was refused" in refused.text
    assert running.store.subscriber_by_email(address) is None


def test_forged_confirmation_is_404(web: tuple[Running, RecordingHandler]) -> None:
    running, _ = web
    with running.client() as client:
        for token in ("x.y", running.token(999_999, "confirm"), running.token(1, "unsubscribe")):
            assert client.get(f"/confirm/{token}").status_code == 404
            assert client.post(f"/confirm/{token}").status_code == 404


def test_rate_limits(tmp_path: Path) -> None:
    limits = SignupLimits(per_address=Limit(2, 3600), per_client=Limit(6, 3600))
    with (
        smtp_server() as (controller, _),
        service(
            tmp_path, smtp_port=controller.port, app_options={"signup_limits": limits}
        ) as running,
        running.client() as client,
    ):
        codes = [sign_up(client, email="same@example.com").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = sign_up(client, email="SAME@example.com")  # the domain's case does not matter
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "3600")
        assert "Too many sign-ups" in limited.text and "요청이 너무 많습니다" in limited.text
        # Every attempt counts for the client: two more pass, then it is stopped whatever the address.
        codes = [sign_up(client, email=f"n{i}@example.com").status_code for i in range(3)]
        assert codes == [200, 200, 429]


def test_confirmation_links_expire(tmp_path: Path) -> None:
    with (
        smtp_server() as (controller, handler),
        service(tmp_path, smtp_port=controller.port) as running,
        running.client() as client,
    ):
        sign_up(client, email="late@example.com", keywords="", min_votes="0")
        link = confirm_link(mail_to(handler, "late@example.com"))
        shown = client.get(link)
        running.clock.advance(days=8)
        expired = client.post(link, data={"csrf": csrf_of(shown.text)})
        assert expired.status_code == 410
        assert "This link has expired" in expired.text
        assert client.get(link).status_code == 410
        assert running.store.subscriber_by_email("late@example.com") is None


def test_smtp_failure_still_answers_the_same(tmp_path: Path) -> None:
    def refuse(*_: Any) -> str:
        return "451 4.3.0 try later"

    with (
        smtp_server(RecordingHandler(reply=refuse)) as (controller, _),
        service(tmp_path, smtp_port=controller.port) as running,
        running.client() as client,
    ):
        response = sign_up(client, email="unlucky@example.com", keywords="", min_votes="")
        assert response.status_code == 200
        assert "Check your email" in response.text
        assert client.get("/healthz").json()["ok"] is True


def test_link_of_a_purged_sign_up_never_opens_a_later_one(tmp_path: Path) -> None:
    with (
        smtp_server() as (controller, handler),
        service(tmp_path, smtp_port=controller.port) as running,
        running.client() as client,
    ):
        sign_up(client, email="first@example.com", keywords="", min_votes="0")
        old_link = confirm_link(mail_to(handler, "first@example.com"))
        running.clock.advance(days=9)
        assert running.store.purge_signups(before=running.clock.now) == 1
        sign_up(client, email="victim@example.com", keywords="", min_votes="0")
        mail_to(handler, "victim@example.com")
        shown = client.get(old_link)
        assert shown.status_code == 404
        assert "victim" not in shown.text
        form = client.get("/subscribe")
        posted = client.post(old_link, data={"csrf": csrf_of(form.text)})
        assert posted.status_code == 404
        assert "victim" not in posted.text and "/p/" not in posted.text
        assert running.store.subscriber_by_email("victim@example.com") is None


def test_sign_up_in_another_case_is_the_same_subscriber(
    web: tuple[Running, RecordingHandler],
) -> None:
    running, handler = web
    member = running.store.add_subscriber(
        "Case.Member@example.com", filters=Filters(keywords=("RAG",))
    )
    gone = running.store.add_subscriber("case.gone@example.com", status="unsubscribed")
    with running.client() as client:
        sign_up(client, email="case.member@example.com", keywords="hijack", min_votes="0")
        assert "already receives" in text_of(mail_to(handler, "case.member@example.com"))
        sign_up(client, email="Case.Gone@example.com", keywords="back", min_votes="0")
        link = confirm_link(mail_to(handler, "Case.Gone@example.com"))
        shown = client.get(link)
        client.post(link, data={"csrf": csrf_of(shown.text)})
    emails = [s.email.lower() for s in running.store.subscribers()]
    assert emails.count("case.member@example.com") == emails.count("case.gone@example.com") == 1
    back = running.store.subscriber(gone.id)
    assert back is not None and (back.status, back.filters.keywords) == ("active", ("back",))
    kept = running.store.subscriber(member.id)
    assert kept is not None and kept.filters.keywords == ("RAG",)


def signup_rows(running: Running) -> list[dict[str, Any]]:
    return running.store.query("SELECT email FROM signups")


def test_encoded_word_address_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    with (
        smtp_server() as (controller, handler),
        service(tmp_path, smtp_port=controller.port) as running,
        running.client() as client,
    ):
        address = "=?utf-8?q?victim=40evil.com?=@example.com"
        response = sign_up(client, email=address, keywords="", min_votes="0")
        assert response.status_code == 422
        assert "encoded" in response.text and "인코딩" in response.text
        assert signup_rows(running) == []
    assert handler.received == []


def test_a_sign_up_that_fails_after_recording_leaves_no_row(tmp_path: Path) -> None:
    broken = tmp_path / "templates" / "web"
    broken.mkdir(parents=True)
    (broken / "confirm_email.txt").write_text("{{ no_such_value.attribute }}\n", encoding="utf-8")
    with (
        smtp_server() as (controller, _),
        service(
            tmp_path, smtp_port=controller.port, template_dir=tmp_path / "templates"
        ) as running,
        running.client() as client,
    ):
        response = sign_up(client, email="unlucky@example.com", keywords="", min_votes="0")
        assert response.status_code == 500
        assert signup_rows(running) == []


def test_the_confirmation_is_rendered_and_signed_off_the_event_loop(
    web: tuple[Running, RecordingHandler], monkeypatch: pytest.MonkeyPatch
) -> None:
    running, handler = web
    where: list[bool] = []

    def recording(**options: Any) -> Any:
        try:
            asyncio.get_running_loop()
            where.append(True)  # called on the event loop thread
        except RuntimeError:
            where.append(False)
        return real(**options)

    real = confirmation_message
    monkeypatch.setattr(signup_module, "confirmation_message", recording)
    address = fresh_address()
    with running.client() as client:
        assert sign_up(client, email=address, keywords="LLM").status_code == 200
    assert confirm_link(mail_to(handler, address))  # the real message still went out
    assert where == [False]
