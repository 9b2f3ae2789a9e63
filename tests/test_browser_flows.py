"""A subscriber's whole journey in real headless Chromium: sign up, confirm, tune, unsubscribe."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newsletter.audience.match import select_papers
from newsletter.model import Filters
from tests.smtp_servers import RecordingHandler, smtp_server
from tests.test_web_signup import confirm_link, mail_to
from tests.web_server import Running, service

pytestmark = pytest.mark.browser
WIDTHS = (375, 1280)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[Running, RecordingHandler]]:
    with (
        smtp_server() as (controller, handler),
        service(tmp_path, smtp_port=controller.port) as running,
    ):
        yield running, handler


def new_page(browser: Any, width: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="ko-KR")
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    return page


def fits(page: Any, width: int) -> None:
    """Nothing sticks out sideways (no horizontal scrolling on a phone)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def shot(page: Any, out: Path, name: str, width: int) -> None:
    page.screenshot(path=str(out / f"{name}-{width}.png"), full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_sign_up_confirm_tune_and_unsubscribe(
    browser: Any, web: tuple[Running, RecordingHandler], tmp_path: Path, width: int
) -> None:
    running, handler = web
    out = tmp_path / "screenshots"
    out.mkdir()
    address = f"browser{width}@example.com"
    page = new_page(browser, width)

    # Sign up.
    page.goto(f"{running.url}/subscribe")
    shot(page, out, "signup", width)
    fits(page, width)
    page.fill("#email", address)
    page.fill("#keywords", "LLM")
    page.fill("#min_votes", "5")
    page.click("#subscribe")
    page.wait_for_selector("#check-email")
    shot(page, out, "check-email", width)
    assert running.store.subscriber_by_email(address) is None

    # Confirm from the email the SMTP server received.
    page.goto(confirm_link(mail_to(handler, address)))
    page.click("#confirm")
    page.wait_for_selector("#confirmed")
    shot(page, out, "confirmed", width)
    subscriber = running.store.subscriber_by_email(address)
    assert subscriber is not None and subscriber.status == "active"
    assert subscriber.filters.keywords == ("LLM",) and subscriber.filters.min_votes == 5

    # Preferences: the preview follows the typing, then saving stores it.
    page.click("#preferences-link")
    page.wait_for_selector("#preferences")
    digest = running.store.digest(running.store.latest_date())  # type: ignore[arg-type]
    assert digest is not None
    before = select_papers(digest, Filters(("LLM",), (), 5, None))
    assert page.get_attribute(".summary", "data-count") == str(len(before))
    page.fill("#keywords", "video\ndiffusion")
    page.fill("#min_votes", "0")
    after = select_papers(digest, Filters(("video", "diffusion"), (), 0, None))
    assert len(after) != len(before)
    page.wait_for_selector(f'.summary[data-count="{len(after)}"]')
    shown = page.eval_on_selector_all(".picks a", "links => links.map(a => a.href)")
    assert [re.sub(r".*/abs/", "", h) for h in shown] == [p.paper.arxiv_id for p in after]
    shot(page, out, "preferences", width)
    fits(page, width)

    page.fill("#max_papers", "zero")
    page.wait_for_selector('#preview [data-field="max_papers"]')
    problem = page.inner_text('#preview [data-field="max_papers"]')
    assert "최대 논문 수는" in problem and "Maximum papers" in problem
    shot(page, out, "preferences-invalid", width)
    page.fill("#max_papers", "3")
    page.wait_for_selector('.summary[data-count="3"]')

    page.click("#save")
    page.wait_for_selector("#notice")
    saved = running.store.subscriber(subscriber.id)
    assert saved is not None
    assert (saved.filters.keywords, saved.filters.min_votes, saved.filters.max_papers) == (
        ("video", "diffusion"),
        0,
        3,
    )

    # Unsubscribe through the page's link and button.
    page.click("text=구독 취소")
    page.wait_for_selector("#unsubscribe")
    assert running.store.is_active(subscriber.id)  # showing the page changed nothing
    shot(page, out, "unsubscribe", width)
    page.click("#unsubscribe")
    page.wait_for_selector("#unsubscribed")
    shot(page, out, "unsubscribed", width)
    assert not running.store.is_active(subscriber.id)
    found = running.store.subscriber(subscriber.id)
    assert found is not None and found.status == "unsubscribed"
    assert page.problems == []
    page.context.close()
