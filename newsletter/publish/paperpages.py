"""Paper pages for a build: only those whose inputs changed are loaded and rendered.

A paper page depends on the digests that list the paper (their content hashes), the topic
configuration and the templates. The manifest keeps, per paper, a hash of those inputs and the
page's size; a rebuild renders a page only when that hash or the file on disk differs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ..links import paper_page_name
from ..model import Digest
from ..store import Store
from .archive import SiteInfo
from .manifest import StepOutput, file_size, read_section
from .papers import paper_key, paper_records, render_paper
from .topics import Topic, topic_categories

SECTION = "papers"
BATCH = 500  # papers rendered per load from the store, bounding memory on a first build


def paper_pages(
    store: Store,
    *,
    site: SiteInfo,
    topics: Sequence[Topic],
    hashes: Mapping[dt.date, str],
    paper_dates: Mapping[str, Sequence[dt.date]],
    out_dir: Path,
    manifest: str,
    fingerprint: str,
    incremental: bool = True,
) -> StepOutput:
    """Every stored paper's page; unchanged ones are kept as they are on disk."""
    previous = (
        read_section(out_dir / manifest, SECTION, fingerprint=fingerprint) if incremental else {}
    )
    result = StepOutput()
    dirty: list[str] = []
    keys: dict[str, str] = {}
    for arxiv_id, dates in sorted(paper_dates.items()):
        key = paper_key(arxiv_id, dates, hashes=hashes, fingerprint=fingerprint)
        keys[arxiv_id] = key
        path = paper_page_name(arxiv_id)
        record = previous.get(arxiv_id)
        if (
            isinstance(record, dict)
            and record.get("key") == key
            and file_size(out_dir / path) == record.get("size")
        ):
            result.kept.add(path)
            result.records[arxiv_id] = record
        else:
            dirty.append(arxiv_id)
    for start in range(0, len(dirty), BATCH):
        batch = set(dirty[start : start + BATCH])
        dates = sorted({d for i in batch for d in paper_dates[i]})
        loaded = paper_records(store.digests(dates))
        wanted = {k: r for k, r in loaded.items() if k in batch}
        # As the topic feeds match them: on each paper's newest data.
        newest = Digest(date=dt.date.min, papers=tuple(r.paper for r in wanted.values()))
        matched = topic_categories([newest], topics)
        for arxiv_id, record in wanted.items():
            record = replace(record, topics=matched.get(arxiv_id, ()))
            page = render_paper(record, site=site)
            result.files[paper_page_name(arxiv_id)] = page
            result.records[arxiv_id] = {"key": keys[arxiv_id], "size": len(page)}
    return result
