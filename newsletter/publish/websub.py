"""WebSub: the public feeds name a hub (`rel="hub"`), and a build can tell the hub what changed.

A WebSub hub (W3C Recommendation) pushes new entries to subscribers as soon as it hears that a
feed changed, instead of readers polling. The feeds carry `<link rel="hub">` next to
`rel="self"`; `newsletter build --ping` then POSTs `hub.mode=publish` with each changed feed's
URL to the hub (the convention of public hubs such as Google's and Superfeedr's).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from ..errors import ConfigError
from ..links import PRIVATE_DIR
from .history import ARCHIVE_DIR, ATOM

TIMEOUT = 10.0  # seconds per hub request


class HubExtension:
    """feedgen feed extension writing `<link rel="hub">` (set `hub` first)."""

    def __init__(self) -> None:
        self.hub = ""

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, feed: Any) -> Any:
        # feedgen declares Atom's namespace as a plain xmlns attribute: its elements are unprefixed.
        feed.append(feed.makeelement("link", {"rel": "hub", "href": self.hub}))
        return feed

    def extend_rss(self, rss: Any) -> Any:
        channel = rss.find("channel")
        channel.append(channel.makeelement(f"{{{ATOM}}}link", {"rel": "hub", "href": self.hub}))
        return rss


def ping(hub: str, feed_urls: Iterable[str], *, timeout: float = TIMEOUT) -> int:
    """Tell `hub` that each of `feed_urls` changed; how many it accepted. ConfigError on refusal."""
    urls = list(feed_urls)
    for url in urls:
        body = urlencode({"hub.mode": "publish", "hub.url": url}).encode()
        request = urllib.request.Request(
            hub,
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise ConfigError(f"WebSub hub {hub} refused {url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"WebSub hub {hub} unreachable: {reason}") from None
        if not 200 <= status < 300:
            raise ConfigError(f"WebSub hub {hub} refused {url}: HTTP {status}")
    return len(urls)


def pinged_feeds(written: Iterable[str]) -> list[str]:
    """The written files that are public RSS or Atom feeds naming the hub (paths, in order)."""
    return [
        path
        for path in written
        if path.endswith((".xml", ".atom"))
        and not path.startswith((PRIVATE_DIR, ARCHIVE_DIR))  # private feeds, stable archives
        and path != "sitemap.xml"
    ]
