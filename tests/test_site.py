"""The web archive and `newsletter build`: valid HTML5, autodiscovery, escaping in Chromium, CLI."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import html5lib
import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.store import Store
from newsletter.tokens import legacy_feed_token

from .conftest import DIGESTS, OLD_DEMO_KEY, TEST_KEY
from .pretty_html import assert_matches_golden
from .sites import (
    BASE,
    GOLDEN,
    HOSTILE,
    build,
    digest_text,
    head_of,
    make_settings,
    save,
    site_fixture,  # noqa: F401 (a fixture)
    small_site_fixture,  # noqa: F401 (a fixture)
    strict_parse,
)

PUBLIC_FEEDS = {
    "rss.xml": "application/rss+xml",
    "atom.xml": "application/atom+xml",
    "feed.json": "application/feed+json",
    "digests.xml": "application/rss+xml",
    "digests.atom": "application/atom+xml",
    "weekly.xml": "application/rss+xml",
    "weekly.atom": "application/atom+xml",
    "weekly.json": "application/feed+json",
}


def test_strict_parser_rejects_broken_html() -> None:
    """The validity check below can fail: a stray end tag is a parse error."""
    with pytest.raises(html5lib.html5parser.ParseError):
        strict_parse("<!DOCTYPE html><html lang=ko><title>x</title><p>a</b>")


def test_pages_are_valid_html5_in_korean_with_every_feed_discoverable(site: Path) -> None:
    # search.html is the one page with scripts (tests/test_search.py).
    pages = sorted(p for p in site.glob("*.html") if p.name != "search.html")
    assert [p.name for p in pages] == [
        "2024-06-28.html",
        "2024-10-16.html",
        "2024-12-13.html",
        "feeds.html",
        "index.html",
    ]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        strict_parse(text)
        head = head_of(page)
        assert head.html.get("lang") == "ko"
        assert {"charset": "utf-8"} in head.metas
        assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in head.metas
        alternates = {
            link["href"]: link["type"] for link in head.links if link.get("rel") == "alternate"
        }
        topics = {k: v for k, v in alternates.items() if k.startswith("topics/")}
        assert {k: v for k, v in alternates.items() if k not in topics} == PUBLIC_FEEDS
        assert len(topics) == 4 and "topics/reasoning.xml" in topics
        for href in alternates:
            assert (site / href).is_file(), href
        assert not any("feeds/" in href for href in alternates)  # private feeds stay private
        assert "fonts.googleapis" not in text and "<script" not in text
        assert re.search(
            r'font-family:[^;]*"Apple SD Gothic Neo"[^;]*"Noto Sans KR"[^;]*"Malgun Gothic"[^;]*sans-serif',
            text,
        )
        for href in head.hrefs:  # every local link resolves
            if not href.startswith(("http://", "https://")):
                assert (site / href.split("#")[0]).is_file(), href


def test_day_page_lists_every_paper_by_votes_with_neighbours(
    site: Path, loaded_store: Store
) -> None:
    import datetime as dt

    digest = loaded_store.digest(dt.date(2024, 10, 16))
    assert digest is not None
    page = site / "2024-10-16.html"
    head = head_of(page)
    anchors = [i.removeprefix("paper-") for i in head.ids if i.startswith("paper-")]
    assert sorted(anchors) == sorted(p.arxiv_id for p in digest.papers)
    votes = {p.arxiv_id: p.votes for p in digest.papers}
    ranked = [votes[a] for a in anchors]
    known = [v for v in ranked if v is not None]
    assert known == sorted(known, reverse=True) and ranked[-1] is None  # "Vote: -" last
    text = page.read_text(encoding="utf-8")
    assert (
        'href="2024-06-28.html" rel="prev"' in text and 'href="2024-12-13.html" rel="next"' in text
    )
    assert "LLM×MapReduce" in text and "추천 -" in text
    assert f'<link rel="canonical" href="{BASE}/2024-10-16.html">' in text
    assert "/avatars/" not in text  # uploader avatars are not shown as thumbnails


def test_index_lists_days_newest_first_with_counts_and_top_papers(site: Path) -> None:
    text = (site / "index.html").read_text(encoding="utf-8")
    days = re.findall(r'<h2><a href="(\d{4}-\d\d-\d\d)\.html">.*?논문 (\d+)편', text)
    assert days == [("2024-12-13", "27"), ("2024-10-16", "18"), ("2024-06-28", "9")]
    assert 'href="2024-12-13.html#paper-2412.09596">InternLM-XComposer2.5-OmniLive' in text


@pytest.mark.parametrize("name", ["index.html", "2024-06-28.html"])
def test_page_matches_golden(small_site: Path, name: str, request: pytest.FixtureRequest) -> None:
    update = bool(request.config.getoption("--update-golden"))
    page = (small_site / name).read_bytes()
    assert_matches_golden(page, GOLDEN / f"feeds-page-{name}", update=update)


@pytest.fixture
def hostile_site(store: Store, tmp_path: Path) -> Path:
    save(
        store,
        digest_text("2024-12-13", [{"id": "2412.00001", "title": "Calm paper", "votes": 1}]),
        digest_text(
            "2024-12-14",
            [
                {
                    "id": "2412.99999",
                    "title": HOSTILE,
                    "votes": 99,
                    "authors": "Eve <img src=x onerror=alert(2)>, Mallory",
                    "new": "<b>bold</b> & </p><script>window.__pwned=1</script>",
                }
            ],
        ),
    )
    out = tmp_path / "site"
    build(store, out, make_settings(tmp_path, site_title='Papers <script>alert("t")</script>'))
    return out


def test_hostile_text_is_escaped_in_pages(hostile_site: Path) -> None:
    for name in ("index.html", "2024-12-14.html", "2024-12-13.html"):
        text = (hostile_site / name).read_text(encoding="utf-8")
        strict_parse(text)
        assert "<script" not in text and "<img src=x" not in text, name
        assert "&lt;script&gt;" in text


@pytest.mark.browser
def test_no_script_runs_in_chromium(hostile_site: Path, browser: Any) -> None:
    page = browser.new_page()
    dialogs: list[str] = []

    def refuse(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    try:
        for name in ("2024-12-14.html", "index.html"):
            page.goto((hostile_site / name).as_uri())
            assert page.evaluate("document.scripts.length") == 0
            assert page.evaluate("window.__pwned === undefined")
            assert page.locator("img[src=x]").count() == 0
            assert HOSTILE in page.locator("main").inner_text()
            if name != "index.html":
                assert page.locator("article h2 a").first.inner_text() == HOSTILE
        assert page.title().startswith('Papers <script>alert("t")</script>')
        assert dialogs == []
    finally:
        page.close()


@pytest.mark.browser
def test_pages_fit_a_phone_screen_with_a_korean_font(site: Path, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 360, "height": 740})
    try:
        for name in ("index.html", "2024-12-13.html"):
            page.goto((site / name).as_uri())
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, name
        family = page.evaluate("getComputedStyle(document.body).fontFamily")
        assert "Noto Sans CJK KR" in family
        assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK KR\"', '한국어')")
    finally:
        page.close()


def test_cli_build_prints_changes_and_a_summary(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert runner.invoke(main, ["ingest", *map(str, DIGESTS)], env=cli_env).exit_code == 0
    args = ["build", "--out", str(tmp_path / "out"), "--base-url", BASE]
    first = runner.invoke(main, args, env=cli_env)
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert "written rss.xml" in lines and "written 2024-06-28.html" in lines
    assert "written rss.xml.gz" in lines  # a gzip sibling for `serve`, over 32 KB
    assert lines[-1] == f"built {tmp_path / 'out'}: 82 written, 0 unchanged, 0 removed"
    second = runner.invoke(main, args, env=cli_env)
    assert second.stdout.splitlines() == [
        f"built {tmp_path / 'out'}: 0 written, 82 unchanged, 0 removed"
    ]
    assert "<atom:link" in (tmp_path / "out" / "rss.xml").read_text(encoding="utf-8")
    assert f'href="{BASE}/rss.xml"' in (tmp_path / "out" / "rss.xml").read_text(encoding="utf-8")
    days = runner.invoke(main, [*args, "--days", "1"], env=cli_env)
    assert "written rss.xml" in days.stdout and "written 2024-06-28.html" not in days.stdout


def one_day_and_a_reader(runner: CliRunner, cli_env: dict[str, str]) -> int:
    """A CLI database with one digest and one subscriber; the subscriber's id."""
    runner.invoke(main, ["ingest", str(DIGESTS[0])], env=cli_env)
    with Store(cli_env["NEWSLETTER_DB"]) as store:
        return store.add_subscriber("reader@example.com").id


def test_cli_build_removes_old_private_feeds_without_naming_them(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    reader = one_day_and_a_reader(runner, cli_env)
    old = tmp_path / "out" / "feeds" / f"{legacy_feed_token(reader, key=TEST_KEY.encode())}.xml"
    old.parent.mkdir(parents=True)
    old.write_text("<rss/>", encoding="utf-8")
    result = runner.invoke(main, ["build", "--out", str(tmp_path / "out")], env=cli_env)
    assert result.exit_code == 0, result.output
    assert (
        "private feeds: 1 old files removed (feeds/<token>.xml); "
        "`newsletter serve` answers these URLs now"
    ) in result.stdout
    assert not re.search(r"feeds/[0-9a-f]{32}", result.output)
    assert not old.exists()


def test_cli_build_needs_no_key_and_writes_no_private_feed(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    one_day_and_a_reader(runner, cli_env)
    for env in (
        {k: v for k, v in cli_env.items() if k != "NEWSLETTER_SECRET_KEY"},
        {**cli_env, "NEWSLETTER_SECRET_KEY": OLD_DEMO_KEY},  # unused, so not refused either
    ):
        result = runner.invoke(main, ["build", "--out", str(tmp_path / "out")], env=env)
        assert result.exit_code == 0, result.output
        assert result.stderr == "" and "private" not in result.output
        assert not (tmp_path / "out" / "feeds").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--base-url", "ftp://example.org"],
            "error: setting base_url: bad value 'ftp://example.org' from option --base-url: "
            "must be an absolute http(s) URL",
        ),
        (
            ["--base-url", "papers.example.org"],
            "error: setting base_url: bad value 'papers.example.org' from option --base-url: "
            "must be an absolute http(s) URL",
        ),
    ],
)
def test_cli_build_rejects_a_bad_base_url(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(main, ["build", "--out", str(tmp_path / "out"), *args], env=cli_env)
    assert result.exit_code == 1
    assert (
        result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1
    )
    assert "Traceback" not in result.output


def test_cli_build_on_an_empty_store_says_so(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    Store(Path(cli_env["NEWSLETTER_DB"])).close()  # a database without digests
    result = runner.invoke(main, ["build", "--out", str(tmp_path / "out")], env=cli_env)
    assert result.exit_code == 1
    assert "no digests stored yet (run: newsletter ingest PATH)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_build_removes_stale_pages_and_feeds_but_nothing_else(
    loaded_store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    (out / "topics").mkdir(parents=True)
    for name in ("1999-01-01.html", "topics/old.xml", "CNAME", "notes.html"):
        (out / name).write_text("x", encoding="utf-8")
    report = build(loaded_store, out, make_settings(tmp_path))
    assert report.removed == ("1999-01-01.html", "topics/old.xml")
    assert (out / "CNAME").exists() and (out / "notes.html").exists()


def test_an_edited_template_shows_in_the_next_build_of_the_same_process(
    loaded_store: Store, tmp_path: Path
) -> None:
    """serve --watch rebuilds in one long-lived process; cached feed content must not go stale.

    Nor may the incremental steps keep what the old template rendered: the monthly archives.
    """
    mine = tmp_path / "templates" / "site"
    mine.mkdir(parents=True)
    card = mine / "feed_paper.html"
    card.write_text("<p>first {{ paper.arxiv_id }}</p>", encoding="utf-8")
    # Ten entries a feed: the older papers go to archive/YYYY-MM documents.
    settings = make_settings(tmp_path, template_dir=tmp_path / "templates", feed_max_entries=10)
    site = tmp_path / "site"
    build(loaded_store, site, settings)
    assert "&lt;p&gt;first 2412.09596" in (site / "rss.xml").read_text(encoding="utf-8")
    assert "&lt;p&gt;first 2406.18629" in (site / "archive/2024-06.xml").read_text(encoding="utf-8")
    card.write_text("<p>second {{ paper.arxiv_id }}</p>", encoding="utf-8")
    os.utime(card, (card.stat().st_atime, card.stat().st_mtime + 5))
    report = build(loaded_store, site, settings)
    assert {"rss.xml", "archive/2024-06.xml", "archive/2024-06.atom"} <= set(report.written)
    for name in ("rss.xml", "archive/2024-06.xml"):
        text = (site / name).read_text(encoding="utf-8")
        assert "&lt;p&gt;second " in text and "first" not in text, name
