"""RFC 5005 feed history: monthly archive documents behind the main feed (pure).

The main feed (`rss.xml`, `atom.xml`) is the subscription document: the newest papers, as many
as the budget allows. Every other stored paper is in exactly one archive document,
`archive/YYYY-MM.xml` (RSS) and `archive/YYYY-MM.atom` (Atom), by the month it first appeared.
The main feed links to the newest archive (`prev-archive`); each archive links to the one before
and after it and to the main feed (`current`) and says `fh:archive`. So a reader following
`prev-archive` from the main feed meets every paper exactly once. A feed that holds every
paper says `fh:complete` instead.

Older months never change unless their papers' data does, so readers and caches can keep them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

FH = "http://purl.org/syndication/history/1.0"
ATOM = "http://www.w3.org/2005/Atom"
ARCHIVE_DIR = "archive/"
Kind = Literal["rss", "atom"]
SUFFIX: Mapping[Kind, str] = {"rss": ".xml", "atom": ".atom"}
MAIN: Mapping[Kind, str] = {"rss": "rss.xml", "atom": "atom.xml"}


def month_of(date: dt.date) -> str:
    """The archive month of a date: `YYYY-MM`."""
    return f"{date.year:04d}-{date.month:02d}"


def archive_path(month: str, kind: Kind) -> str:
    """The archive document of `month` in `kind`, relative to the site root."""
    return f"{ARCHIVE_DIR}{month}{SUFFIX[kind]}"


@dataclass(frozen=True, slots=True)
class FeedHistory:
    """The RFC 5005 part of one feed document: its flags and its neighbours (months)."""

    complete: bool = False  # fh:complete: this feed holds every paper
    archive: bool = False  # fh:archive: an archive document
    prev: str | None = None  # month of the prev-archive document
    next: str | None = None  # month of the next-archive document


def archive_months(
    first_seen: Mapping[str, dt.date], current: Collection[str]
) -> dict[str, tuple[str, ...]]:
    """The papers not in the main feed (`current`) by the month they first appeared, oldest first."""
    months: dict[str, list[str]] = {}
    for arxiv_id, date in sorted(first_seen.items(), key=lambda kv: (kv[1], kv[0])):
        if arxiv_id not in current:
            months.setdefault(month_of(date), []).append(arxiv_id)
    return {m: tuple(ids) for m, ids in sorted(months.items())}


def neighbours(months: Sequence[str]) -> dict[str, FeedHistory]:
    """Each archive month's history: the months before and after it that have a document."""
    ordered = sorted(months)
    return {
        m: FeedHistory(
            archive=True,
            prev=ordered[i - 1] if i else None,
            next=ordered[i + 1] if i + 1 < len(ordered) else None,
        )
        for i, m in enumerate(ordered)
    }


def archive_key(
    month: str,
    ids: Sequence[str],
    *,
    history: FeedHistory,
    paper_dates: Mapping[str, Sequence[dt.date]],
    hashes: Mapping[dt.date, str],
    fingerprint: str,
) -> str:
    """A hash of everything an archive document is rendered from, for incremental builds."""
    h = hashlib.sha256(f"{fingerprint}\0{month}\0{history!r}".encode())
    for arxiv_id in ids:
        days = paper_dates.get(arxiv_id, ())
        h.update(f"\0{arxiv_id}:".encode() + ",".join(hashes.get(d, "") for d in days).encode())
    return h.hexdigest()


class HistoryExtension:
    """feedgen feed extension writing `FeedHistory` (set `history`, `root` and `kind` first)."""

    def __init__(self) -> None:
        self.history = FeedHistory()
        self.root = ""
        self.kind: Kind = "atom"

    def extend_ns(self) -> dict[str, str]:
        return {"fh": FH}

    def _links(self) -> list[tuple[str, str]]:
        h, kind = self.history, self.kind
        links = []
        if h.archive:
            links.append(("current", f"{self.root}/{MAIN[kind]}"))
        if h.prev:
            links.append(("prev-archive", f"{self.root}/{archive_path(h.prev, kind)}"))
        if h.next:
            links.append(("next-archive", f"{self.root}/{archive_path(h.next, kind)}"))
        return links

    def _write(self, parent: Any, link: str, *, media_type: str) -> None:
        # Appended to the feed's head: feedgen adds the entries after its extensions run.
        for rel, href in self._links():
            parent.append(parent.makeelement(link, {"rel": rel, "href": href, "type": media_type}))
        if self.history.complete:
            parent.append(parent.makeelement(f"{{{FH}}}complete", {}))
        if self.history.archive:
            parent.append(parent.makeelement(f"{{{FH}}}archive", {}))

    def extend_atom(self, feed: Any) -> Any:
        # feedgen declares Atom's namespace as a plain xmlns attribute: its elements are unprefixed.
        self._write(feed, "link", media_type="application/atom+xml")
        return feed

    def extend_rss(self, rss: Any) -> Any:
        self._write(rss.find("channel"), f"{{{ATOM}}}link", media_type="application/rss+xml")
        return rss
