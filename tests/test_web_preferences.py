"""The preferences page over real HTTP: edit, validate (Korean and English), preview, resume."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path

import httpx
import pytest

from newsletter.audience import match
from newsletter.audience.match import select_papers
from newsletter.delivery.runlock import lock_path, send_lock
from newsletter.model import Filters, Subscriber
from tests.web_server import Running, service

_emails = count(1)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with service(tmp_path_factory.mktemp("preferences")) as running:
        yield running


@pytest.fixture
def reader(web: Running) -> Subscriber:
    return web.store.add_subscriber(
        f"reader{next(_emails)}@example.com",
        filters=Filters(keywords=("LLM", "에이전트"), min_votes=5),
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no cross-site token"
    return found.group(1)


def picks_in(html: str) -> list[str]:
    return re.findall(r'<a href="https://arxiv\.org/abs/([0-9.]+)"', html)


def open_page(web: Running, client: httpx.Client, subscriber: Subscriber) -> tuple[str, str]:
    url = f"/p/{web.token(subscriber.id, 'preferences')}"
    page = client.get(url)
    assert page.status_code == 200
    return url, csrf_of(page.text)


def current(web: Running, subscriber: Subscriber) -> Subscriber:
    found = web.store.subscriber(subscriber.id)
    assert found is not None
    return found


def test_page_shows_filters_and_todays_selection(web: Running, reader: Subscriber) -> None:
    with web.client() as client:
        page = client.get(f"/p/{web.token(reader.id, 'preferences')}")
    assert page.status_code == 200
    assert "LLM\n에이전트</textarea>" in page.text
    assert 'name="min_votes" inputmode="numeric" value="5"' in page.text
    digest = web.store.digest(web.store.latest_date())  # type: ignore[arg-type]
    assert digest is not None
    expected = select_papers(digest, reader.filters)
    assert expected, "the fixture digest should match something"
    assert picks_in(page.text) == [p.paper.arxiv_id for p in expected]
    assert f"{len(expected)} of {len(digest.papers)} papers from {digest.date}" in page.text


def test_save_changes_the_subscriber(web: Running, reader: Subscriber) -> None:
    with web.client(follow_redirects=False) as client:
        url, csrf = open_page(web, client, reader)
        response = client.post(
            url,
            data={
                "csrf": csrf,
                "keywords": "diffusion; video\n\n",
                "exclude": "survey",
                "min_votes": "10",
                "max_papers": "3",
                "action": "save",
            },
            headers={"origin": web.url},
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"{url}?done=saved"
        page = client.get(response.headers["location"])
    saved = current(web, reader)
    assert (
        saved.filters.keywords,
        saved.filters.exclude,
        saved.filters.min_votes,
        saved.filters.max_papers,
    ) == (
        ("diffusion", "video"),
        ("survey",),
        10,
        3,
    )
    assert "Saved." in page.text and "저장되었습니다" in page.text
    assert len(picks_in(page.text)) <= 3


def test_invalid_values_get_messages_in_both_languages(web: Running, reader: Subscriber) -> None:
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        response = client.post(
            url,
            data={
                "csrf": csrf,
                "keywords": "a; LLM",
                "exclude": "x\x1b[2Jy",
                "min_votes": "-3",
                "max_papers": "zero",
            },
        )
    assert response.status_code == 422
    text = response.text
    assert "Each keyword needs at least 2 characters." in text
    assert "키워드는 2자 이상이어야 합니다." in text
    assert "Minimum votes must be a whole number" in text
    assert "최소 추천 수는" in text
    assert "Maximum papers must be a whole number" in text
    assert '<p class="error" data-field="exclude">제어 문자는 넣을 수 없습니다.' in text
    assert "Control characters are not allowed here." in text
    # What was typed comes back (escaped) so it can be fixed.
    assert "a; LLM</textarea>" in text
    assert current(web, reader).filters.min_votes == 5  # nothing saved


def test_typed_text_is_escaped(web: Running, reader: Subscriber) -> None:
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        response = client.post(
            url,
            data={
                "csrf": csrf,
                "keywords": "</textarea><script>alert(1)</script>",
                "exclude": "",
                "min_votes": "",
                "max_papers": "",
                "action": "preview",
            },
        )
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;/textarea&gt;&lt;script&gt;" in response.text


def test_preview_endpoint_matches_the_matcher(web: Running, reader: Subscriber) -> None:
    digest = web.store.digest(web.store.latest_date())  # type: ignore[arg-type]
    assert digest is not None
    with web.client() as client:
        fragment = client.get(
            f"/p/{web.token(reader.id, 'preferences')}/preview",
            params={"keywords": "video\ndiffusion", "min_votes": "3", "max_papers": "4"},
        )
        bad = client.get(
            f"/p/{web.token(reader.id, 'preferences')}/preview", params={"min_votes": "lots"}
        )
        forged = client.get(f"/p/{web.token(reader.id, 'unsubscribe')}/preview")
    expected = select_papers(digest, Filters(("video", "diffusion"), (), 3, None))
    assert fragment.status_code == 200
    assert "<html" not in fragment.text  # a fragment for the page's script to swap in
    assert picks_in(fragment.text) == [p.paper.arxiv_id for p in expected[:4]]
    assert bad.status_code == 200 and "Minimum votes must be" in bad.text
    assert forged.status_code == 404
    assert current(web, reader).filters.keywords == ("LLM", "에이전트")  # a preview saves nothing


def test_preview_button_without_script(web: Running, reader: Subscriber) -> None:
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        response = client.post(
            url,
            data={
                "csrf": csrf,
                "keywords": "agent",
                "exclude": "",
                "min_votes": "0",
                "max_papers": "",
                "action": "preview",
            },
        )
    assert response.status_code == 200
    assert "agent</textarea>" in response.text
    assert picks_in(response.text)
    assert current(web, reader).filters.keywords == ("LLM", "에이전트")


@pytest.mark.parametrize(
    "attack", ["no token", "no cookie", "wrong token", "foreign origin", "cross-site fetch"]
)
def test_cross_site_posts_are_refused(web: Running, reader: Subscriber, attack: str) -> None:
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        data = {"csrf": csrf, "keywords": "hijacked", "min_votes": "0"}
        headers = {"origin": web.url}
        if attack == "no token":
            del data["csrf"]
        elif attack == "no cookie":
            client.cookies.clear()
        elif attack == "wrong token":
            data["csrf"] = csrf[:-2] + ("AA" if not csrf.endswith("AA") else "BB")
        elif attack == "foreign origin":
            headers = {"origin": "https://evil.example"}
        elif attack == "cross-site fetch":
            headers = {"sec-fetch-site": "cross-site"}
        response = client.post(url, data=data, headers=headers)
    assert response.status_code == 403
    assert "This request was refused" in response.text
    assert current(web, reader).filters.keywords == ("LLM", "에이전트")


def test_resume_after_unsubscribing(web: Running, reader: Subscriber) -> None:
    web.store.set_status(reader.id, "unsubscribed")
    with web.client(follow_redirects=True) as client:
        url, csrf = open_page(web, client, reader)
        page = client.get(url)
        assert 'id="resume"' in page.text
        response = client.post(url, data={"csrf": csrf, "action": "resume"})
    assert response.status_code == 200
    assert "Emails resumed." in response.text
    assert current(web, reader).status == "active"


def test_a_bounced_address_cannot_resume(web: Running, reader: Subscriber) -> None:
    web.store.set_status(reader.id, "bounced")
    with web.client(follow_redirects=True) as client:
        url, csrf = open_page(web, client, reader)
        page = client.get(url)
        assert 'id="resume"' not in page.text and 'id="bounced"' in page.text
        response = client.post(url, data={"csrf": csrf, "action": "resume"})
    assert response.status_code == 409
    assert "Mail to this address bounced" in response.text
    assert "반송" in response.text and "Emails resumed." not in response.text
    assert current(web, reader).status == "bounced"


def test_a_bounced_address_cannot_resume_by_unsubscribing_first(
    web: Running, reader: Subscriber
) -> None:
    web.store.set_status(reader.id, "bounced")
    with web.client(follow_redirects=True) as client:
        one_click = client.post(f"/u/{web.token(reader.id, 'unsubscribe')}")
        assert one_click.status_code == 200  # the reader is told no more mail comes
        url, csrf = open_page(web, client, reader)
        response = client.post(url, data={"csrf": csrf, "action": "resume"})
        assert response.status_code == 409
        assert client.get(web.feed_url(reader.id)).status_code == 404
    assert current(web, reader).status == "bounced"


def test_forged_preferences_token_is_404(web: Running, reader: Subscriber) -> None:
    with web.client() as client:
        for token in (web.token(reader.id, "unsubscribe"), "x.y", web.token(10**9, "preferences")):
            assert client.get(f"/p/{token}").status_code == 404
            assert client.post(f"/p/{token}", data={"keywords": "x"}).status_code == 404


def test_no_digest_yet(tmp_path: Path) -> None:
    with service(tmp_path, digests=False) as web, web.client() as client:
        someone = web.store.add_subscriber("first@example.com")
        page = client.get(f"/p/{web.token(someone.id, 'preferences')}")
    assert page.status_code == 200
    assert "No digest stored yet." in page.text


def match_cache_sizes(web: Running) -> dict[str, int]:
    """How many entries the matcher's keyword cache and the service's digest memos hold now."""
    sizes = {"keywords": len(match.KEYWORDS)}
    newest = web.app.state.service._newest
    if newest is not None and newest[1] is not None:
        for memo in ("_found", "_candidates", "_reasons", "_picks"):
            sizes[memo] = len(getattr(newest[1], memo))
    return sizes


def test_previews_of_new_keywords_do_not_grow_the_matchers_caches(
    web: Running, reader: Subscriber
) -> None:
    url = f"/p/{web.token(reader.id, 'preferences')}/preview"
    with web.client() as client:
        assert client.get(url, params={"keywords": "warm up"}).status_code == 200
        before = match_cache_sizes(web)
        for n in range(300):
            # Five fresh 100-syllable Hangul keywords per request, as the attack sent.
            keywords = "\n".join(
                "".join(chr(0xAC00 + (n * 7919 + k * 104_729 + i * 31) % 11172) for i in range(100))
                for k in range(5)
            )
            response = client.get(url, params={"keywords": keywords})
            assert response.status_code == 200 and "error" not in response.text
    after = match_cache_sizes(web)
    grown = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    assert max(grown.values()) <= 10, grown


FORM = "application/x-www-form-urlencoded"


def test_unescaped_utf8_is_read_as_typed(web: Running, reader: Subscriber) -> None:
    # curl -d 'keywords=뷰 생성' sends the bytes as they are; Starlette read them as Latin-1.
    with web.client(follow_redirects=False) as client:
        url, csrf = open_page(web, client, reader)
        body = f"csrf={csrf}&keywords=뷰 생성&exclude=&min_votes=0&max_papers=&action=save"
        saved = client.post(url, content=body.encode(), headers={"content-type": FORM})
    assert saved.status_code == 303
    assert current(web, reader).filters.keywords == ("뷰 생성",)


@pytest.mark.parametrize(
    ("keywords", "content_type", "said"),
    [
        ("%BA%E4", FORM, "the form is not UTF-8 text"),  # 뷰 in EUC-KR, percent-encoded
        ("caf%E9", f"{FORM}; charset=iso-8859-1", "the form must be sent as UTF-8"),
        ("caf%C3%A9", "text/plain", "a form is sent as application/x-www-form-urlencoded"),
    ],
)
def test_form_text_that_is_not_utf8_is_refused_never_saved_garbled(
    web: Running, reader: Subscriber, keywords: str, content_type: str, said: str
) -> None:
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        body = f"csrf={csrf}&keywords={keywords}&exclude=&min_votes=0&max_papers=&action=save"
        refused = client.post(url, content=body.encode(), headers={"content-type": content_type})
    assert refused.status_code == (415 if content_type == "text/plain" else 400)
    assert said in refused.text
    assert current(web, reader).filters == reader.filters  # it used to hold U+FFFD or 'cafÃ©'


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"action": "save"}, "the form is missing keywords, exclude, min_votes, max_papers"),
        ({"keywords": "agent", "action": "save"}, "the form is missing exclude, min_votes"),
        (
            {"keywords": "", "exclude": "", "min_votes": "", "max_papers": "", "action": "sav"},
            "unknown action &#39;sav&#39;",
        ),
    ],
)
def test_a_post_missing_fields_or_with_an_unknown_action_changes_nothing(
    web: Running, reader: Subscriber, fields: dict[str, str], said: str
) -> None:
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        refused = client.post(url, data={"csrf": csrf, **fields})
    assert refused.status_code == 400
    assert said in refused.text
    assert current(web, reader).filters == reader.filters  # they were wiped to "every paper"


def test_a_form_giving_a_field_twice_is_refused(web: Running, reader: Subscriber) -> None:
    # "Save" and "Erase" at once: which one the reader meant, no one can say.
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        data = {"csrf": csrf, "action": ["save", "erase"], "confirm": "erase"}
        refused = client.post(url, data=data)
    assert refused.status_code == 400
    assert "the form gives the field &#39;action&#39; more than once" in refused.text
    assert web.store.subscriber(reader.id) is not None


def test_erase_asks_for_a_tick_then_forgets_the_reader(web: Running, reader: Subscriber) -> None:
    feed = web.feed_url(reader.id)
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        assert client.get(feed).status_code == 200
        unticked = client.post(url, data={"csrf": csrf, "action": "erase"})
        assert unticked.status_code == 422
        assert "Tick “I understand” to erase." in unticked.text
        assert web.store.subscriber(reader.id) is not None
        done = client.post(url, data={"csrf": csrf, "action": "erase", "confirm": "erase"})
        assert done.status_code == 200 and "Everything is erased" in done.text
        assert reader.email in done.text
        # Every link of theirs now names no one.
        assert client.get(url).status_code == 404
        assert client.get(feed).status_code == 404
    assert web.store.subscriber(reader.id) is None
    assert web.store.subscriber_by_email(reader.email) is None
    assert web.store.erased([reader.email]) == {reader.email}


def test_erase_waits_for_a_running_send(web: Running, reader: Subscriber) -> None:
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        with send_lock(web.settings.db, alone=False):  # what a send holds while it runs
            busy = client.post(url, data={"csrf": csrf, "action": "erase", "confirm": "erase"})
        assert busy.status_code == 409
        assert "Emails are being sent right now, so nothing was erased." in busy.text
        assert web.store.subscriber(reader.id) is not None
        done = client.post(url, data={"csrf": csrf, "action": "erase", "confirm": "erase"})
        assert done.status_code == 200
    assert web.store.subscriber(reader.id) is None


def test_erase_clicked_again_and_again_during_a_send_never_holds_its_write_lock(
    web: Running, reader: Subscriber
) -> None:
    # While a send runs, each erase is refused; meanwhile the send must be able to write
    # (claim, record outcomes) at any moment: no attempt may sit on SQLite's write lock.
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        data = {"csrf": csrf, "action": "erase", "confirm": "erase"}
        writer = sqlite3.connect(web.settings.db, isolation_level=None, timeout=0)
        with send_lock(web.settings.db, alone=False), ThreadPoolExecutor(max_workers=1) as pool:
            posted = pool.submit(
                lambda: [client.post(url, data=data).status_code for _ in range(4)]
            )
            refused = 0
            while not posted.done():
                try:
                    writer.execute("BEGIN IMMEDIATE")  # the send's next write, not kept waiting
                    writer.execute("ROLLBACK")
                except sqlite3.OperationalError:
                    refused += 1
                time.sleep(0.01)
            answers = posted.result()
        writer.close()
    assert answers == [409] * 4 and refused == 0
    assert web.store.subscriber(reader.id) is not None


def test_erase_when_the_send_lock_cannot_be_opened_is_503_not_500(
    web: Running, reader: Subscriber
) -> None:
    # A send run by another user made the lock file theirs; here: a folder in its place.
    lock = lock_path(web.settings.db)
    lock.unlink(missing_ok=True)
    lock.mkdir()
    try:
        with web.client() as client:
            url, csrf = open_page(web, client, reader)
            data = {"csrf": csrf, "action": "erase", "confirm": "erase"}
            answer = client.post(url, data=data)
    finally:
        lock.rmdir()
    assert answer.status_code == 503 and "Traceback" not in answer.text
    assert web.store.subscriber(reader.id) is not None


def test_an_erase_waiting_for_the_database_keeps_no_send_from_starting(
    web: Running, reader: Subscriber
) -> None:
    # Another writer holds SQLite's write lock for a while (a send recording outcomes, say).
    # The erase waits for it without holding the send lock: a send starting meanwhile starts.
    with web.client() as client:
        url, csrf = open_page(web, client, reader)
        writer = sqlite3.connect(web.settings.db, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(max_workers=1) as pool:
            posted = pool.submit(
                client.post, url, data={"csrf": csrf, "action": "erase", "confirm": "erase"}
            )
            time.sleep(0.5)
            with send_lock(web.settings.db, alone=False, patience=0.0):
                started = True  # a send's lock, taken while the erase waits
            writer.execute("ROLLBACK")
            writer.close()
            assert started and posted.result(timeout=30).status_code == 200
    assert web.store.subscriber(reader.id) is None


def test_readers_erasing_at_once_are_never_told_a_send_is_running(web: Running) -> None:
    readers = [web.store.add_subscriber(f"many{next(_emails)}@example.com") for _ in range(8)]

    def erase(subscriber: Subscriber) -> int:
        with web.client() as client:
            url, csrf = open_page(web, client, subscriber)
            data = {"csrf": csrf, "action": "erase", "confirm": "erase"}
            return client.post(url, data=data).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(erase, readers)) == [200] * 8
    assert all(web.store.subscriber(r.id) is None for r in readers)
