"""The weekly roll-up feeds: one entry per ISO week holding its top papers (pure).

Built on the daily feeds' machinery (`feeds.py`), with the same choices: an entry's id is a
name-based `urn:uuid:` of the list id and the week's name, so it never changes when the site
moves or the week gains a day; a week is published at the start of its first digest's day and
updated at the start of its newest one's; a paper listed on several days of the week shows its
newest day's data and links to that day's archive page. A week still under way is an entry too:
its `updated` moves on with each day, which is how readers learn that it changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup

from ..audience.weeks import Week
from ..links import day_url, paper_url
from ..templates import get_template
from .feeds import (
    FeedInfo,
    FeedKind,
    _generator,
    _rfc3339,
    _write_all,
    clean_paper,
    day_start,
    json_feed,
    name_id,
    paper_anchor,
    paper_html,
    xml_text,
)

# Where the weekly feeds are published, relative to the site root.
WEEKLY_PATHS: Mapping[FeedKind, str] = {
    "rss": "weekly.xml",
    "atom": "weekly.atom",
    "json": "weekly.json",
}


def _entry(
    week: Week, *, count: int, base_url: str, author: str, template_dir: Path | None
) -> dict[str, Any]:
    """What RSS, Atom and JSON Feed say about one week."""
    top = week.top(count)
    papers = [clean_paper(item.paper) for item in top]
    bodies = [
        Markup(
            paper_html(
                paper,
                page_url=f"{day_url(base_url, item.date)}#{paper_anchor(paper)}",
                paper_url=paper_url(base_url, paper.arxiv_id),
                template_dir=template_dir,
            )
        )
        for paper, item in zip(papers, top, strict=True)
    ]
    template = get_template("site/feed_digest.html", user_dir=template_dir)
    return {
        "title": f"{xml_text(author)} {week.name} 주간 ({len(papers)}편)",
        "url": day_url(base_url, week.dates[-1]),
        "content": template.render(entries=list(zip(papers, bodies, strict=True))),
        "published": day_start(week.dates[0]),
        "updated": day_start(week.dates[-1]),
    }


def weekly_feeds(
    weeks: Sequence[Week],
    *,
    info: FeedInfo,
    urls: Mapping[FeedKind, str],
    base_url: str,
    list_id: str,
    count: int,
    template_dir: Path | None = None,
) -> dict[FeedKind, bytes]:
    """Feeds with one entry per week (newest first) listing its `count` top papers in full."""
    ordered = sorted((w for w in weeks if w.dates), key=lambda w: w.monday, reverse=True)
    entries = [
        (
            week,
            _entry(
                week, count=count, base_url=base_url, author=info.author, template_dir=template_dir
            ),
        )
        for week in ordered
    ]
    newest = max([day_start(info.updated), *(e["updated"] for _, e in entries)])
    fg = _generator(info, updated=newest)
    for week, entry in entries:
        fe = fg.add_entry(order="append")
        fe.id(name_id(list_id, "week", week.name))
        fe.title(entry["title"])
        fe.link(href=entry["url"], rel="alternate", type="text/html")
        fe.content(entry["content"], type="html")
        fe.published(entry["published"])
        fe.updated(entry["updated"])
        fe.author({"name": xml_text(info.author)})
    json_feed = None
    if "json" in urls:
        json_feed = _json(entries, info=info, feed_url=urls["json"], list_id=list_id)
    return _write_all(fg, info=info, urls=urls, json_feed=json_feed)


def _json(
    entries: Sequence[tuple[Week, dict[str, Any]]], *, info: FeedInfo, feed_url: str, list_id: str
) -> bytes:
    """JSON Feed 1.1 with one item per week."""
    author = [{"name": xml_text(info.author)}]
    items = [
        {
            "id": name_id(list_id, "week", week.name),
            "url": entry["url"],
            "title": entry["title"],
            "content_html": entry["content"],
            "date_published": _rfc3339(entry["published"]),
            "date_modified": _rfc3339(entry["updated"]),
            "authors": author,
        }
        for week, entry in entries
    ]
    return json_feed(info, feed_url=feed_url, items=items)
