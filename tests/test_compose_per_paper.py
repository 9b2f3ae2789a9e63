"""Emails assembled from per-paper pieces read exactly like whole renders, for any profile.

Every subscriber's email is the day's frame with their cards spliced in (mail/day.py). These
tests compare it, message by message, with the straightforward build (Jinja + MJML +
`EmailMessage` per recipient, `compose_naive`) for hundreds of all-different profiles, empty
selections, the 20-card cap and the HTML size cap, and check that the cards and the private
feed's entries are exactly the papers `newsletter match --json` selects. A template that does not split falls back to whole
renders and still reads the same.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import random
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.audience.match import PreparedDigest, select_papers
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.digest.parse import parse_digest
from newsletter.mail.compose import Composer, compose_naive
from newsletter.mail.render import HTML_BUDGET
from newsletter.model import Digest, Filters, Paper, Section, Subscriber
from newsletter.publish.private import load_private_feeds
from newsletter.store import Store

from .conftest import DIGESTS, PINNED_NOW, TEST_KEY

SETTINGS = Settings().replace(
    base_url="https://papers.example.com",
    from_address="Daily Papers <digest@papers.example.com>",
    envelope_from="bounces@papers.example.com",
    secret_key=TEST_KEY,
    send_empty=True,
)
NAMES = ("", "김민지", "Alex Chen", "O'Neil & <Sons>", "이서연")
ARXIV = re.compile(r"https://arxiv\.org/abs/([0-9.]+)")


def clock() -> dt.datetime:
    return PINNED_NOW


def reading(data: bytes) -> dict[str, Any]:
    """What a mail client sees: decoded headers and bodies."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    headers = {k: str(v) for k, v in message.items() if k != "Content-Type"}
    bodies = [part.get_content() for part in message.iter_parts()]
    return {"headers": headers, "bodies": bodies, "defects": list(message.defects)}


def words(digests: list[Digest]) -> list[str]:
    """Words of the digests' own text, English and Korean, as readers would type them."""
    found: set[str] = set()
    for digest in digests:
        for paper in digest.papers:
            for text in (paper.display_title, *(s.text for s in paper.sections)):
                found.update(re.findall(r"[A-Za-z][A-Za-z-]{2,}|[\uac00-\ud7a3]{2,}", text))
    return sorted(found)


def random_profiles(vocab: list[str], count: int, *, seed: int) -> list[Filters]:
    """`count` different filter sets: 1-4 keywords, some exclusions, votes and caps."""
    rng = random.Random(seed)
    seen: set[Filters] = set()
    while len(seen) < count:
        keywords = tuple(dict.fromkeys(rng.sample(vocab, rng.randint(1, 4))))
        seen.add(
            Filters(
                keywords=keywords if rng.random() > 0.05 else (),
                exclude=(rng.choice(vocab),) if rng.random() < 0.2 else (),
                min_votes=rng.choice((0, 0, 0, 3, 10, 30)),
                max_papers=rng.choice((None, None, 2, 5, 25)),
            )
        )
    return sorted(seen, key=repr)


@pytest.fixture(scope="module")
def digests() -> dict[str, Digest]:
    return {
        path.stem: parse_digest(path.read_text(encoding="utf-8"), source=path.name).digest
        for path in DIGESTS
    }


def subscribers(profiles: list[Filters]) -> Iterator[Subscriber]:
    for i, filters in enumerate(profiles, start=1):
        yield Subscriber(
            id=i, email=f"reader{i}@example.com", name=NAMES[i % len(NAMES)], filters=filters
        )


def assert_same(composer: Composer, digest: Digest, subscriber: Subscriber) -> bytes | None:
    fast = composer.compose(subscriber)
    slow = compose_naive(settings=SETTINGS, digest=digest, subscriber=subscriber, clock=clock)
    assert (fast is None) == (slow is None)
    if fast is None or slow is None:
        return None
    assert reading(fast.data) == reading(slow.data), subscriber.filters
    assert fast.message_id == slow.message_id
    return fast.data


def test_hundreds_of_different_profiles_read_like_whole_renders(
    digests: dict[str, Digest],
) -> None:
    vocab = words(list(digests.values()))
    empty = 0
    for day, digest in digests.items():
        composer = Composer(settings=SETTINGS, digest=digest, clock=clock)
        assert composer.per_paper  # the packaged templates split into frame and cards
        for subscriber in subscribers(random_profiles(vocab, 120, seed=len(day))):
            data = assert_same(composer, digest, subscriber)
            assert data is not None  # send_empty: an empty selection still gets its email
            empty += "오늘은 조건에 맞는 논문이 없습니다" in reading(data)["bodies"][0]
    assert empty > 10  # empty selections were among them


def test_the_twenty_card_cap_and_the_more_link(digests: dict[str, Digest]) -> None:
    digest = digests["2024-12-13"]  # 27 papers
    composer = Composer(settings=SETTINGS, digest=digest, clock=clock)
    reader = Subscriber(id=3, email="all@example.com", name="김민지")
    data = assert_same(composer, digest, reader)
    assert data is not None
    text = reading(data)["bodies"][0]
    assert "\n20. " in text and "\n21. " not in text
    assert "오늘의 아카이브에서 논문 7편 더 보기" in text


def long_digest(summary: str) -> Digest:
    """22 papers whose one section is `summary`: long ones pass the HTML budget before 20."""
    papers = tuple(
        Paper(
            arxiv_id=f"2501.{10000 + i}",
            title=f"Long paper {i}",
            display_title=f"Long paper {i}",
            url=f"https://arxiv.org/abs/2501.{10000 + i}",
            image=None,
            is_thumbnail=False,
            votes=100 - i,
            authors=("Kim Minji",),
            sections=(Section("What's New", summary),),
        )
        for i in range(22)
    )
    return Digest(date=dt.date(2025, 1, 6), papers=papers, source="long.md")


def test_the_size_cap_cuts_cards_before_twenty(digests: dict[str, Digest]) -> None:
    # Long summaries: twenty cards would pass the HTML budget, so fewer are shown.
    digest = long_digest("긴 요약입니다. " * 400)
    composer = Composer(settings=SETTINGS, digest=digest, clock=clock)
    assert composer.per_paper
    reader = Subscriber(id=9, email="long@example.com", name="Alex Chen")
    data = assert_same(composer, digest, reader)
    assert data is not None
    html = reading(data)["bodies"][1]
    shown = len(set(ARXIV.findall(html)))
    assert 0 < shown < 20
    assert len(html.replace("\r\n", "\n").encode()) <= HTML_BUDGET
    rendered = composer.rendered_for(reader)
    assert rendered is not None and rendered.shown == shown and rendered.total == 22


def test_the_size_cap_counts_the_keyword_chips(digests: dict[str, Digest]) -> None:
    # Near the budget a card's chips decide whether it fits: for summaries of many lengths,
    # a reader with long keywords (a chip on every card) gets what the whole render shows.
    keyword = "sparse mixture of experts routing with load balancing"
    shown = set()
    for repeat in range(300, 420, 6):
        digest = long_digest(f"{keyword}. " + "긴 요약입니다. " * repeat)
        composer = Composer(settings=SETTINGS, digest=digest, clock=clock)
        reader = Subscriber(
            id=9,
            email="long@example.com",
            filters=Filters(keywords=(keyword,)),
        )
        data = assert_same(composer, digest, reader)
        assert data is not None
        shown.add(len(set(ARXIV.findall(reading(data)["bodies"][1]))))
    assert len(shown) > 3  # the cut moved with the length


def test_a_template_that_numbers_its_own_cards_is_rendered_whole(
    digests: dict[str, Digest], tmp_path: Path
) -> None:
    packaged = Path(__file__).parent.parent / "templates" / "email"
    mine = tmp_path / "email"
    mine.mkdir()
    (mine / "digest.txt").write_text((packaged / "digest.txt").read_text(encoding="utf-8"))
    mjml = (packaged / "digest.mjml").read_text(encoding="utf-8")
    # loop.index instead of card.number: the card's text depends on its place, so no split.
    assert "{{ card.number }}." in mjml
    (mine / "digest.mjml").write_text(mjml.replace("{{ card.number }}.", "{{ loop.index }}."))
    settings = SETTINGS.replace(template_dir=tmp_path)
    digest = digests["2024-10-16"]
    composer = Composer(settings=settings, digest=digest, clock=clock)
    assert not composer.per_paper
    for subscriber in subscribers([Filters(), Filters(keywords=("LLM",))]):
        fast = composer.compose(subscriber)
        slow = compose_naive(settings=settings, digest=digest, subscriber=subscriber, clock=clock)
        assert fast is not None and slow is not None
        assert reading(fast.data) == reading(slow.data)


def test_the_cards_are_the_papers_match_selects(
    digests: dict[str, Digest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "match.db"
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    digest = digests["2024-12-13"]
    with Store(db) as store:
        store.save_digests([(digest, "2024-12-13.md")])
    composer = Composer(settings=SETTINGS, digest=digest, clock=clock)
    prepared = PreparedDigest(digest)
    runner = CliRunner()
    with Store(db) as store:
        feeds = load_private_feeds(
            store, settings=SETTINGS.replace(private_feed_bytes=50_000_000)
        )  # no byte cut: every selected paper
    assert feeds is not None
    profiles = random_profiles(words([digest]), 200, seed=7)
    for n, subscriber in enumerate(subscribers(profiles)):
        message = composer.compose(subscriber)
        assert message is not None
        html = reading(message.data)["bodies"][1]
        in_email = list(dict.fromkeys(ARXIV.findall(html)))
        selected = [p.paper.arxiv_id for p in select_papers(prepared, subscriber.filters)]
        rendered = composer.rendered_for(subscriber)
        assert rendered is not None and rendered.total == len(selected)
        # The first `shown` of them: 20 at most, fewer when the HTML budget cuts.
        assert rendered.shown <= 20 and (
            rendered.shown == 20
            or rendered.shown == len(selected)
            or len(html.encode()) > HTML_BUDGET - 8_000
        )
        assert in_email == selected[: rendered.shown], subscriber.filters
        feed = feeds.feed(subscriber.filters, feed_url="https://papers.example.com/feeds/x.xml")
        in_feed = re.findall(
            r"<guid isPermaLink=\"true\">https://arxiv\.org/abs/([0-9.]+)", feed.body.decode()
        )
        assert in_feed == selected and feed.left_out == 0, subscriber.filters
        if n % 5 == 0:  # the CLI too, for a fifth of them (each run opens the store)
            f = subscriber.filters
            args = ["match", "--date", "2024-12-13", "--json", "--db", str(db)]
            args += ["--keywords", ";".join(f.keywords), "--exclude", ";".join(f.exclude)]
            args += ["--min-votes", str(f.min_votes)]
            if f.max_papers is not None:
                args += ["--max-papers", str(f.max_papers)]
            result = runner.invoke(main, args, env={"NEWSLETTER_SECRET_KEY": TEST_KEY})
            assert result.exit_code == 0, result.output
            assert [p["arxiv_id"] for p in json.loads(result.output)] == selected


def test_the_date_header_follows_the_clock_to_the_second(digests: dict[str, Digest]) -> None:
    # The Date is formatted once per second of the clock (a send reads it per message).
    start = dt.datetime(2024, 12, 13, 9, 0, 59, 100_000, tzinfo=dt.UTC)
    ticks = iter(
        [start, start.replace(microsecond=900_000), start + dt.timedelta(seconds=1), start]
    )
    composer = Composer(settings=SETTINGS, digest=digests["2024-12-13"], clock=lambda: next(ticks))
    reader = Subscriber(id=1, email="reader1@example.com")
    dates = []
    for _ in range(4):
        message = composer.compose(reader)
        assert message is not None
        dates.append(reading(message.data)["headers"]["Date"])
    assert dates == [
        "Fri, 13 Dec 2024 09:00:59 +0000",
        "Fri, 13 Dec 2024 09:00:59 +0000",
        "Fri, 13 Dec 2024 09:01:00 +0000",
        "Fri, 13 Dec 2024 09:00:59 +0000",
    ]
