"""The daily email in real headless Chromium at phone and desktop widths, light and dark."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings
from newsletter.digest.parse import parse_digest
from newsletter.mail.compose import Composer
from newsletter.model import Digest, Subscriber

from .conftest import DIGESTS, PINNED_NOW, TEST_KEY

pytestmark = pytest.mark.browser

SETTINGS = Settings().replace(base_url="https://papers.example.com", secret_key=TEST_KEY)
READER = Subscriber(id=1, email="minji.kim@example.com", name="김민지")
WIDTHS = (375, 600)


def html_of(path: Path) -> str:
    digest: Digest = parse_digest(path.read_text(encoding="utf-8"), source=path.name).digest
    message = Composer(settings=SETTINGS, digest=digest, clock=lambda: PINNED_NOW).compose(READER)
    assert message is not None
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def open_page(browser: Any, html: str, *, width: int, scheme: str = "light") -> Any:
    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
    # Thumbnails live on the internet; the tests stay on loopback, so block every request.
    page.route("**/*", lambda route: route.abort())
    page.set_content(html, wait_until="domcontentloaded")
    return page


@pytest.mark.parametrize("path", DIGESTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("width", WIDTHS)
def test_email_fits_the_width_and_renders_korean(
    browser: Any, path: Path, width: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = open_page(browser, html_of(path), width=width)
    try:
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"horizontal overflow: {scroll_width}px in {width}px"
        # Nothing visible sticks out to the right either (wide images, unbroken words).
        widest = page.evaluate(
            """() => Math.max(...[...document.body.querySelectorAll('*')]
                 .filter(e => e.offsetParent !== null)
                 .map(e => e.getBoundingClientRect().right))"""
        )
        assert widest <= width + 0.5
        # Which font Chromium drew the Korean greeting with: a CJK face, not a fallback box.
        cdp = page.context.new_cdp_session(page)
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "h1 + p"})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        assert any("CJK" in f["familyName"] or "KR" in f["familyName"] for f in fonts), fonts
        assert page.inner_text("h1 + p").startswith("김민지님, 안녕하세요.")
        shots = tmp_path_factory.mktemp("email-screenshots")
        page.screenshot(path=str(shots / f"{path.stem}-{width}.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_dark_mode_changes_the_colours(browser: Any, width: int) -> None:
    html = html_of(DIGESTS[0])
    colours = {}
    for scheme in ("light", "dark"):
        page = open_page(browser, html, width=width, scheme=scheme)
        try:
            colours[scheme] = page.evaluate(
                """() => [getComputedStyle(document.body).backgroundColor,
                          getComputedStyle(document.querySelector('h2 a')).color,
                          getComputedStyle(document.querySelector('.panel')).backgroundColor]"""
            )
        finally:
            page.close()
    assert all(a != b for a, b in zip(colours["light"], colours["dark"], strict=True)), colours
    assert colours["dark"][2] == "rgb(26, 29, 35)"


def test_every_image_has_alt_text_and_links_are_absolute(browser: Any) -> None:
    page = open_page(browser, html_of(DIGESTS[-1]), width=600)
    try:
        images = page.evaluate("[...document.images].map(i => [i.alt, i.src])")
        assert images and all(alt and src.startswith("https://") for alt, src in images)
        hrefs = page.evaluate("[...document.links].map(a => a.getAttribute('href'))")
        assert hrefs and all(h.startswith("https://") for h in hrefs), hrefs
    finally:
        page.close()
