"""Plain data shared by every part of the package."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Section:
    """One summary section of a paper, e.g. ("What's New", "...")."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper as a digest lists it."""

    arxiv_id: str  # without version suffix, e.g. "2406.18629"
    title: str  # raw, may hold TeX such as "LLM$\\times$MapReduce"
    display_title: str  # plain text for display, e.g. "LLM×MapReduce"
    url: str
    image: str | None
    is_thumbnail: bool  # False for an uploader avatar or no image
    votes: int | None  # None when the digest says "Vote: -" (unknown, not zero)
    authors: tuple[str, ...] = ()
    sections: tuple[Section, ...] = ()
    line: int = 0  # line of the paper heading in its digest file (0 when not from a file)


@dataclass(frozen=True, slots=True)
class Digest:
    """One day's digest: its date and papers in file order."""

    date: dt.date
    papers: tuple[Paper, ...] = ()
    source: str = "<digest>"


@dataclass(frozen=True, slots=True)
class Notice:
    """A problem that did not stop parsing or importing, with where it happened."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: warning: {self.message}"


@dataclass(frozen=True, slots=True)
class DigestSummary:
    """A stored digest as listed by `newsletter digests`."""

    date: dt.date
    paper_count: int
    top_votes: int | None


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A subscriber and their filters."""

    id: int
    email: str
    name: str = ""
    keywords: tuple[str, ...] = ()  # empty: every paper
    exclude: tuple[str, ...] = ()
    min_votes: int = 0
    max_papers: int | None = None
    status: str = "active"  # active | pending | unsubscribed | bounced
    extra: dict[str, str] = field(default_factory=dict)
