"""One page per paper, `papers/<arxiv_id>.html`: the paper in full, its days, citation data (pure).

A paper page shows the newest stored data of a paper (title, thumbnail, votes, authors, every
summary section), the days it was listed (with that day's votes), and links to arXiv (abstract,
PDF) and Hugging Face Papers. Its head carries OpenGraph and Twitter card tags, Google Scholar's
`citation_*` tags and a JSON-LD `ScholarlyArticle`; the body a BibTeX entry to copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from ..links import arxiv_pdf_url, arxiv_url, hf_paper_url, page_name, paper_page_name, paper_url
from ..model import Digest, Paper
from .archive import DESCRIPTION_CHARS, SiteInfo, render_page
from .feeds import clean_paper, paper_anchor
from .korean import extra_terms

_ARXIV_NEW = re.compile(r"(\d\d)(\d\d)\.\d{4,5}")
_ARXIV_OLD = re.compile(r"/(\d\d)(\d\d)\d{3}$")  # archive/YYMMNNN
_BIBTEX_SPECIAL = re.compile(r"([&%$#_])")


@dataclass(frozen=True, slots=True)
class PaperDay:
    """A day a paper was listed, with its votes that day."""

    date: dt.date
    votes: int | None


@dataclass(frozen=True, slots=True)
class PaperRecord:
    """What a paper page shows: the newest data of the paper and every day it was listed."""

    paper: Paper  # cleaned (clean_paper)
    days: tuple[PaperDay, ...]  # oldest first
    topics: tuple[str, ...] = ()

    @property
    def first(self) -> dt.date:
        return self.days[0].date

    @property
    def votes(self) -> int | None:
        """The votes of the newest day (what the feeds show)."""
        return self.days[-1].votes


def paper_records(digests: Iterable[Digest]) -> dict[str, PaperRecord]:
    """A record per paper of `digests`: its newest data and the days it was listed."""
    newest: dict[str, Paper] = {}
    days: dict[str, list[PaperDay]] = {}
    for digest in sorted(digests, key=lambda d: d.date):
        for paper in digest.papers:
            newest[paper.arxiv_id] = paper
            days.setdefault(paper.arxiv_id, []).append(PaperDay(digest.date, paper.votes))
    return {k: PaperRecord(clean_paper(p), tuple(days[k])) for k, p in newest.items()}


def paper_key(
    arxiv_id: str,
    dates: Sequence[dt.date],
    *,
    hashes: Mapping[dt.date, str],
    fingerprint: str,
) -> str:
    """A hash of everything a paper page is rendered from, for incremental builds.

    `fingerprint` covers the templates, the code and the settings, the topics included.
    """
    parts = [fingerprint, arxiv_id, *(f"{d}:{hashes.get(d, '')}" for d in dates)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def paper_month(record: PaperRecord) -> tuple[int, int] | None:
    """The year and month the paper was submitted to arXiv, which its id holds (`2406.15786`:
    June 2024; `cs.AI/0703123`: March 2007); None when the id does not say."""
    found = _ARXIV_NEW.fullmatch(record.paper.arxiv_id) or _ARXIV_OLD.search(record.paper.arxiv_id)
    if found is None or not 1 <= int(found[2]) <= 12:
        return None
    yy = int(found[1])
    return (1900 + yy if yy >= 91 else 2000 + yy), int(found[2])  # arXiv began in 1991


def paper_year(record: PaperRecord) -> int:
    """The year of a paper: its arXiv submission (`paper_month`), else its first day."""
    month = paper_month(record)
    return month[0] if month else record.first.year


def paper_date(record: PaperRecord, *, separator: str) -> str:
    """When the paper came out, as precisely as known: its arXiv month (`2024/06`), else the
    day it was first listed (`2024/10/16`). The listing day is often months later."""
    month = paper_month(record)
    if month is None:
        return record.first.strftime(f"%Y{separator}%m{separator}%d")
    return f"{month[0]:04d}{separator}{month[1]:02d}"


def _bibtex_text(text: str) -> str:
    # Braces would unbalance the entry, and these five are commands or comments in TeX.
    text = text.replace("\\", "").replace("{", "").replace("}", "")
    return _BIBTEX_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def bibtex_key(record: PaperRecord) -> str:
    """`lastname2024firstword` in ASCII, e.g. `yang2024stepdpo`."""

    def ascii_word(text: str) -> str:
        folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return re.sub(r"[^a-z0-9]", "", folded.lower())

    authors = [a for a in record.paper.authors if a.strip()]
    name = ascii_word(authors[0].split()[-1]) if authors else ""
    words = [ascii_word(w) for w in record.paper.display_title.split()]
    word = next((w for w in words if w), "")
    return f"{name or 'paper'}{paper_year(record)}{word}"


def bibtex(record: PaperRecord) -> str:
    """A BibTeX `@misc` entry for the arXiv preprint."""
    paper = record.paper
    authors = " and ".join(_bibtex_text(a) for a in paper.authors if a.strip())
    fields = [
        ("title", _bibtex_text(paper.display_title or paper.arxiv_id)),
        ("author", authors),
        ("year", str(paper_year(record))),
        ("eprint", paper.arxiv_id),
        ("archivePrefix", "arXiv"),
        ("url", arxiv_url(paper.arxiv_id)),
    ]
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields if value)
    return f"@misc{{{bibtex_key(record)},\n{body}\n}}\n"


def _description(paper: Paper) -> str:
    text = " ".join(paper.sections[0].text.split()) if paper.sections else ""
    return text if len(text) <= DESCRIPTION_CHARS else text[: DESCRIPTION_CHARS - 1] + "…"


def json_ld(record: PaperRecord, *, url: str) -> Markup:
    """The page's JSON-LD `ScholarlyArticle`, safe inside a `<script>` element."""
    paper = record.paper
    data: dict[str, object] = {
        "@context": "https://schema.org",
        "@type": "ScholarlyArticle",
        "headline": paper.display_title or paper.arxiv_id,
        "name": paper.display_title or paper.arxiv_id,
        "author": [{"@type": "Person", "name": a} for a in paper.authors if a.strip()],
        "datePublished": paper_date(record, separator="-"),
        "url": url,
        "sameAs": [arxiv_url(paper.arxiv_id), hf_paper_url(paper.arxiv_id)],
        "identifier": {"@type": "PropertyValue", "propertyID": "arXiv", "value": paper.arxiv_id},
        "inLanguage": "en",
    }
    if paper.is_thumbnail and paper.image:
        data["image"] = paper.image
    if paper.sections:
        data["abstract"] = _description(paper)
    text = json.dumps(data, ensure_ascii=False, indent=1)
    # `</script>` or `<!--` in a title must not end or change the script element.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


def _search_text(paper: Paper) -> str:
    sections = (f"{s.name} {s.text}" for s in paper.sections)
    return " ".join((paper.display_title, *paper.authors, *sections))


def render_paper(record: PaperRecord, *, site: SiteInfo) -> bytes:
    """The page of one paper."""
    paper = record.paper
    path = paper_page_name(paper.arxiv_id)
    url = paper_url(site.base_url, paper.arxiv_id)
    days = [
        {
            "date": d.date.isoformat(),
            "href": f"../{page_name(d.date)}#{paper_anchor(paper)}",
            "votes": d.votes,
        }
        for d in reversed(record.days)
    ]
    return render_page(
        "site/paper.html",
        site,
        path,
        root="../",
        paper=paper,
        votes=record.votes,
        days=days,
        topics=record.topics,
        citation_date=paper_date(record, separator="/"),
        description=_description(paper),
        abs_url=arxiv_url(paper.arxiv_id),
        pdf_url=arxiv_pdf_url(paper.arxiv_id),
        hf_url=hf_paper_url(paper.arxiv_id),
        page_url=url,
        json_ld=json_ld(record, url=url),
        bibtex=bibtex(record),
        search_terms=extra_terms(_search_text(paper)),
        months=sorted({d.date.isoformat()[:7] for d in record.days}),
        newest=record.days[-1].date.isoformat(),
    )
