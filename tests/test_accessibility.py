"""WCAG 2.1 AA in real Chromium: axe-core finds no violation on the site's kinds of page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from tests.web_server import Running, service

from .conftest import TEST_KEY

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PAGES = [
    "index.html",
    "2024-10-16.html",
    "papers/2406.18629.html",
    "search.html?q=에이전트",
    "feeds.html",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.skip("needs axe-core: npm install (package.json)")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Running]:
    """The real service over HTTP serving what the real `newsletter build` wrote."""
    with service(tmp_path, site=False) as running:
        env = {"NEWSLETTER_DB": str(running.settings.db), "NEWSLETTER_SECRET_KEY": TEST_KEY}
        args = ["build", "--out", str(running.settings.site_dir), "--base-url", running.url]
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
        yield running


def violations(page: Any, axe_source: str) -> list[str]:
    """What axe-core finds against WCAG 2.1 AA on the page as it is now: rule and element."""
    page.add_script_tag(content=axe_source)
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS
    )
    return [f"{v['id']}: {node['target']}" for v in result["violations"] for node in v["nodes"]]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_have_no_wcag_21_aa_violations(
    browser: Any, site: Running, axe_source: str, scheme: str
) -> None:
    # Only the checker is injected around the pages' Content-Security-Policy.
    context = browser.new_context(bypass_csp=True, locale="ko-KR", color_scheme=scheme)
    page = context.new_page()
    found: dict[str, list[str]] = {}
    for path in PAGES:
        page.goto(f"{site.url}/{path}")
        if path.startswith("search.html"):
            page.wait_for_selector("#results li")
        found[path] = violations(page, axe_source)
    context.close()
    assert found == {path: [] for path in PAGES}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_service_pages_and_an_email_have_no_wcag_21_aa_violations(
    browser: Any, site: Running, axe_source: str, scheme: str
) -> None:
    from newsletter.mail.compose import Composer

    reader = site.store.add_subscriber("reader@example.com", name="김민지")
    paths = [
        "/subscribe",
        f"/p/{site.token(reader.id, 'preferences')}",
        f"/u/{site.token(reader.id, 'unsubscribe')}",
    ]
    context = browser.new_context(bypass_csp=True, locale="ko-KR", color_scheme=scheme)
    page = context.new_page()
    found: dict[str, list[str]] = {}
    for path in paths:
        page.goto(f"{site.url}{path}")
        found[path.split("/")[1]] = violations(page, axe_source)
    # The erase box, opened, ticked and sent as a reader would, and the page it leads to.
    page.goto(f"{site.url}{paths[1]}")
    page.click("#erase-box summary")
    found["erase box"] = violations(page, axe_source)
    page.check("#erase-confirm")
    page.click("#erase-button")
    page.wait_for_selector("#erased")
    found["erased"] = violations(page, axe_source)
    assert site.store.subscriber(reader.id) is None
    digest = site.store.digest_for(None)
    composer = Composer(settings=site.settings, digest=digest, clock=site.clock)
    rendered = composer.rendered_for(reader)
    assert rendered is not None and rendered.shown > 0
    page.set_content(rendered.html)
    found["email"] = violations(page, axe_source)
    context.close()
    assert found == {
        "subscribe": [],
        "p": [],
        "u": [],
        "erase box": [],
        "erased": [],
        "email": [],
    }


def test_a_paper_page_carries_its_sharing_card_in_chromium(browser: Any, site: Running) -> None:
    # What a link preview reads, as the browser parsed the page; the other card tags are
    # checked without a browser (test_paper_pages.py).
    page = browser.new_page()
    page.goto(f"{site.url}/papers/2406.18629.html")
    meta = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('meta[property], meta[name]')]
            .map(m => [m.getAttribute('property') || m.getAttribute('name'), m.content]))"""
    )
    title = page.locator("h1").inner_text()
    page.close()
    assert (
        meta["og:title"]
        == title
        == "Step-DPO: Step-wise Preference Optimization for Long-chain Reasoning of LLMs"
    )
    assert meta["og:type"] == "article"
