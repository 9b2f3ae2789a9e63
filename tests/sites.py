"""A built site for feed and page tests: settings, digests in the real format, feedparser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import feedparser

from newsletter.config import Settings
from newsletter.digest.parse import parse_digest
from newsletter.publish.build import BuildReport, build_site
from newsletter.store import Store

from .conftest import TEST_KEY

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
