"""One-click unsubscribe (RFC 8058) and the unsubscribe page, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import httpx
import pytest

from newsletter.model import Filters
from newsletter.tokens import make_token, subscriber_token
from tests.web_server import Running, service

_emails = count(1)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with service(tmp_path_factory.mktemp("unsubscribe")) as running:
        yield running


@pytest.fixture
def subscriber_id(web: Running) -> int:
    return web.store.add_subscriber(
        f"reader{next(_emails)}@example.com", filters=Filters(keywords=("LLM",))
    ).id


def status(web: Running, subscriber_id: int) -> str:
    found = web.store.subscriber(subscriber_id)
    assert found is not None
    return found.status


BODIES = {
    "empty": {},
    "urlencoded": {
        "content": b"List-Unsubscribe=One-Click",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "multipart": {"files": {"List-Unsubscribe": (None, "One-Click")}},
    "nonsense": {"content": b"\x00\xff not a form", "headers": {"content-type": "text/plain"}},
}


@pytest.mark.parametrize("body", list(BODIES))
def test_one_click_post_unsubscribes_whatever_the_body(
    web: Running, subscriber_id: int, body: str
) -> None:
    url = f"/u/{web.token(subscriber_id, 'unsubscribe')}"
    # As a mail provider sends it: no cookies, no Origin, no redirects followed.
    with web.client(follow_redirects=False) as client:
        first = client.post(url, **BODIES[body])  # type: ignore[arg-type]
        assert first.status_code == 200
        assert "location" not in first.headers
        assert status(web, subscriber_id) == "unsubscribed"
        again = client.post(url, **BODIES[body])  # type: ignore[arg-type]
        assert again.status_code == 200
        assert status(web, subscriber_id) == "unsubscribed"
    assert "You are unsubscribed" in first.text
    assert "구독이 취소되었습니다" in first.text


def test_one_click_post_from_another_site_still_works(web: Running, subscriber_id: int) -> None:
    # Webmail clients post from their own origin; the signed token is what authorises it.
    with web.client() as client:
        response = client.post(
            f"/u/{web.token(subscriber_id, 'unsubscribe')}",
            data={"List-Unsubscribe": "One-Click"},
            headers={"origin": "https://mail.example.net", "sec-fetch-site": "cross-site"},
        )
    assert response.status_code == 200
    assert status(web, subscriber_id) == "unsubscribed"


def test_get_only_shows_a_button(web: Running, subscriber_id: int) -> None:
    url = f"/u/{web.token(subscriber_id, 'unsubscribe')}"
    with web.client() as client:
        for _ in range(3):
            page = client.get(url)
            assert page.status_code == 200
        assert client.head(url).status_code == 200
    assert status(web, subscriber_id) == "active"
    assert f'<form method="post" action="{url}">' in page.text
    assert 'id="unsubscribe"' in page.text
    assert "reader" in page.text and "@example.com" in page.text


@pytest.mark.parametrize(
    "forge",
    [
        "tampered tag",
        "other subscriber's id",
        "preferences token",
        "wrong key",
        "no such subscriber",
        "an id past SQLite's integers",
        "garbage",
        "empty tag",
        "another database's link",
        "the id-only form",
    ],
)
def test_forged_tokens_get_404_and_change_nothing(
    web: Running, subscriber_id: int, forge: str
) -> None:
    good = web.token(subscriber_id, "unsubscribe")
    head, tag = good.split(".")
    token = {
        "tampered tag": f"{head}.{'A' if tag[0] != 'A' else 'B'}{tag[1:]}",
        "other subscriber's id": f"{make_token(subscriber_id + 1, purpose='unsubscribe', key=b'x').split('.')[0]}.{tag}",
        "preferences token": web.token(subscriber_id, "preferences"),
        "wrong key": make_token(subscriber_id, purpose="unsubscribe", key=b"another key"),
        "no such subscriber": web.token(999_999, "unsubscribe"),
        "an id past SQLite's integers": web.token(2**64, "unsubscribe"),  # signed with our key
        "garbage": "not-a-token",
        "empty tag": f"{head}.",
        # Same key and id, made for whoever has that id in another database.
        "another database's link": subscriber_token(
            subscriber_id, email="someone.else@example.org", purpose="unsubscribe", key=web.key
        ),
        # Emails from before tokens held the address; this subscriber came later.
        "the id-only form": make_token(subscriber_id, purpose="unsubscribe", key=web.key),
    }[forge]
    other = web.store.add_subscriber(f"other{next(_emails)}@example.com")
    with web.client() as client:
        for method in ("GET", "POST"):
            response = client.request(method, f"/u/{token}")
            assert response.status_code == 404
            assert "Page not found" in response.text
    assert status(web, subscriber_id) == "active"
    assert status(web, other.id) == "active"


def test_links_from_before_tokens_held_the_address_still_work(web: Running) -> None:
    # What migration m011 leaves for the subscribers of its time.
    reader = web.store.add_subscriber(f"early{next(_emails)}@example.com")
    with web.store.transaction() as conn:
        conn.execute("UPDATE subscribers SET legacy_links = 1 WHERE id = ?", (reader.id,))
    old = make_token(reader.id, purpose="unsubscribe", key=web.key)
    with web.client() as client:
        assert client.get(f"/u/{old}").status_code == 200
        assert status(web, reader.id) == "active"
        assert client.post(f"/u/{old}").status_code == 200
    assert status(web, reader.id) == "unsubscribed"


def test_unsubscribed_page_offers_a_way_back(web: Running, subscriber_id: int) -> None:
    with web.client() as client:
        page = client.post(f"/u/{web.token(subscriber_id, 'unsubscribe')}")
        # A GET after unsubscribing says so rather than offering the button again.
        later = client.get(f"/u/{web.token(subscriber_id, 'unsubscribe')}")
    assert f"/p/{web.token(subscriber_id, 'preferences')}" in page.text
    assert "You are unsubscribed" in later.text


def test_service_pages_keep_tokens_to_themselves(web: Running, subscriber_id: int) -> None:
    with web.client() as client:
        page = client.get(f"/u/{web.token(subscriber_id, 'unsubscribe')}")
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_hostile_address_is_escaped(web: Running) -> None:
    hostile = web.store.add_subscriber('"<script>alert(1)</script>"@example.com')
    with web.client() as client:
        page = client.get(f"/u/{web.token(hostile.id, 'unsubscribe')}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_other_methods_get_a_page_not_a_crash(web: Running, subscriber_id: int) -> None:
    with httpx.Client(base_url=web.url) as client:
        response = client.put(f"/u/{web.token(subscriber_id, 'unsubscribe')}")
    assert response.status_code in (404, 405)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert status(web, subscriber_id) == "active"
