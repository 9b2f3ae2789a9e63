"""A built site for feed and page tests: settings, digests in the real format, feedparser,
the built sites as fixtures, and readers of what a page holds.

A test module uses a fixture by importing it: `from .sites import site_fixture  # noqa: F401`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import feedparser
import html5lib
import pytest

from newsletter.config import Settings
from newsletter.digest.parse import parse_digest
from newsletter.model import Digest
from newsletter.publish.build import BuildReport, build_site
from newsletter.store import Store

from .conftest import DIGESTS, TEST_KEY

GOLDEN = Path(__file__).parent / "golden"
BASE = "https://papers.example.org/daily"
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "dc": "http://purl.org/dc/elements/1.1/",
    "media": "http://search.yahoo.com/mrss/",
}
RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}$"
)
HOSTILE = '<script>alert(1)</script> & "quotes"'
MARKUP_TITLE = "Retrieval <script>x</script> & <think>"  # a title a reader must show as written
FIXTURE_PAPERS = 54  # distinct papers in the three fixture digests


def make_settings(tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "db": tmp_path / "unused.db",
        "base_url": BASE,
        "site_title": "Daily Papers",
        "secret_key": TEST_KEY,
        "topics": {"Reasoning": "reasoning; 추론", "에이전트": "agent; 에이전트"},
    }
    values.update(changes)
    return Settings().replace(**values)


def build(store: Store, out: Path, settings: Settings) -> BuildReport:
    return build_site(store, settings=settings, out_dir=out)


def digest_text(date: str, papers: list[dict[str, Any]]) -> str:
    """A digest file in the real format; each paper: id, title, votes, authors, new."""
    lines = [f"## Daily Papers ({date})", ""]
    for p in papers:
        lines += [
            f"### [{p['title']}](https://arxiv.org/abs/{p['id']})",
            f"![](https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{p['id']}.png)",
            f"Vote: {p.get('votes', 5)}",
            f"Authors: {p.get('authors', 'Kim Minji, Lee Jun')}",
            f"- **What's New**: {p.get('new', '새로운 방법을 제안합니다.')}",
            "",
        ]
    return "\n".join(lines)


def save(store: Store, *texts: str) -> None:
    store.save_digests([(parse_digest(t).digest, "test.md") for t in texts])


def parsed(out: Path, name: str) -> Any:
    result = feedparser.parse((out / name).read_bytes())
    assert not result.bozo, f"{name}: {result.get('bozo_exception')}"
    return result


def fixture_ids() -> list[str]:
    """The arXiv ids of every paper in the fixture digest files, sorted."""
    ids = {
        p.arxiv_id
        for path in DIGESTS
        for p in parse_digest(path.read_text(encoding="utf-8")).digest.papers
    }
    return sorted(ids)


@pytest.fixture(name="site")
def site_fixture(loaded_store: Store, tmp_path: Path) -> Path:
    """The site built from the three fixture digests, with two topics."""
    out = tmp_path / "site"
    build(loaded_store, out, make_settings(tmp_path))
    return out


@pytest.fixture(name="small_site")
def small_site_fixture(store: Store, tmp_path: Path) -> Path:
    """The site built from the first fixture digest alone: what the golden files show."""
    store.save_digests(
        [(parse_digest(DIGESTS[0].read_text(encoding="utf-8")).digest, DIGESTS[0].name)]
    )
    out = tmp_path / "site"
    build(store, out, make_settings(tmp_path))
    return out


class LoadCountingStore(Store):
    """A real store that records which days a build loads."""

    loaded: list[str]

    def digests(self, dates: Sequence[dt.date]) -> list[Digest]:
        self.loaded.extend(d.isoformat() for d in dates)
        return super().digests(dates)


class Head(HTMLParser):
    """Collects the <link>, <meta> and <html> attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []
        self.metas: list[dict[str, str]] = []
        self.html: dict[str, str] = {}
        self.ids: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "link":
            self.links.append(values)
        elif tag == "meta":
            self.metas.append(values)
        elif tag == "html":
            self.html = values
        if "id" in values:
            self.ids.append(values["id"])
        if tag == "a" and "href" in values:
            self.hrefs.append(values["href"])


def head_of(path: Path) -> Head:
    head = Head()
    head.feed(path.read_text(encoding="utf-8"))
    return head


def strict_parse(text: str) -> Any:
    """The HTML5 tree of `text`; html5lib's ParseError at the first parse error."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)
