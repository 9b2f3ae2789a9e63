"""Storing digests and papers, and reading them back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import StoreError
from ..model import Digest, DigestSummary, Paper, Section
from .base import StoreBase, dump_list

IngestStatus = Literal["added", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class Saved:
    """What storing one digest did."""

    date: dt.date
    status: IngestStatus
    paper_count: int


def _paper_row(paper: Paper) -> tuple[Any, ...]:
    return (
        paper.arxiv_id,
        paper.title,
        paper.display_title,
        paper.url,
        paper.image,
        int(paper.is_thumbnail),
        dump_list(paper.authors),
        dump_list([s.name, s.text] for s in paper.sections),
    )


def content_hash(digest: Digest) -> str:
    """A hash of everything stored about `digest`, so an unchanged file is recognised."""
    h = hashlib.sha256(digest.date.isoformat().encode())
    for paper in digest.papers:
        h.update(repr((_paper_row(paper), paper.votes, paper.line)).encode())
    return h.hexdigest()


def _paper(row: dict[str, Any]) -> Paper:
    return Paper(
        arxiv_id=row["arxiv_id"],
        title=row["title"],
        display_title=row["display_title"],
        url=row["url"],
        image=row["image"],
        is_thumbnail=bool(row["is_thumbnail"]),
        votes=row["votes"],
        authors=tuple(json.loads(row["authors"])),
        sections=tuple(Section(name=n, text=t) for n, t in json.loads(row["sections"])),
        line=row["line"],
    )


class DigestStore(StoreBase):
    """Digests and papers."""

    def save_digests(self, digests: Iterable[tuple[Digest, str]]) -> list[Saved]:
        """Upsert (digest, source) pairs in one transaction; unchanged digests are left alone."""
        results: list[Saved] = []
        now = self.now_text()
        with self.transaction() as conn:
            for digest, source in digests:
                date = digest.date.isoformat()
                digest_hash = content_hash(digest)
                old = conn.execute(
                    "SELECT content_hash FROM digests WHERE date = ?", (date,)
                ).fetchone()
                if old is not None and old[0] == digest_hash:
                    results.append(Saved(digest.date, "unchanged", len(digest.papers)))
                    continue
                # A paper listed on several days reads as the newest of them says: an older
                # digest ingested later does not overwrite its text.
                conn.executemany(
                    """INSERT INTO papers (arxiv_id, title, display_title, url, image, is_thumbnail, authors, sections)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (arxiv_id) DO UPDATE SET title = excluded.title,
                         display_title = excluded.display_title, url = excluded.url, image = excluded.image,
                         is_thumbnail = excluded.is_thumbnail, authors = excluded.authors, sections = excluded.sections
                       WHERE NOT EXISTS (SELECT 1 FROM digest_papers
                         WHERE arxiv_id = excluded.arxiv_id AND date > ?)""",
                    [(*_paper_row(p), date) for p in digest.papers],
                )
                conn.execute(
                    """INSERT INTO digests (date, source, content_hash, paper_count, ingested_at) VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT (date) DO UPDATE SET source = excluded.source, content_hash = excluded.content_hash,
                         paper_count = excluded.paper_count, ingested_at = excluded.ingested_at""",
                    (date, source, digest_hash, len(digest.papers), now),
                )
                conn.execute("DELETE FROM digest_papers WHERE date = ?", (date,))
                conn.executemany(
                    "INSERT INTO digest_papers (date, arxiv_id, position, votes, line) VALUES (?, ?, ?, ?, ?)",
                    [(date, p.arxiv_id, i, p.votes, p.line) for i, p in enumerate(digest.papers)],
                )
                results.append(
                    Saved(digest.date, "added" if old is None else "updated", len(digest.papers))
                )
        return results

    def digest_summaries(self) -> list[DigestSummary]:
        """Every stored digest, newest first, with paper count and top votes."""
        rows = self.query(
            """SELECT d.date, d.paper_count, MAX(dp.votes) AS top_votes FROM digests d
               LEFT JOIN digest_papers dp ON dp.date = d.date GROUP BY d.date ORDER BY d.date DESC"""
        )
        return [
            DigestSummary(dt.date.fromisoformat(r["date"]), r["paper_count"], r["top_votes"])
            for r in rows
        ]

    def digest_dates(self, *, limit: int | None = None) -> list[dt.date]:
        """Dates of stored digests, newest first."""
        sql = "SELECT date FROM digests ORDER BY date DESC" + (" LIMIT ?" if limit else "")
        rows = self.conn.execute(sql, (limit,) if limit else ()).fetchall()
        return [dt.date.fromisoformat(r[0]) for r in rows]

    def latest_date(self) -> dt.date | None:
        dates = self.digest_dates(limit=1)
        return dates[0] if dates else None

    def digests(self, dates: Sequence[dt.date]) -> list[Digest]:
        """The digests for `dates` (missing ones left out), in the order given, papers in file order."""
        if not dates:
            return []
        keys = [d.isoformat() for d in dates]
        marks = ",".join("?" * len(keys))
        rows = self.query(
            f"""SELECT dp.date, dp.votes, dp.line, p.* FROM digest_papers dp
                JOIN papers p ON p.arxiv_id = dp.arxiv_id WHERE dp.date IN ({marks})
                ORDER BY dp.date, dp.position""",
            keys,
        )
        sources = dict(
            self.conn.execute(
                f"SELECT date, source FROM digests WHERE date IN ({marks})", keys
            ).fetchall()
        )
        papers: dict[str, list[Paper]] = {k: [] for k in sources}
        for row in rows:
            papers[row["date"]].append(_paper(row))
        return [
            Digest(date=dt.date.fromisoformat(k), papers=tuple(papers[k]), source=sources[k])
            for k in keys
            if k in sources
        ]

    def digest_for(self, date: dt.date | None) -> Digest:
        """The digest of `date`, or the newest stored one; a StoreError says what is missing."""
        day = date or self.latest_date()
        if day is None:
            raise StoreError("no digests stored yet (run: newsletter ingest PATH)")
        digest = self.digest(day)
        if digest is None:
            raise StoreError(
                f"no digest stored for {day} (newest: {self.latest_date()}; see: newsletter digests)"
            )
        return digest

    def digest(self, date: dt.date) -> Digest | None:
        """One stored digest, or None."""
        found = self.digests([date])
        return found[0] if found else None

    def first_seen(self, arxiv_ids: Iterable[str] | None = None) -> dict[str, dt.date]:
        """The date each paper first appeared in a digest."""
        rows = self.conn.execute(
            "SELECT arxiv_id, MIN(date) FROM digest_papers GROUP BY arxiv_id"
        ).fetchall()
        wanted = set(arxiv_ids) if arxiv_ids is not None else None
        return {a: dt.date.fromisoformat(d) for a, d in rows if wanted is None or a in wanted}

    def paper_dates(self) -> dict[str, tuple[dt.date, ...]]:
        """Every stored paper's digest dates, oldest first, read without loading any paper."""
        rows = self.conn.execute(
            "SELECT arxiv_id, date FROM digest_papers ORDER BY arxiv_id, date"
        ).fetchall()
        found: dict[str, list[dt.date]] = {}
        for arxiv_id, date in rows:
            found.setdefault(arxiv_id, []).append(dt.date.fromisoformat(date))
        return {k: tuple(v) for k, v in found.items()}

    def digest_hashes(self) -> dict[dt.date, str]:
        """The content hash of every stored digest by date, read without loading any paper."""
        rows = self.conn.execute("SELECT date, content_hash FROM digests").fetchall()
        return {dt.date.fromisoformat(d): h for d, h in rows}

    def dates_sharing_papers(self, dates: Sequence[dt.date]) -> set[dt.date]:
        """Dates of digests listing a paper that one of `dates` lists (`dates` included).

        A paper's text is stored once and the newest ingest wins, so re-ingesting one day can
        change what other days holding the same paper show.
        """
        found: set[dt.date] = set()
        keys = [d.isoformat() for d in dates]
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"""SELECT DISTINCT other.date FROM digest_papers mine
                    JOIN digest_papers other ON other.arxiv_id = mine.arxiv_id
                    WHERE mine.date IN ({marks})""",
                chunk,
            ).fetchall()
            found.update(dt.date.fromisoformat(r[0]) for r in rows)
        return found
