"""Paper pages, sitemap.xml and robots.txt: content, head tags, golden page, incremental writes."""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from newsletter.audience.match import by_votes
from newsletter.digest.parse import parse_digest
from newsletter.store import Store

from .conftest import DIGESTS
from .pretty_html import assert_matches_golden
from .sites import (
    BASE,
    FIXTURE_PAPERS,
    GOLDEN,
    MARKUP_TITLE,
    LoadCountingStore,
    build,
    digest_text,
    fixture_ids,
    head_of,
    make_settings,
    save,
    site_fixture,  # noqa: F401 (a fixture)
    small_site_fixture,  # noqa: F401 (a fixture)
    strict_parse,
)


def metas(page: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for meta in head_of(page).metas:
        name = meta.get("name") or meta.get("property")
        if name:
            found.setdefault(name, []).append(meta.get("content", ""))
    return found


def test_every_stored_paper_has_a_valid_page_linked_from_its_days(site: Path) -> None:
    ids = fixture_ids()
    assert len(ids) == FIXTURE_PAPERS
    assert sorted(p.stem for p in (site / "papers").glob("*.html")) == ids
    for page in (site / "papers").glob("*.html"):
        strict_parse(page.read_text(encoding="utf-8"))
        for href in head_of(page).hrefs:  # every local link resolves from the subfolder
            if not href.startswith(("http://", "https://")):
                assert (page.parent / href.split("#")[0]).is_file(), (page.name, href)
    day = (site / "2024-06-28.html").read_text(encoding="utf-8")
    assert 'href="papers/2406.18629.html"' in day
    rss = (site / "rss.xml").read_text(encoding="utf-8")
    assert f"{BASE}/papers/2406.18629.html" in rss  # the entry content links the paper page


def test_paper_page_shows_the_paper_its_days_links_and_citation_data(
    site: Path, loaded_store: Store
) -> None:
    page = site / "papers" / "2406.18629.html"
    text = page.read_text(encoding="utf-8")
    digest = loaded_store.digest(parse_digest(DIGESTS[0].read_text(encoding="utf-8")).digest.date)
    assert digest is not None
    paper = next(p for p in digest.papers if p.arxiv_id == "2406.18629")
    assert '<h1 data-pagefind-meta="title">Step-DPO: Step-wise Preference' in text
    for section in paper.sections:
        assert section.text.replace("'", "&#39;")[:60] in text
    assert 'href="https://arxiv.org/abs/2406.18629"' in text
    assert 'href="https://arxiv.org/pdf/2406.18629"' in text
    assert 'href="https://huggingface.co/papers/2406.18629"' in text
    assert 'href="../2024-06-28.html#paper-2406.18629"' in text
    m = metas(page)
    assert m["og:title"] == m["citation_title"] == [paper.display_title]
    assert m["og:url"] == [f"{BASE}/papers/2406.18629.html"]
    assert m["og:image"] == m["twitter:image"] == [paper.image]
    assert m["twitter:card"] == ["summary_large_image"]
    assert m["citation_author"] == list(paper.authors)
    assert m["citation_date"] == ["2024/06"]  # its arXiv month, which its id holds
    assert m["citation_arxiv_id"] == ["2406.18629"]
    ld = json.loads(
        re.findall(r'<script type="application/ld\+json">(.*?)</script>', text, re.S)[0]
    )
    assert ld["@type"] == "ScholarlyArticle" and ld["headline"] == paper.display_title
    assert [a["name"] for a in ld["author"]] == list(paper.authors)
    assert ld["datePublished"] == "2024-06"
    bib = re.findall(r'<pre class="bibtex"[^>]*>(.*?)</pre>', text, re.S)[0]
    assert bib.startswith("@misc{yang2024stepdpo,\n")
    assert "  author = {Senqiao Yang and Yukang Chen and" in bib
    assert "  eprint = {2406.18629},\n" in bib and "  year = {2024},\n" in bib


def test_a_paper_on_several_days_lists_each_day_with_its_votes(
    store: Store, tmp_path: Path
) -> None:
    save(
        store,
        digest_text("2024-12-01", [{"id": "2412.00001", "title": "Seen twice", "votes": 3}]),
        digest_text("2024-12-02", [{"id": "2412.00001", "title": "Seen twice", "votes": 8}]),
    )
    out = tmp_path / "site"
    build(store, out, make_settings(tmp_path))
    text = (out / "papers/2412.00001.html").read_text(encoding="utf-8")
    days = re.findall(r'<time datetime="([\d-]+)">[\d-]+</time></a> · 추천 (\d+)', text)
    assert days == [("2024-12-02", "8"), ("2024-12-01", "3")]
    assert '추천 <span class="votes">8</span>' in text
    assert metas(out / "papers/2412.00001.html")["citation_date"] == ["2024/12"]


@pytest.mark.parametrize(
    ("arxiv_id", "page", "month"),
    [
        ("2406.15786", "2406.15786", "2024/06"),  # submitted in June, listed in October
        ("cs/9912001", "cs_9912001", "1999/12"),  # old style: archive/YYMMNNN
    ],
)
def test_a_paper_is_dated_by_its_arxiv_month_not_the_day_it_was_listed(
    store: Store, tmp_path: Path, arxiv_id: str, page: str, month: str
) -> None:
    save(store, digest_text("2024-10-16", [{"id": arxiv_id, "title": "Listed late"}]))
    out = tmp_path / "site"
    build(store, out, make_settings(tmp_path))
    path = out / "papers" / f"{page}.html"
    assert metas(path)["citation_date"] == [month]
    text = path.read_text(encoding="utf-8")
    ld = json.loads(
        re.findall(r'<script type="application/ld\+json">(.*?)</script>', text, re.S)[0]
    )
    assert ld["datePublished"] == month.replace("/", "-")
    assert f"  year = {{{month[:4]}}},\n" in text


def test_markup_in_a_title_stays_text_everywhere_on_its_page(store: Store, tmp_path: Path) -> None:
    save(store, digest_text("2024-12-14", [{"id": "2412.99998", "title": MARKUP_TITLE}]))
    out = tmp_path / "site"
    build(store, out, make_settings(tmp_path))
    text = (out / "papers/2412.99998.html").read_text(encoding="utf-8")
    assert "<script>x" not in text and "<think>" not in text
    assert metas(out / "papers/2412.99998.html")["og:title"] == [MARKUP_TITLE]
    ld = re.findall(r'<script type="application/ld\+json">(.*?)</script>', text, re.S)[0]
    assert "</script" not in ld and json.loads(ld)["name"] == MARKUP_TITLE
    assert "title = {Retrieval &lt;script&gt;x&lt;/script&gt; \\&amp; &lt;think&gt;}" in text


def test_sitemap_lists_every_public_page_and_robots_keeps_private_feeds_out(
    site: Path, loaded_store: Store
) -> None:
    ns = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
    root = ET.parse(site / "sitemap.xml").getroot()
    locs = {u.findtext(f"{ns}loc"): u.findtext(f"{ns}lastmod") for u in root.findall(f"{ns}url")}
    pages = {
        f"{BASE}/{p.relative_to(site).as_posix()}"
        for p in site.rglob("*.html")
        if p.name not in ("search.html", "feeds.html")  # not content to list
    }
    pages = {p.removesuffix("index.html") for p in pages}
    assert set(locs) == pages
    assert locs[f"{BASE}/papers/2406.18629.html"] == "2024-06-28"
    robots = (site / "robots.txt").read_text(encoding="utf-8")
    assert robots == (
        "User-agent: *\nDisallow: /daily/feeds/\nSitemap: https://papers.example.org/daily/sitemap.xml\n"
    )


def test_only_changed_paper_pages_are_rendered_again(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "site"
    settings = make_settings(tmp_path, feed_days=1)
    save(store, digest_text("2024-12-01", [{"id": "2412.00001", "title": "First"}]))
    save(store, digest_text("2024-12-02", [{"id": "2412.00002", "title": "Second"}]))
    build(store, out, settings)
    save(store, digest_text("2024-12-02", [{"id": "2412.00002", "title": "Second, edited"}]))
    with LoadCountingStore(store.path) as counting:
        counting.loaded = []
        report = build(counting, out, settings)
        assert "papers/2412.00002.html" in report.written
        assert "papers/2412.00001.html" in report.unchanged
        assert "2024-12-01" not in counting.loaded  # the first paper's page was not rendered
        manifest = json.loads((out / ".newsletter-build.json").read_text(encoding="utf-8"))
        assert set(manifest["papers"]["records"]) == {"2412.00001", "2412.00002"}
        (out / "papers/2412.00001.html").write_text("edited by hand", encoding="utf-8")
        assert build(counting, out, settings).written == ("papers/2412.00001.html",)


def test_paper_page_matches_golden(small_site: Path, request: pytest.FixtureRequest) -> None:
    update = bool(request.config.getoption("--update-golden"))
    page = (small_site / "papers/2406.18629.html").read_bytes()
    assert_matches_golden(page, GOLDEN / "paper-2406.18629.html", update=update)


def test_the_front_and_day_pages_say_what_they_are_when_shared(
    site: Path, loaded_store: Store
) -> None:
    front = metas(site / "index.html")
    assert front["og:url"] == [f"{BASE}/"]
    assert front["og:title"] == ["Daily Papers"] and front["og:type"] == ["website"]
    assert front["description"] == front["og:description"]
    assert front["description"][0].startswith("Daily Papers: ")
    day = metas(site / "2024-12-13.html")
    digest = loaded_store.digest(dt.date(2024, 12, 13))
    assert digest is not None
    top = by_votes(digest.papers)[0].display_title
    assert day["og:url"] == [f"{BASE}/2024-12-13.html"]
    assert day["og:title"] == ["Daily Papers — 2024-12-13"]
    (text,) = day["description"]
    assert text.startswith(f"2024-12-13 논문 {len(digest.papers)}편: {top} · ")
    assert len(text) <= 200 and day["og:description"] == [text]
    # A paper page keeps its own, once each.
    paper = metas(site / "papers" / "2406.18629.html")
    assert len(paper["description"]) == len(paper["og:title"]) == 1
    assert paper["og:type"] == ["article"]
