"""Parse a daily digest markdown file into a `Digest` (pure: text in, data out)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from ..errors import DigestError
from ..model import Digest, Notice, Paper, Section
from .texmath import plain_title

HF_BASE = "https://huggingface.co"

_HEADER = re.compile(r"^##\s+Daily Papers\s*\((?P<date>[^)]*)\)\s*$", re.IGNORECASE)
_HEADING = re.compile(r"^###\s+(?P<rest>.*)$")
_LINKED = re.compile(r"^\[(?P<title>.+)\]\((?P<url>\S+?)\)\s*$")
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<url>\S*?)\)\s*$")
_VOTE = re.compile(r"^Votes?\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)
_AUTHORS = re.compile(r"^Authors?\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)
# "- **What's New**: text", "- ***What's New***: text", "- **What's New:** text"
_SECTION = re.compile(r"^[-*+]\s+\*{2,3}(?P<name>[^*]+?)\*{2,3}\s*(?P<text>.*)$")
_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
_ARXIV = re.compile(
    r"^/(?:abs|pdf|html|papers)/(?P<id>\d{4}\.\d{4,5}|[a-z][a-z.\-]*/\d{7})(?:v\d+)?(?:\.pdf)?/?$",
    re.IGNORECASE,
)
_ARXIV_HOSTS = {"arxiv.org", "www.arxiv.org", "export.arxiv.org", "huggingface.co"}
# Far above any real count (the busiest Hugging Face papers have a few thousand) and far below
# SQLite's 64-bit INTEGER and Python's 4,300-digit int() limit, so a typo fails its file.
MAX_VOTES = 10_000_000


@dataclass(frozen=True, slots=True)
class ParseResult:
    """A parsed digest and the warnings met on the way."""

    digest: Digest
    warnings: tuple[Notice, ...]


@dataclass
class _Draft:
    line: int
    title: str
    url: str
    arxiv_id: str
    image: str | None = None
    is_thumbnail: bool = False
    votes: int | None = None
    authors: tuple[str, ...] = ()
    sections: list[list[str]] | None = None

    def finish(self) -> Paper:
        sections = tuple(Section(name=n, text=t.strip()) for n, t in (self.sections or []))
        return Paper(
            arxiv_id=self.arxiv_id,
            title=self.title,
            display_title=plain_title(self.title),
            url=self.url,
            image=self.image,
            is_thumbnail=self.is_thumbnail,
            votes=self.votes,
            authors=self.authors,
            sections=sections,
            line=self.line,
        )


def _parse_date(text: str, *, source: str, line: int) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise DigestError(
            f"bad date {text.strip()!r} (expected YYYY-MM-DD)", source=source, line=line
        ) from None


def _excerpt(text: str, *, limit: int = 80) -> str:
    """`text` cut to `limit` characters, so one bad value cannot flood the error line."""
    return text if len(text) <= limit else text[:limit] + "…"


def _split_url(url: str) -> SplitResult | None:
    """`url` split into parts, or None when it cannot be (an unclosed `[` IPv6 host)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def arxiv_id_from_url(url: str) -> str | None:
    """Return the arXiv id (without version) that `url` points at, or None."""
    parts = _split_url(url)
    if parts is None or parts.scheme not in ("http", "https") or parts.hostname not in _ARXIV_HOSTS:
        return None
    match = _ARXIV.match(parts.path)
    return match.group("id") if match else None


def _image(url: str, *, source: str, line: int) -> tuple[str | None, bool]:
    """Resolve an image reference; relative ones are uploader avatars on Hugging Face."""
    parts = _split_url(url)
    if parts is None:
        raise DigestError(
            f"image link is not a valid URL: {_excerpt(url)}", source=source, line=line
        )
    if url.startswith("/") and not url.startswith("//"):
        return urljoin(HF_BASE, url), False
    if parts.scheme not in ("http", "https"):
        return None, False
    return url, "/avatars/" not in parts.path


def parse_digest(text: str, *, source: str = "<digest>") -> ParseResult:
    """Parse one digest; raise `DigestError` naming `source` and line on malformed input."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    date: dt.date | None = None
    papers: list[Paper] = []
    seen: dict[str, int] = {}
    warnings: list[Notice] = []
    draft: _Draft | None = None
    skipping = False  # inside a duplicate paper whose lines are ignored

    def close() -> None:
        nonlocal draft
        if draft is not None:
            papers.append(draft.finish())
        draft = None

    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if header := _HEADER.match(line):
            if date is not None or papers or draft is not None:
                raise DigestError("a second '## Daily Papers' header", source=source, line=number)
            date = _parse_date(header.group("date"), source=source, line=number)
            continue
        if heading := _HEADING.match(line):
            close()
            linked = _LINKED.match(heading.group("rest").strip())
            if not linked:
                raise DigestError(
                    "paper heading without a link (expected '### [Title](https://arxiv.org/abs/ID)')",
                    source=source,
                    line=number,
                )
            url = linked.group("url")
            if _split_url(url) is None:
                raise DigestError(
                    f"paper link is not a valid URL: {_excerpt(url)}", source=source, line=number
                )
            arxiv_id = arxiv_id_from_url(url)
            if arxiv_id is None:
                raise DigestError(
                    f"paper link is not an arXiv URL: {url}", source=source, line=number
                )
            if arxiv_id in seen:
                warnings.append(
                    Notice(
                        source,
                        number,
                        f"arXiv {arxiv_id} already listed at line {seen[arxiv_id]}; keeping the first",
                    )
                )
                skipping = True
                continue
            skipping = False
            seen[arxiv_id] = number
            draft = _Draft(
                line=number, title=linked.group("title").strip(), url=url, arxiv_id=arxiv_id
            )
            continue
        if skipping:
            continue
        if draft is None:
            if line.startswith("#"):
                continue  # other headings before the first paper
            if papers or date is not None:
                warnings.append(Notice(source, number, "text outside any paper ignored"))
                continue
            continue
        if image := _IMAGE.match(line):
            draft.image, draft.is_thumbnail = _image(image.group("url"), source=source, line=number)
            continue
        if vote := _VOTE.match(line):
            value = vote.group("value")
            if value in ("-", "–", "—", ""):
                draft.votes = None
            elif value.isascii() and value.isdigit():
                # Compare lengths first: int() refuses strings of 4,300+ digits (zeros too).
                digits = value.lstrip("0") or "0"
                if len(digits) > len(str(MAX_VOTES)) or int(digits) > MAX_VOTES:
                    raise DigestError(
                        f"vote count {_excerpt(value, limit=20)} is over {MAX_VOTES:,}",
                        source=source,
                        line=number,
                    )
                draft.votes = int(digits)
            else:
                raise DigestError(
                    f"bad vote count {_excerpt(value, limit=40)!r} (expected a number or '-')",
                    source=source,
                    line=number,
                )
            continue
        if authors := _AUTHORS.match(line):
            draft.authors = tuple(a.strip() for a in authors.group("value").split(",") if a.strip())
            continue
        if section := _SECTION.match(line):
            name = section.group("name").strip().rstrip(":").strip()
            body = section.group("text").strip().removeprefix(":").strip()
            if draft.sections is None:
                draft.sections = []
            draft.sections.append([name, body])
            continue
        if draft.sections:
            draft.sections[-1][1] += "\n" + line  # a wrapped paragraph continues its section
            continue
        warnings.append(
            Notice(source, number, f"unrecognised line in paper at line {draft.line} ignored")
        )
    close()

    if date is None:
        found = _DATE_IN_NAME.search(source.replace("\\", "/").rsplit("/", 1)[-1])
        if found is None:
            if not papers:
                raise DigestError(
                    "not a digest: no '## Daily Papers (YYYY-MM-DD)' header and no papers",
                    source=source,
                    line=1,
                )
            raise DigestError(
                "no date: no '## Daily Papers (YYYY-MM-DD)' header and no YYYY-MM-DD in the file name",
                source=source,
                line=1,
            )
        date = _parse_date(found.group(1), source=source, line=1)
    if not papers:
        raise DigestError(
            "not a digest: no '### [Title](https://arxiv.org/abs/ID)' paper headings",
            source=source,
            line=1,
        )
    return ParseResult(
        digest=Digest(date=date, papers=tuple(papers), source=source), warnings=tuple(warnings)
    )
