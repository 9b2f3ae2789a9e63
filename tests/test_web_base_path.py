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


def test_saving_preferences_returns_to_the_page_under_the_path(web: Running) -> None:
    reader = web.store.add_subscriber("saver@example.com")
    page_url = f"{ROOT}/p/{web.token(reader.id, 'preferences')}"
    with web.client(follow_redirects=False) as client:
        page = client.get(page_url)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        form = {"csrf": csrf[1], "keywords": "RAG", "exclude": "", "min_votes": "0"}
        form |= {"max_papers": "", "action": "save"}
        saved = client.post(page_url, data=form, headers={"origin": web.url})
        assert saved.status_code == 303
        assert saved.headers["location"] == f"{page_url}?done=saved"
    found = web.store.subscriber(reader.id)
    assert found is not None and found.filters.keywords == ("RAG",)


def test_the_path_is_taken_off_once_and_a_site_folder_of_its_name_is_reached(
    web: Running,
) -> None:
    reader = web.store.add_subscriber("twice@example.com")
    token = web.token(reader.id, "unsubscribe")
    folder = web.settings.site_dir / "papers"
    folder.mkdir(exist_ok=True)
    (folder / "2406.00001.html").write_text("<p>a paper page</p>", encoding="utf-8")
    with web.client(follow_redirects=False) as client:
        # Twice the prefix is no route: a token there is neither served nor logged whole.
        assert client.get(f"{ROOT}{ROOT}/u/{token}").status_code == 404
        # The site's own papers/ folder, under a base path of the same name.
        assert client.get(f"{ROOT}/papers/2406.00001.html").text == "<p>a paper page</p>"


def test_a_base_path_spelt_with_percent_escapes_is_served(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    encoded = "/%EB%85%BC%EB%AC%B8"  # /논문
    with service(tmp_path_factory.mktemp("encoded"), base_path=encoded) as web:
        reader = web.store.add_subscriber("encoded@example.com")
        with web.client(follow_redirects=False) as client:
            assert (
                client.get(f"{encoded}/u/{web.token(reader.id, 'unsubscribe')}").status_code == 200
            )
            assert client.get(encoded).headers["location"] == f"{encoded}/"
            page = client.get(f"{encoded}/p/{web.token(reader.id, 'preferences')}")
            assert f'data-preview="{encoded}/p/' in page.text


def test_doctor_finds_the_one_click_route_under_the_path(web: Running) -> None:
    check = check_base_url(web.settings, timeout=5)
    assert check.detail == f"{web.settings.base_url} serves the unsubscribe route, over plain http"
