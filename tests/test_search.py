"""Search: Korean terms, the Pagefind index `newsletter build` writes, and real searches in Chromium."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.model import Paper
from newsletter.publish.korean import extra_terms, strip_particles
from tests.web_server import Running, service

from .conftest import TEST_KEY
from .sites import digest_text, save


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("모델을", "모델"),
        ("강화학습이", "강화학습"),
        ("모델들을", "모델"),
        ("학습에서는", "학습"),
        ("에이전트", "에이전트"),  # ends in no particle
        ("사이", "사이"),  # a stem keeps two syllables
    ],
)
def test_particles_are_stripped_from_korean_words(word: str, stem: str) -> None:
    assert strip_particles(word) == stem


def test_extra_terms_add_stems_english_terms_and_joined_pairs() -> None:
    terms = extra_terms("RAG를 활용한 강화 학습 기반의 diffusion 모델을")
    assert terms == ["RAG", "활용", "기반", "모델", "활용강화", "강화학습", "학습기반"]


def build(runner: CliRunner, env: dict[str, str], out: Path, base_url: str) -> list[str]:
    result = runner.invoke(main, ["build", "--out", str(out), "--base-url", base_url], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_build_indexes_paper_pages_only_when_something_changed(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    fixtures = Path(__file__).parent / "fixtures"
    days = sorted(fixtures.glob("20*.md"))
    assert runner.invoke(main, ["ingest", str(days[0])], env=cli_env).exit_code == 0
    out = tmp_path / "out"
    first = build(runner, cli_env, out, "https://papers.example.org")
    assert "search index: pagefind/ rebuilt" in first
    entry = out / "pagefind" / "pagefind-entry.json"
    assert '"page_count":9' in entry.read_text(encoding="utf-8")
    stamp = entry.stat().st_mtime_ns
    assert "search index: pagefind/ rebuilt" not in build(
        runner, cli_env, out, "https://papers.example.org"
    )
    assert entry.stat().st_mtime_ns == stamp
    assert runner.invoke(main, ["ingest", str(days[1])], env=cli_env).exit_code == 0
    assert "search index: pagefind/ rebuilt" in build(
        runner, cli_env, out, "https://papers.example.org"
    )
    assert '"page_count":27' in entry.read_text(encoding="utf-8")
    assert not list(out.glob(".pagefind*"))  # the swap leaves nothing behind


def _text(paper: Paper) -> str:
    sections = " ".join(f"{s.name} {s.text}" for s in paper.sections)
    return f"{paper.display_title} {' '.join(paper.authors)} {sections}"


# A paper without authors: its page has no authors meta for the results line to show.
NO_AUTHORS = digest_text(
    "2024-12-14",
    [
        {"id": "2412.77777", "title": "Quokka", "authors": ""},
        # Text that reads like markup or entities must show as written in a result's excerpt.
        {
            "id": "2412.77778",
            "title": "Wombat",
            "new": "Wombats: 5 < 6 kg & R&amp;D <b>x</b> &lt;i&gt;",
        },
    ],
)


@pytest.fixture
def searchable(tmp_path: Path) -> Iterator[Running]:
    """The real service over HTTP serving a site the real `newsletter build` wrote.

    It holds the fixture digests and a day with a paper without authors (NO_AUTHORS).
    """
    config = tmp_path / "newsletter.toml"
    config.write_text('[topics]\nRAG = "RAG; retrieval"\n', encoding="utf-8")
    with service(tmp_path, site=False, setup=lambda store: save(store, NO_AUTHORS)) as running:
        env = {
            "NEWSLETTER_DB": str(running.settings.db),
            "NEWSLETTER_SECRET_KEY": TEST_KEY,
            "NEWSLETTER_CONFIG": str(config),
        }
        build(CliRunner(), env, running.settings.site_dir, running.url)
        yield running


def _search(page: Any, url: str) -> list[str]:
    page.goto(url)
    page.wait_for_selector("#status:not(:empty)")
    hrefs: list[str] = page.eval_on_selector_all(
        "#results h2 a", "links => links.map(a => a.getAttribute('href'))"
    )
    return [re.sub(r".*/papers/(.*)\.html$", r"\1", h) for h in hrefs]


@pytest.mark.browser
@pytest.mark.parametrize("term", ["강화학습", "에이전트", "RAG", "diffusion"])
def test_search_finds_the_papers_whose_text_has_the_term(
    browser: Any, searchable: Running, term: str
) -> None:
    papers: dict[str, Paper] = {}
    for day in searchable.store.digests(searchable.store.digest_dates()):
        papers.update({p.arxiv_id: p for p in day.papers})
    # Pagefind matches words and their beginnings: a word starting with the term must be found
    # (Korean written with a space inside counts); nothing without the term may be.
    pattern = re.escape(term).replace("강화", "강화\\s?")
    starts = {a for a, p in papers.items() if re.search(rf"(?<!\w){pattern}", _text(p), re.I)}
    anywhere = {a for a, p in papers.items() if re.search(pattern, _text(p), re.I)}
    assert starts, f"the fixtures have no paper with {term}"
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    found = _search(page, f"{searchable.url}/search.html?q={term}")
    assert starts <= set(found) <= anywhere, (sorted(starts), sorted(found))
    assert page.inner_text("#status") == f"{len(found)}편 찾음"
    assert problems == []
    page.close()


@pytest.mark.browser
def test_search_filters_by_month_and_topic_and_sorts_by_votes(
    browser: Any, searchable: Running
) -> None:
    page = browser.new_page()
    store = searchable.store
    june = {
        p.arxiv_id
        for d in store.digests(store.digest_dates())
        if d.date.month == 6
        for p in d.papers
    }
    assert set(_search(page, f"{searchable.url}/search.html?month=2024-06")) == june
    by_votes = _search(page, f"{searchable.url}/search.html?q=diffusion&sort=votes")
    votes = {
        p.arxiv_id: p.votes or 0 for d in store.digests(store.digest_dates()) for p in d.papers
    }
    ranked = [votes[a] for a in by_votes]
    assert len(ranked) > 3 and ranked == sorted(ranked, reverse=True)
    rag = _search(page, f"{searchable.url}/search.html?topic=RAG")
    assert rag and "2406.19215" in rag  # SeaKR: adaptive retrieval augmented generation
    # Every page links to the search page.
    page.goto(f"{searchable.url}/2024-06-28.html")
    page.click("a.search-link")
    page.wait_for_selector("#search-form")
    page.close()


@pytest.mark.browser
def test_a_result_shows_its_date_votes_and_only_the_authors_it_has(
    browser: Any, searchable: Running
) -> None:
    page = browser.new_page()
    assert _search(page, f"{searchable.url}/search.html?q=quokka") == ["2412.77777"]
    assert page.inner_text("#results .meta") == "2024-12-14 · 추천 5"
    digest = searchable.store.digest(dt.date(2024, 6, 28))
    assert digest is not None
    paper = next(p for p in digest.papers if p.arxiv_id == "2406.18629")
    assert _search(page, f"{searchable.url}/search.html?q=Step-DPO")[0] == "2406.18629"
    line = page.inner_text("#results .meta")
    assert line == f"2024-06-28 · 추천 {paper.votes} · {', '.join(paper.authors)}"
    page.close()


@pytest.mark.browser
def test_an_excerpt_shows_the_text_as_written(browser: Any, searchable: Running) -> None:
    page = browser.new_page()
    assert _search(page, f"{searchable.url}/search.html?q=wombats") == ["2412.77778"]
    shown = page.inner_text("#results li p:not(.meta)")
    assert "5 < 6 kg & R&amp;D <b>x</b> &lt;i&gt;" in shown, shown
    page.close()


@pytest.mark.browser
@pytest.mark.parametrize("term", ["강화학습", "에이전트", "모델"])
def test_an_excerpt_is_a_passage_of_the_page_not_its_search_terms(
    browser: Any, searchable: Running, term: str
) -> None:
    # The Korean terms that end each page's index (joined words, stems) must not be shown.
    page = browser.new_page()
    found = _search(page, f"{searchable.url}/search.html?q={term}")
    assert found
    excerpts = page.eval_on_selector_all(
        "#results li p:not(.meta)", "ps => ps.map(p => p.innerText)"
    )
    marked = page.eval_on_selector_all(
        "#results li", "lis => lis.map(li => li.querySelectorAll('mark').length)"
    )
    assert sum(marked) > 0  # hits are marked where the page has them
    for arxiv_id, shown in zip(found, excerpts, strict=True):
        page.goto(f"{searchable.url}/papers/{arxiv_id}.html")
        text = page.inner_text("article")
        words = set(re.sub(r"[.,·]", " ", text).split())
        assert shown.strip(), arxiv_id
        strange = [w for w in re.sub(r"[.,·]", " ", shown).split() if w not in words]
        assert not strange, (arxiv_id, strange, shown)
    page.close()


@pytest.mark.browser
def test_a_paper_about_the_term_ranks_above_one_whose_author_names_start_with_it(
    browser: Any, searchable: Running
) -> None:
    # SeaKR's summary says RAG; Agent-as-a-Judge only lists an author named Raghuraman.
    page = browser.new_page()
    found = _search(page, f"{searchable.url}/search.html?q=RAG")
    assert found[0] == "2406.19215", found
    # Authors still find their papers; they only weigh less than what a paper is about.
    assert _search(page, f"{searchable.url}/search.html?q=Raghuraman") == ["2410.10934"]
    page.close()


@pytest.mark.browser
def test_the_links_and_labels_every_page_has_are_not_searched(
    browser: Any, searchable: Running
) -> None:
    # No summary mentions a PDF; every page links to one, and says 추천 before its votes.
    page = browser.new_page()
    for term in ("PDF", "추천"):
        assert _search(page, f"{searchable.url}/search.html?q={term}") == [], term
    assert _search(page, f"{searchable.url}/search.html?q=quokka") == ["2412.77777"]
    page.close()


@pytest.mark.browser
def test_no_paper_is_found_by_its_image_address(browser: Any, searchable: Running) -> None:
    # Every thumbnail is at cdn-thumbnails.huggingface.co/social-thumbnails/…: indexed as the
    # image's metadata, a search for either word listed every paper that has one.
    page = browser.new_page()
    page.goto(f"{searchable.url}/search.html")
    found = page.evaluate(
        """async (terms) => {
            const pagefind = await import("./pagefind/pagefind.js");
            const out = {};
            for (const term of terms) {
                const search = await pagefind.search(term);
                const pages = await Promise.all(search.results.map((r) => r.data()));
                // Matched in the page's words or only in its metadata (no location).
                out[term] = pages.map((d) => [d.url, d.locations.length, "image" in d.meta]);
            }
            return out;
        }""",
        ["huggingface", "thumbnails", "social"],
    )
    assert sum(len(pages) for pages in found.values()) > 0  # the search ran and answered
    for term, pages in found.items():
        assert [p for p in pages if p[1] == 0 or p[2]] == [], term
    page.close()
