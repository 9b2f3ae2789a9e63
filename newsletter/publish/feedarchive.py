"""The main feed's monthly archive documents (RFC 5005), rendered only when their inputs changed.

`history.py` decides which papers each month holds and how the documents link; this step loads
the digests a changed month needs from the store, renders its RSS and Atom documents and keeps
a record per month (a hash of its inputs and the files' sizes) in the build manifest, so
rebuilding leaves untouched months alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..config import Settings
from ..store import Store
from .feeds import (
    FeedInfo,
    FeedKind,
    first_ranks,
    name_id,
    paper_feeds,
    paper_items,
    xml_text,
)
from .history import archive_key, archive_path, neighbours
from .manifest import StepOutput, file_size, read_section
from .topics import Topic, topic_categories

SECTION = "archives"


def archive_feeds(
    store: Store,
    *,
    settings: Settings,
    topics: Sequence[Topic] = (),
    months: Mapping[str, Sequence[str]],
    paper_dates: Mapping[str, Sequence[dt.date]],
    first_seen: Mapping[str, dt.date],
    hashes: Mapping[dt.date, str],
    out_dir: Path,
    manifest: str,
    fingerprint: str,
    incremental: bool = True,
) -> StepOutput:
    """One archive document per month of `months`: the papers not in the main feed.

    `paper_dates` holds every stored paper's digest dates, oldest first, and `first_seen` the
    first of them. Entries carry the `topics` they match as categories, as in the main feed.
    """
    root = settings.base_url.rstrip("/")
    title = xml_text(settings.site_title)
    histories = neighbours(list(months))
    previous = (
        read_section(out_dir / manifest, SECTION, fingerprint=fingerprint) if incremental else {}
    )
    result = StepOutput()
    for month, ids in months.items():
        key = archive_key(
            month,
            ids,
            history=histories[month],
            paper_dates=paper_dates,
            hashes=hashes,
            fingerprint=fingerprint,
        )
        paths: dict[FeedKind, str] = {
            "rss": archive_path(month, "rss"),
            "atom": archive_path(month, "atom"),
        }
        record = previous.get(month)
        if (
            isinstance(record, dict)
            and record.get("key") == key
            and all(file_size(out_dir / p) == record.get(p) for p in paths.values())
        ):
            result.kept.update(paths.values())
            result.records[month] = record
            continue
        wanted = set(ids)
        dates = sorted({d for i in ids for d in paper_dates.get(i, ())})
        days = store.digests(dates)  # the papers' first days among them
        first_below = first_ranks(ids, first_seen=first_seen, loaded=days, load=store.digests)
        items = [
            item
            for item in paper_items(
                days,
                first_seen=first_seen,
                first_below=first_below,
                base_url=root,
                categories=topic_categories(days, topics),
                template_dir=settings.template_dir,
            )
            if item.paper.arxiv_id in wanted
        ]
        info = FeedInfo(
            title=f"{title} 보관 {month}",
            description=f"{title}: {month}에 처음 소개된 논문",
            home_url=f"{root}/",
            id=name_id(settings.list_id, "archive", month),
            updated=max(first_seen[i] for i in ids),
            author=title,
            history=histories[month],
        )
        found = paper_feeds(
            items, info=info, urls={kind: f"{root}/{path}" for kind, path in paths.items()}
        )
        result.records[month] = {"key": key}
        for kind, path in paths.items():
            result.files[path] = found[kind]
            result.records[month][path] = len(found[kind])
    return result
