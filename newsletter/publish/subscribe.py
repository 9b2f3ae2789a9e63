"""Ways to subscribe: `feeds.opml` with every public feed and `feeds.html` (pure).

The OPML file (OPML 2.0, a subscription list) lets a reader import every public feed at once;
the page lists each feed with its address to copy and links that open it in common readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from .archive import FeedLink, SiteInfo, render_page

OPML = "feeds.opml"


@dataclass(frozen=True, slots=True)
class Reader:
    """A feed reader that subscribes from a link: its name and URL with `{url}` for the feed."""

    name: str
    template: str

    def link(self, feed_url: str) -> str:
        return self.template.format(url=quote(feed_url, safe=""))


READERS = (
    Reader("Feedly", "https://feedly.com/i/subscription/feed/{url}"),
    Reader("Inoreader", "https://www.inoreader.com/?add_feed={url}"),
    Reader("NewsBlur", "https://www.newsblur.com/?url={url}"),
    Reader("The Old Reader", "https://theoldreader.com/feeds/subscribe?url={url}"),
)


def opml(feeds: Sequence[FeedLink], *, site: SiteInfo) -> bytes:
    """An OPML 2.0 subscription list of `feeds` (RSS and Atom; JSON Feed readers take the URL)."""
    root = site.base_url.rstrip("/")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "<head>",
        f"<title>{escape(site.title)}</title>",
        "</head>",
        "<body>",
    ]
    for feed in feeds:
        kind = "rss"  # OPML's type for every syndication feed, Atom included
        lines.append(
            f"<outline type={quoteattr(kind)} text={quoteattr(feed.title)}"
            f" title={quoteattr(feed.title)} xmlUrl={quoteattr(f'{root}/{feed.href}')}"
            f" htmlUrl={quoteattr(f'{root}/')}/>"
        )
    lines += ["</body>", "</opml>"]
    return ("\n".join(lines) + "\n").encode()


def subscribe_page(site: SiteInfo) -> bytes:
    """`feeds.html`: every public feed with its address and links for common readers."""
    root = site.base_url.rstrip("/")
    feeds = [
        {
            "title": feed.title,
            "href": feed.href,
            "type": feed.type,
            "url": f"{root}/{feed.href}",
            "readers": [(r.name, r.link(f"{root}/{feed.href}")) for r in READERS],
        }
        for feed in site.feeds
    ]
    return render_page("site/subscribe.html", site, "feeds.html", feeds=feeds, opml=OPML)
