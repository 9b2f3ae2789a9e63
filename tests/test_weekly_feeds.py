"""Weekly roll-up feeds: one entry per ISO week with its top papers, as readers see them."""

from __future__ import annotations

import datetime as dt
import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import feedparser
import pytest

from newsletter.audience.weeks import (
    last_full_week,
    week_monday,
    week_name,
    weekly_due,
    weeks_of,
)
from newsletter.digest.parse import parse_digest
from newsletter.store import Store

from .sites import BASE, GOLDEN, build, digest_text, make_settings, save

ATOM = "{http://www.w3.org/2005/Atom}"
WEEKLY = ("weekly.xml", "weekly.atom", "weekly.json")


def week_entry_id(week: str) -> str:
    """Written out here, not taken from the code: the id readers keep for a week."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"newsletter:daily-papers.localhost:week:{week}").urn


@pytest.fixture
def weekly_site(tmp_path: Path) -> Path:
    """Two ISO weeks: 2025-W09 (Mon 24 Feb and Wed 26 Feb, one paper on both days), 2025-W10."""
    with Store(tmp_path / "weekly.db") as store:
        save(
            store,
            digest_text(
                "2025-02-24",
                [
                    {"id": "2502.00001", "title": "Alpha Reasoning", "votes": 5},
                    {"id": "2502.00002", "title": "Beta Agents", "votes": 30},
                    {"id": "2502.00003", "title": "Gamma <b>Vision</b>", "votes": 12},
                ],
            ),
            digest_text(
                "2025-02-26",
                [
                    # Alpha again, with more votes: counted once, with its newest data.
                    {"id": "2502.00001", "title": "Alpha Reasoning v2", "votes": 40},
                    {"id": "2502.00004", "title": "Delta Speech", "votes": 1},
                ],
            ),
            digest_text(
                "2025-03-03",
                [
                    {"id": "2503.00005", "title": "Epsilon Robots", "votes": 7},
                    {"id": "2503.00006", "title": "Zeta Music", "votes": 9},
                ],
            ),
        )
        out = tmp_path / "site"
        build(store, out, make_settings(tmp_path, weekly_papers=2, topics={}))
    return out


def test_each_week_is_one_entry_with_its_top_papers_once(weekly_site: Path) -> None:
    for name in ("weekly.xml", "weekly.atom"):
        feed = feedparser.parse((weekly_site / name).read_bytes())
        assert not feed.bozo, feed.get("bozo_exception")
        assert [e.id for e in feed.entries] == [
            week_entry_id("2025-W10"),
            week_entry_id("2025-W09"),
        ]
        assert [e.title for e in feed.entries] == [
            "Daily Papers 2025-W10 주간 (2편)",
            "Daily Papers 2025-W09 주간 (2편)",
        ]
        body = (
            feed.entries[1].content[0].value
            if name.endswith("atom")
            else feed.entries[1].description
        )
        # Top two of W09 by votes: Alpha (40, its Wednesday data) then Beta (30); not Gamma.
        assert body.index("Alpha Reasoning v2") < body.index("Beta Agents")
        assert "Gamma" not in body and "Delta" not in body
        assert body.count("Alpha Reasoning") == 1
        assert f"{BASE}/2025-02-26.html#paper-2502.00001" in body
        assert f"{BASE}/2025-02-24.html#paper-2502.00002" in body


def test_dates_and_self_links_follow_the_feed_rules(weekly_site: Path) -> None:
    root = ET.parse(weekly_site / "weekly.atom").getroot()
    entries = root.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}published") for e in entries] == [
        "2025-03-03T00:00:00+00:00",
        "2025-02-24T00:00:00+00:00",
    ]
    assert [e.findtext(f"{ATOM}updated") for e in entries] == [
        "2025-03-03T00:00:00+00:00",
        "2025-02-26T00:00:00+00:00",
    ]
    assert root.findtext(f"{ATOM}updated") == "2025-03-03T00:00:00+00:00"
    links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
    assert links == {"self": f"{BASE}/weekly.atom", "alternate": f"{BASE}/"}
    assert root.findtext(f"{ATOM}id", "").startswith("urn:uuid:")
    rss = ET.parse(weekly_site / "weekly.xml").getroot()
    self_link = rss.find("channel/{http://www.w3.org/2005/Atom}link")
    assert self_link is not None and self_link.get("href") == f"{BASE}/weekly.xml"
    data = json.loads((weekly_site / "weekly.json").read_text(encoding="utf-8"))
    assert data["version"] == "https://jsonfeed.org/version/1.1"
    assert data["feed_url"] == f"{BASE}/weekly.json"
    assert [i["id"] for i in data["items"]] == [
        week_entry_id("2025-W10"),
        week_entry_id("2025-W09"),
    ]
    assert [i["date_modified"] for i in data["items"]] == [
        "2025-03-03T00:00:00Z",
        "2025-02-26T00:00:00Z",
    ]
    assert data["items"][1]["url"] == f"{BASE}/2025-02-26.html"
    # Markup in a title is escaped in the content, never live.
    assert "<b>Vision</b>" not in (weekly_site / "weekly.json").read_text(encoding="utf-8")


def test_the_archive_pages_link_the_weekly_feeds(weekly_site: Path) -> None:
    page = (weekly_site / "index.html").read_text(encoding="utf-8")
    for href, kind in (
        ("weekly.xml", "application/rss+xml"),
        ("weekly.atom", "application/atom+xml"),
        ("weekly.json", "application/feed+json"),
    ):
        assert f'<link rel="alternate" type="{kind}"' in page and f'href="{href}"' in page


@pytest.mark.parametrize("name", WEEKLY)
def test_weekly_feed_matches_golden(
    weekly_site: Path, name: str, request: pytest.FixtureRequest
) -> None:
    golden = GOLDEN / f"feeds-{name}"
    got = (weekly_site / name).read_bytes()
    if request.config.getoption("--update-golden"):
        golden.write_bytes(got)
    assert got == golden.read_bytes()


def test_week_names_and_the_week_a_weekly_edition_covers() -> None:
    assert week_name(dt.date(2025, 2, 24)) == "2025-W09"
    assert week_name(dt.date(2025, 3, 2)) == "2025-W09"  # Sunday still W09
    assert week_name(dt.date(2024, 12, 30)) == "2025-W01"  # ISO year differs from the calendar
    assert week_monday("2025-W09") == dt.date(2025, 2, 24)
    assert week_monday("2020-W53") == dt.date(2020, 12, 28)
    with pytest.raises(ValueError, match="no week 53"):
        week_monday("2025-W53")
    with pytest.raises(ValueError, match="not an ISO week"):
        week_monday("2025-09")
    assert last_full_week(dt.date(2025, 3, 3)) == "2025-W09"  # a Monday: the week before
    assert last_full_week(dt.date(2025, 3, 9)) == "2025-W09"  # a Sunday: still the week before
    assert weekly_due(dt.date(2025, 3, 3), weekly_day="monday") == "2025-W09"
    # From the weekly day to Sunday: a run missed or failed on the day catches up later.
    assert weekly_due(dt.date(2025, 3, 4), weekly_day="monday") == "2025-W09"
    assert weekly_due(dt.date(2025, 3, 9), weekly_day="monday") == "2025-W09"
    assert weekly_due(dt.date(2025, 3, 7), weekly_day="friday") == "2025-W09"
    assert weekly_due(dt.date(2025, 3, 6), weekly_day="friday") is None  # not yet


def test_a_week_digest_holds_each_paper_once_in_paper_order() -> None:
    a, b = "2502.00011", "2502.00012"
    first = [{"id": a, "title": "A", "votes": 5}, {"id": b, "title": "B", "votes": 3}]
    days = [
        parse_digest(digest_text("2025-02-24", first)).digest,
        parse_digest(digest_text("2025-02-25", [{"id": a, "title": "A2", "votes": 1}])).digest,
    ]
    (week,) = weeks_of(days)
    digest = week.digest()
    assert digest.date == dt.date(2025, 2, 24)
    # A's newest data (1 vote) puts it after B (3 votes).
    assert [(p.arxiv_id, p.votes) for p in digest.papers] == [(b, 3), (a, 1)]
