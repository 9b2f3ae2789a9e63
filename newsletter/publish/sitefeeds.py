"""The site's public feeds: main, daily, weekly and topic, within their budgets, with history.

Each main, topic and daily feed holds at most `feed_max_entries` entries and `feed_max_bytes`
bytes; the main feed links its RFC 5005 monthly archives (written by `feedarchive`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..audience.match import PreparedDigest
from ..audience.weeks import week_name, weeks_of
from ..config import Settings
from ..model import Digest, Filters
from ..store import Store
from .archive import FeedLink
from .budget import fit_entries
from .feeds import (
    FeedInfo,
    FeedItem,
    FeedKind,
    digest_feeds,
    first_ranks,
    name_id,
    paper_feeds,
    paper_items,
    xml_text,
)
from .history import FeedHistory, archive_months
from .topics import Topic, topic_categories
from .weekly import WEEKLY_PATHS, weekly_feeds


def public_feeds(settings: Settings, topics: Sequence[Topic]) -> tuple[FeedLink, ...]:
    title = xml_text(settings.site_title)
    links = [
        FeedLink("rss.xml", "application/rss+xml", f"{title} (RSS)", "RSS"),
        FeedLink("atom.xml", "application/atom+xml", f"{title} (Atom)", "Atom"),
        FeedLink("feed.json", "application/feed+json", f"{title} (JSON Feed)", "JSON Feed"),
        FeedLink("digests.xml", "application/rss+xml", f"{title} 일별 (RSS)", "일별 RSS"),
        FeedLink("digests.atom", "application/atom+xml", f"{title} 일별 (Atom)", "일별 Atom"),
        FeedLink("weekly.xml", "application/rss+xml", f"{title} 주간 (RSS)", "주간 RSS"),
        FeedLink("weekly.atom", "application/atom+xml", f"{title} 주간 (Atom)", "주간 Atom"),
        FeedLink("weekly.json", "application/feed+json", f"{title} 주간 (JSON Feed)", "주간 JSON"),
    ]
    for t in topics:
        name = xml_text(t.name)
        links.append(
            FeedLink(
                f"topics/{t.slug}.xml",
                "application/rss+xml",
                f"{title}: {name} (RSS)",
                f"{name} RSS",
            )
        )
        links.append(
            FeedLink(
                f"topics/{t.slug}.atom",
                "application/atom+xml",
                f"{title}: {name} (Atom)",
                f"{name} Atom",
            )
        )
    return tuple(links)


def site_feeds(
    store: Store,
    *,
    settings: Settings,
    topics: Sequence[Topic],
    window: Sequence[Digest],
    stored_days: int,
    first_seen: Mapping[str, dt.date],
) -> tuple[dict[str, bytes], dict[str, tuple[str, ...]]]:
    """The main, daily, weekly and topic feeds over the newest `feed_days` digests.

    `first_seen` is the day every stored paper first appeared. Returns the feeds' files and the
    papers the main feed does not hold by month (`archive_months`): the archive documents'.
    """
    files: dict[str, bytes] = {}
    root = settings.base_url.rstrip("/")
    newest = max(d.date for d in window)
    # Normalise each day's text once for all the topic selections below.
    prepared = [PreparedDigest(d) for d in window] if topics else []
    tags = topic_categories(prepared, topics)
    title = xml_text(settings.site_title)
    first_below = first_ranks(
        {p.arxiv_id for d in window for p in d.papers},
        first_seen=first_seen,
        loaded=window,
        load=store.digests,
    )

    def select(filters: Filters | None) -> list[FeedItem]:
        return paper_items(
            window if filters is None else prepared,
            first_seen=first_seen,
            first_below=first_below,
            base_url=root,
            filters=filters,
            categories=tags,
            template_dir=settings.template_dir,
        )

    def info(
        name: str, description: str, *parts: str, history: FeedHistory | None = None
    ) -> FeedInfo:
        return FeedInfo(
            title=name,
            description=description,
            home_url=f"{root}/",
            id=name_id(settings.list_id, *parts),
            updated=newest,
            author=title,
            history=history,
            hub=settings.websub_hub,
        )

    def publish(
        paths: Mapping[FeedKind, str],
        make: Callable[..., Mapping[FeedKind, bytes]],
        entries: Sequence[Any],
        feed: FeedInfo,
    ) -> int:
        """Write the feeds of as many leading `entries` as the budget allows; how many."""
        urls = {kind: f"{root}/{path}" for kind, path in paths.items()}
        count, found = fit_entries(
            entries,
            lambda chosen: make(chosen, urls=urls, info=feed),
            max_entries=settings.feed_max_entries,
            max_bytes=settings.feed_max_bytes,
        )
        if count < len(entries) and feed.history is not None and feed.history.complete:
            # The budget dropped entries, so the feed no longer holds everything.
            found = make(entries[:count], urls=urls, info=replace(feed, history=None))
        for kind, path in paths.items():
            files[path] = found[kind]
        return count

    # A feed over every stored day holds everything (RFC 5005 complete) unless the budget cuts it.
    whole = FeedHistory(complete=True) if len(window) >= stored_days else None
    about = f"{title}: 매일 추천이 많은 AI 논문과 한국어 요약"
    papers = select(None)
    main: dict[FeedKind, str] = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}
    # Fitted with a stand-in prev-archive link as long as the real one, then written for real.
    stand_in = info(title, about, "papers", history=FeedHistory(prev="0000-00"))
    count = publish(main, paper_feeds, papers, stand_in)
    current = frozenset(item.paper.arxiv_id for item in papers[:count])
    months = archive_months(first_seen, current)
    history = FeedHistory(prev=max(months)) if months else FeedHistory(complete=True)
    publish(main, paper_feeds, papers[:count], replace(stand_in, history=history))
    publish(
        {"rss": "digests.xml", "atom": "digests.atom"},
        functools.partial(
            digest_feeds,
            base_url=root,
            list_id=settings.list_id,
            template_dir=settings.template_dir,
        ),
        sorted(window, key=lambda d: d.date, reverse=True),
        info(f"{title} 일별", f"{title}: 하루에 한 항목", "digests", history=whole),
    )
    # Whole weeks: the window's oldest week also gets the days before the window began.
    week_names = {week_name(d.date) for d in window}
    extra = [d for d in store.digest_dates() if week_name(d) in week_names]
    have = {d.date: d for d in window}
    week_digests = [*window, *store.digests([d for d in extra if d not in have])]
    publish(
        WEEKLY_PATHS,
        functools.partial(
            weekly_feeds,
            base_url=root,
            list_id=settings.list_id,
            count=settings.weekly_papers,
            template_dir=settings.template_dir,
        ),
        sorted(weeks_of(week_digests), key=lambda w: w.monday, reverse=True),
        info(f"{title} 주간", f"{title}: 한 주에 한 항목, 추천이 많은 논문", "weekly"),
    )
    for topic in topics:
        name = xml_text(topic.name)
        about_topic = f"{title}: {name} ({'; '.join(topic.keywords)})"
        publish(
            {"rss": f"topics/{topic.slug}.xml", "atom": f"topics/{topic.slug}.atom"},
            paper_feeds,
            select(Filters(keywords=topic.keywords)),
            info(f"{title}: {name}", about_topic, "topic", topic.slug, history=whole),
        )
    return files, months
