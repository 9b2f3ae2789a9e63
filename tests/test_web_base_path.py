"""A base_url with a path (`https://example.com/papers`): the service answers under it, and every
link on its pages stays under it, so the links in emails work (a reader's review found them 404)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from newsletter.doctor.probes import check_base_url
from newsletter.model import Filters
from tests.web_server import Running, service

ROOT = "/papers"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with service(tmp_path_factory.mktemp("base-path"), base_path=ROOT) as running:
        yield running


def links(html: str) -> list[str]:
    """Every href, src, action and data-preview on a page that is a path on this host."""
    found = re.findall(r'(?:href|src|action|data-preview)="(/[^"]*)"', html)
    assert found
    return found


def test_the_site_and_feeds_answer_under_the_path(web: Running) -> None:
    with web.client(follow_redirects=False) as client:
        bare = client.get(ROOT)
        assert bare.status_code in (307, 308) and bare.headers["location"] == f"{ROOT}/"
        assert client.get(f"{ROOT}/").status_code == 200
        assert (
            client.get(f"{ROOT}/rss.xml").headers["content-type"].startswith("application/rss+xml")
        )
        slash = client.get(f"{ROOT}/subscribe/")  # the slash redirect keeps the path too
        assert slash.headers["location"] == f"{ROOT}/subscribe"


def test_an_emails_unsubscribe_link_works_and_its_page_links_under_the_path(
    web: Running,
) -> None:
    reader = web.store.add_subscriber("under@example.com", filters=Filters(keywords=("LLM",)))
    unsubscribe = f"{ROOT}/u/{web.token(reader.id, 'unsubscribe')}"
    assert web.settings.base_url + unsubscribe.removeprefix(ROOT) == web.url + unsubscribe
    with web.client(follow_redirects=False) as client:
        page = client.get(unsubscribe)
        assert page.status_code == 200
        paths = links(page.text)
        assert all(p.startswith(f"{ROOT}/") for p in paths), paths
        assert f'action="{unsubscribe}"' in page.text
        css = next(p for p in paths if p.endswith(".css"))
        assert client.get(css).headers["content-type"].startswith("text/css")
        # One-click, as a mail provider posts it.
        assert client.post(unsubscribe, content=b"List-Unsubscribe=One-Click").status_code == 200
    found = web.store.subscriber(reader.id)
    assert found is not None and found.status == "unsubscribed"


def test_the_preferences_page_links_under_the_path_also_behind_a_proxy_that_strips_it(
    web: Running,
) -> None:
    reader = web.store.add_subscriber("prefs@example.com")
    token = web.token(reader.id, "preferences")
    with web.client(follow_redirects=False) as client:
        for asked in (f"{ROOT}/p/{token}", f"/p/{token}"):  # direct, or through such a proxy
            page = client.get(asked)
            assert page.status_code == 200
            paths = links(page.text)
            assert all(p.startswith(f"{ROOT}/") for p in paths), paths
            assert f'data-preview="{ROOT}/p/{token}/preview"' in page.text
        assert client.get(f"{ROOT}/p/{token}/preview").status_code == 200


def test_doctor_finds_the_one_click_route_under_the_path(web: Running) -> None:
    check = check_base_url(web.settings, timeout=5)
    assert check.detail == f"{web.settings.base_url} serves the unsubscribe route, over plain http"
