"""Plain data shared by every part of the package."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .errors import SubscriberError


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
class Filters:
    """What a reader asked for; hashable, so equal filters share one selection and rendering.

    The one filter type: subscribers, sign-ups, the preferences form, the CSV, `newsletter
    match` and topic feeds all hold one of these.
    """

    keywords: tuple[str, ...] = ()  # OR; empty (or only blank keywords): every paper
    exclude: tuple[str, ...] = ()  # any hit removes the paper
    min_votes: int = 0  # "Vote: -" (unknown) never reaches a minimum above 0
    max_papers: int | None = None  # None: no cap


EVERY_PAPER = Filters()
# How often a subscriber gets mail: every day's digest, or one weekly edition (not a filter:
# the same filters select from a day or from a week).
CADENCES = ("daily", "weekly")


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A subscriber and their filters."""

    id: int
    email: str
    name: str = ""
    filters: Filters = EVERY_PAPER
    status: str = "active"  # active | pending | unsubscribed | bounced
    extra: dict[str, str] = field(default_factory=dict)
    cadence: str = "daily"  # one of CADENCES
    version: int = 0  # the store counts every write to a subscriber (a send compares it)
    legacy_links: bool = False  # links that sign the id alone are honoured (tokens.py)


@dataclass(frozen=True, slots=True)
class SubscriberRow:
    """One valid subscribers-CSV row: a normalised address, a name and filters."""

    row: int
    email: str
    name: str
    filters: Filters
    cadence: str = "daily"
    status: str = "active"  # or unsubscribed / bounced: a suppression, never undone by a CSV


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What importing subscribers did (or would do, on a dry run): addresses per outcome."""

    source: str = "<csv>"
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    unsubscribed: tuple[str, ...] = ()  # with sync: active before, missing from the file
    erased: tuple[str, ...] = ()  # new addresses left out: erased at their owner's request
    rejected: tuple[SubscriberError, ...] = ()
    dry_run: bool = False
    sync_skipped: bool = False  # sync was asked, but rows were rejected: nobody unsubscribed

    def summary(self) -> str:
        """One line of counts, e.g. "3 added, 1 updated, 8 unchanged, 0 rejected"."""
        counts = [
            f"{len(self.added)} added",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
            f"{len(self.rejected)} rejected",
        ]
        if self.unsubscribed:
            counts.append(f"{len(self.unsubscribed)} unsubscribed")
        if self.erased:
            counts.append(f"{len(self.erased)} erased at their request (not added)")
        return ", ".join(counts)
