"""`newsletter build`: every feed and archive page, computed from the store, written only if changed.

Output layout (relative to the site folder; every link is `base_url` + path):

    index.html, YYYY-MM-DD.html            the archive
    rss.xml, atom.xml, feed.json           one entry per paper, latest `feed_days` digests
    digests.xml, digests.atom              one entry per day
    weekly.xml, weekly.atom, weekly.json   one entry per ISO week: its `weekly_papers` top papers
    topics/<slug>.xml, topics/<slug>.atom  one pair per configured topic
    NAME.gz                                gzip of every file above GZIP_MIN_BYTES, for `serve`
    archive/YYYY-MM.xml, .atom             the main feed's RFC 5005 monthly archives
    papers/<arxiv_id>.html                 one page per stored paper (paperpages.py)
    sitemap.xml, robots.txt                public pages; private feeds disallowed
    search.html, search.js                 the search page (the index: searchindex.py, by the CLI)
    feeds.opml, feeds.html                 every public feed, to import or to subscribe

Each main, topic and daily feed holds at most `feed_max_entries` entries and `feed_max_bytes`
bytes; every stored paper not in the main feed is in one monthly archive document.

Private feeds (`feeds/<token>.xml`) are not files: `newsletter serve` assembles each one on
request (publish/private.py). A build removes the ones an older build wrote.

Feeds cover only the newest days and are always recomputed. Day pages are many and rarely
change, so a small manifest in the output folder (`.newsletter-build.json`) records what each
page was rendered from (the digest's content hash, its neighbours, a fingerprint of templates,
code and settings); a rebuild renders only pages whose inputs changed.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import ConfigError, StoreError
from ..links import PRIVATE_DIR as PRIVATE_DIR  # cli/build.py names it from here
from ..links import page_name
from ..model import Digest
from ..store import Store
from .archive import (
    DaySummary,
    SiteInfo,
    TopPaper,
    render_day,
    render_index,
    site_fingerprint,
    summarize,
)
from .extras import site_extras
from .feedarchive import SECTION as ARCHIVE_SECTION
from .feedarchive import archive_feeds
from .feeds import (
    xml_text,
)
from .files import WRITERS, leftovers, write_changed
from .manifest import StepOutput, file_size, read_section
from .paperpages import SECTION as PAPER_SECTION
from .paperpages import paper_pages
from .searchindex import mark_stale
from .sitefeeds import public_feeds, site_feeds
from .topics import topics_from

MANIFEST = ".newsletter-build.json"
DAYS_SECTION = "days"  # the manifest's records of day pages
GZIP_MIN_BYTES = 32 * 1024  # larger files get a NAME.gz sibling that `serve` sends as it is
_PRIVATE_FEED = re.compile(r"feeds/([0-9a-f]+\.xml|index\.html)")
# Files a build owns besides its fixed names; any of these it did not produce is stale. The
# private feeds older builds wrote are always stale: `serve` answers for them now.
_OWNED = re.compile(
    r"(\d{4}-\d{2}-\d{2}\.html|topics/[^/]+\.(xml|atom)|feeds/([0-9a-f]+\.xml|index\.html)"
    r"|archive/\d{4}-\d{2}\.(xml|atom)|papers/[^/]+\.html)"
    r"(\.gz)?"
)
_LOAD_CHUNK = 100  # days loaded from the store at once when many pages need rendering


def is_private_feed(path: str) -> bool:
    """Whether an output path is a private feed an older build wrote (its name is a secret)."""
    return _PRIVATE_FEED.fullmatch(path) is not None


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What a build did to each file (paths relative to `out_dir`)."""

    out_dir: Path
    written: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()


@dataclass
class SitePlan:
    """The outputs of a build before anything is written."""

    files: dict[str, bytes] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)  # pages and feeds the manifest vouches for
    manifest: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def absorb(self, section: str, found: StepOutput, *, fingerprint: str) -> None:
        """Take an incremental step's files and record its manifest section."""
        self.files.update(found.files)
        self.kept |= found.kept
        self.manifest[section] = found.section(fingerprint)


def _summary_from(record: Any) -> DaySummary | None:
    try:
        top = tuple(TopPaper(str(a), str(t), v) for a, t, v in record["summary"]["top"])
        return DaySummary(
            dt.date.fromisoformat(record["date"]), int(record["summary"]["count"]), top
        )
    except (KeyError, TypeError, ValueError):
        return None


def _load(store: Store, dates: Iterable[dt.date]) -> Iterable[Digest]:
    ordered = sorted(dates)
    for start in range(0, len(ordered), _LOAD_CHUNK):
        yield from store.digests(ordered[start : start + _LOAD_CHUNK])


def _archive(
    store: Store,
    *,
    site: SiteInfo,
    out_dir: Path,
    hashes: Mapping[dt.date, str],
    incremental: bool,
    window: Mapping[dt.date, Digest],
    fingerprint: str,
) -> StepOutput:
    """Day pages whose inputs changed, the index, and the records describing the pages."""
    previous = (
        read_section(out_dir / MANIFEST, DAYS_SECTION, fingerprint=fingerprint)
        if incremental
        else {}
    )
    result = StepOutput()
    ordered = sorted(hashes)
    neighbours = {
        d: (ordered[i - 1] if i else None, ordered[i + 1] if i + 1 < len(ordered) else None)
        for i, d in enumerate(ordered)
    }

    def inputs(d: dt.date) -> dict[str, Any]:
        prev, nxt = neighbours[d]
        return {
            "hash": hashes[d],
            "prev": prev and prev.isoformat(),
            "next": nxt and nxt.isoformat(),
        }

    def recorded(d: dt.date) -> dict[str, Any]:
        record = previous.get(d.isoformat())
        return record if isinstance(record, dict) else {}

    changed = [d for d in ordered if recorded(d).get("hash") != hashes[d]]
    dirty = set(changed)
    if previous and changed:
        # A re-ingested day may have rewritten papers that other days list too.
        dirty |= store.dates_sharing_papers(changed)
    summaries: dict[dt.date, DaySummary] = {}
    for d in ordered:
        record = recorded(d)
        summary = _summary_from({**record, "date": d.isoformat()})
        if (
            d in dirty
            or summary is None
            or any(record.get(k) != v for k, v in inputs(d).items())
            or file_size(out_dir / page_name(d)) != record.get("size")
        ):
            dirty.add(d)
            continue
        summaries[d] = summary
        result.records[d.isoformat()] = record
        result.kept.add(page_name(d))
    loaded = [window[d] for d in dirty if d in window]
    for digest in itertools.chain(loaded, _load(store, dirty - window.keys())):
        d = digest.date
        prev, nxt = neighbours[d]
        page = render_day(digest, site=site, previous=prev, following=nxt)
        result.files[page_name(d)] = page
        summary = summarize(digest)
        summaries[d] = summary
        result.records[d.isoformat()] = {
            **inputs(d),
            "size": len(page),
            "summary": {
                "count": summary.count,
                "top": [[p.arxiv_id, p.title, p.votes] for p in summary.top],
            },
        }
    result.files["index.html"] = render_index(list(summaries.values()), site=site)
    return result


def plan_site(
    store: Store, *, settings: Settings, out_dir: Path, incremental: bool = True
) -> SitePlan:
    """Compute every output file; with `incremental`, skip day pages the manifest vouches for."""
    hashes = store.digest_hashes()
    if not hashes:
        raise StoreError(f"{settings.db}: no digests stored yet (run: newsletter ingest PATH)")
    topics = topics_from(settings.topics)
    site = SiteInfo(
        title=xml_text(settings.site_title),
        base_url=settings.base_url,
        feeds=public_feeds(settings, topics),
        template_dir=settings.template_dir,
    )
    plan = SitePlan()
    # Every step keeps its records under this (and its own settings): see site_fingerprint.
    shared = site_fingerprint(site)
    window = store.digests(store.digest_dates(limit=settings.feed_days))
    days = _archive(
        store,
        site=site,
        out_dir=out_dir,
        hashes=hashes,
        incremental=incremental,
        window={d.date: d for d in window},
        fingerprint=shared,
    )
    plan.absorb(DAYS_SECTION, days, fingerprint=shared)
    paper_dates = store.paper_dates()  # every stored paper's days: read once for every step
    first_seen = {arxiv_id: dates[0] for arxiv_id, dates in paper_dates.items()}
    feed_files, months = site_feeds(
        store,
        settings=settings,
        topics=topics,
        window=window,
        stored_days=len(hashes),
        first_seen=first_seen,
    )
    plan.files.update(feed_files)
    # The steps below keep their own manifest sections, each under its own fingerprint.
    archives = f"{shared}:{settings.list_id}:{topics!r}"
    found = archive_feeds(
        store,
        settings=settings,
        topics=topics,
        months=months,
        paper_dates=paper_dates,
        first_seen=first_seen,
        hashes=hashes,
        out_dir=out_dir,
        manifest=MANIFEST,
        fingerprint=archives,
        incremental=incremental,
    )
    plan.absorb(ARCHIVE_SECTION, found, fingerprint=archives)
    papers = f"{shared}:{topics!r}"
    pages = paper_pages(
        store,
        site=site,
        topics=topics,
        hashes=hashes,
        paper_dates=paper_dates,
        out_dir=out_dir,
        manifest=MANIFEST,
        fingerprint=papers,
        incremental=incremental,
    )
    plan.absorb(PAPER_SECTION, pages, fingerprint=papers)
    plan.files.update(site_extras(site, hashes=hashes, paper_dates=paper_dates))
    return plan


def _listing(out_dir: Path) -> set[str]:
    """The files (as site paths) in the folders a build owns: one directory read each, no stat."""
    found: set[str] = set()
    for sub in ("", "topics/", PRIVATE_DIR, "archive/", "papers/"):
        try:
            with os.scandir(out_dir / sub) as entries:
                found.update(sub + e.name for e in entries if e.is_file(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return found


def _stale(listing: set[str], produced: set[str], kept: set[str]) -> list[str]:
    """Files of kinds a build owns (in `listing`) that this build neither produced nor kept.

    A `NAME.gz` is stale when NAME is (or was just written too small for a sibling); a kept
    day page keeps its sibling, written with it by an earlier build.
    """
    stale = []
    for name in listing - produced - kept:
        base = name.removesuffix(".gz")
        if base != name and base in kept:
            continue
        if _OWNED.fullmatch(name) or (base != name and base in produced):
            stale.append(name)
    return sorted(stale)


def gzip_siblings(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """`NAME.gz` for each file above GZIP_MIN_BYTES: the same bytes gzipped, deterministically."""
    large = [name for name in files if len(files[name]) > GZIP_MIN_BYTES]

    def pack(name: str) -> bytes:
        # mtime=0 and no file name: the same content always gives the same .gz bytes.
        return gzip.compress(files[name], compresslevel=9, mtime=0)

    # zlib releases the GIL: threads compress the big feeds side by side.
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        return {f"{name}.gz": data for name, data in zip(large, pool.map(pack, large), strict=True)}


def write_site(out_dir: Path, plan: SitePlan) -> BuildReport:
    """Write the planned files that changed (and gzip siblings), delete stale ones, and report."""
    planned = {name: plan.files[name] for name in sorted(plan.files)}
    # After their files: renamed into place later, a sibling is never older than its file.
    planned.update(gzip_siblings(planned))
    names = list(planned)
    removed: list[str] = []
    # Compact, so json uses its C encoder: the manifest is read by builds, not people.
    manifest = json.dumps(plan.manifest, ensure_ascii=False, separators=(",", ":"))
    files = {**planned, MANIFEST: (manifest + "\n").encode()}
    try:
        for folder in {(out_dir / name).parent for name in names} | {out_dir}:
            folder.mkdir(parents=True, exist_ok=True)
        # The search index no longer matches the pages: noted before the first file changes,
        # so a build killed among its renames leaves the note for the next run.
        written = write_changed(out_dir, files, before_changing=lambda: mark_stale(out_dir))
        listing = _listing(out_dir)
        stale = _stale(listing, set(planned), plan.kept)
        if stale and not written:
            mark_stale(out_dir)
        for name in stale:
            (out_dir / name).unlink()
            removed.append(name)
        for name in leftovers(listing):  # of a build killed outright: its process is gone
            (out_dir / name).unlink(missing_ok=True)
        kept_siblings = {f"{k}.gz" for k in plan.kept if f"{k}.gz" in listing}
        private = out_dir / PRIVATE_DIR
        if any(map(is_private_feed, removed)) and not any(private.iterdir()):
            private.rmdir()  # emptied of the private feeds an older build wrote
    except OSError as exc:
        # A rename names its target second: say which file could not be put in place.
        what = f"{exc.filename2}: {exc.strerror}" if exc.filename2 else exc.strerror or exc
        raise ConfigError(f"{out_dir}: cannot write the site: {what}") from None
    return BuildReport(
        out_dir=out_dir,
        written=tuple(name for name in names if name in written),
        unchanged=tuple(
            sorted({*plan.kept, *kept_siblings, *(name for name in names if name not in written)})
        ),
        removed=tuple(removed),
        notices=tuple(plan.notices),
    )


def build_site(
    store: Store, *, settings: Settings, out_dir: Path | None = None, incremental: bool = True
) -> BuildReport:
    """Build the archive and every feed into `out_dir` (default: settings.site_dir)."""
    target = out_dir if out_dir is not None else settings.site_dir
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a folder")
    plan = plan_site(store, settings=settings, out_dir=target, incremental=incremental)
    return write_site(target, plan)
