"""The static archive: `index.html` and one `YYYY-MM-DD.html` page per day (pure rendering).

Pages link to each other and to the feeds with relative URLs, so the archive also works opened
from disk; only the canonical link uses the base URL. Every page carries a `<link
rel="alternate">` for each public feed, so browsers and readers discover them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..audience.match import by_votes, paper_order
from ..links import page_name, paper_page_name
from ..model import Digest
from ..templates import get_template, template_environment
from ..text import clean_text
from .feeds import clean_paper

DESCRIPTION_CHARS = 200  # a page's description: link previews cut near here

TOP_PAPERS = 3  # papers listed under each day on the index


@dataclass(frozen=True, slots=True)
class FeedLink:
    """A feed as pages advertise it: relative href, media type, titles."""

    href: str
    type: str
    title: str  # the autodiscovery title, e.g. "Daily Papers (RSS)"
    label: str  # the short footer label, e.g. "RSS"


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """What every page shows: the site's title, its base URL and its public feeds.

    Its text must already be free of characters XML and HTML forbid (`feeds.xml_text`).
    """

    title: str
    base_url: str
    feeds: tuple[FeedLink, ...] = ()
    template_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class TopPaper:
    """A paper as the index lists it under its day."""

    arxiv_id: str
    title: str
    votes: int | None


@dataclass(frozen=True, slots=True)
class DaySummary:
    """A day as the index lists it: date, paper count and the most voted papers."""

    date: dt.date
    count: int
    top: tuple[TopPaper, ...] = ()


def summarize(digest: Digest) -> DaySummary:
    """The index entry of a digest."""
    top = [clean_paper(p) for p in heapq.nsmallest(TOP_PAPERS, digest.papers, key=paper_order)]
    return DaySummary(
        date=digest.date,
        count=len(digest.papers),
        top=tuple(TopPaper(p.arxiv_id, p.display_title or p.arxiv_id, p.votes) for p in top),
    )


def render_page(name: str, site: SiteInfo, path: str, **context: object) -> bytes:
    template = get_template(name, user_dir=site.template_dir)
    canonical = f"{site.base_url.rstrip('/')}/{path}"
    # Paper text arrives cleaned (clean_paper) and build.py cleans the settings it passes in.
    return template.render(site=site, canonical_url=canonical, **context).encode("utf-8")


def render_day(
    digest: Digest,
    *,
    site: SiteInfo,
    previous: dt.date | None = None,
    following: dt.date | None = None,
) -> bytes:
    """The archive page of one day: every paper in full, by votes, with links to its neighbours."""
    return render_page(
        "site/day.html",
        site,
        page_name(digest.date),
        date=digest.date.isoformat(),
        page_description=_day_description(digest),
        papers=[clean_paper(p) for p in by_votes(digest.papers)],
        paper_pages={p.arxiv_id: paper_page_name(p.arxiv_id) for p in digest.papers},
        previous=previous.isoformat() if previous else None,
        following=following.isoformat() if following else None,
    )


def _day_description(digest: Digest) -> str:
    """A day page's description: how many papers, then the most voted titles, cut near 200
    characters (where link previews cut)."""
    titles = [p.display_title or p.arxiv_id for p in by_votes(digest.papers)[:TOP_PAPERS]]
    text = f"{digest.date.isoformat()} 논문 {len(digest.papers)}편: {' · '.join(titles)}"
    return clean_text(text, limit=DESCRIPTION_CHARS)


def render_index(days: Sequence[DaySummary], *, site: SiteInfo) -> bytes:
    """The front page: every day, newest first, with its count and top papers."""
    ordered = sorted(days, key=lambda d: d.date, reverse=True)
    return render_page(
        "site/index.html",
        site,
        "",  # the canonical address of the front page is the folder itself
        days=[{"date": d.date.isoformat(), "count": d.count, "top": d.top} for d in ordered],
    )


def site_fingerprint(site: SiteInfo) -> str:
    """A hash of everything besides the store that a build's pages and feeds depend on.

    Covers every site template in effect (a user folder may override any of them), the code of
    this package and of `links.py`, and the site settings, so a build can trust a page or feed
    written under the same fingerprint. A new version that writes its files differently thus
    renders everything again on its first build.
    """
    env = template_environment(site.template_dir)
    assert env.loader is not None
    here = Path(__file__).parent
    h = hashlib.sha256()
    for module in [*sorted(here.glob("*.py")), here.parent / "links.py"]:
        h.update(module.name.encode() + b"\0" + module.read_bytes())
    for name in env.list_templates(filter_func=lambda n: n.startswith("site/")):
        source, _, _ = env.loader.get_source(env, name)
        h.update(name.encode() + b"\0" + source.encode())
    h.update(repr(site).encode())
    return h.hexdigest()
