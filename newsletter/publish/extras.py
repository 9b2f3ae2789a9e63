"""The site's small fixed files: sitemap, robots.txt, the search page, the OPML list, feeds.html."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from ..links import page_name, paper_page_name
from .archive import SiteInfo
from .search import search_page
from .sitemap import robots, sitemap
from .subscribe import OPML, opml, subscribe_page


def site_extras(
    site: SiteInfo,
    *,
    hashes: Mapping[dt.date, str],
    paper_dates: Mapping[str, Sequence[dt.date]],
) -> dict[str, bytes]:
    """The fixed files by path; pages listed in the sitemap: the index, days and papers."""
    pages: list[tuple[str, dt.date | None]] = [("", max(hashes))]
    pages += [(page_name(d), d) for d in sorted(hashes, reverse=True)]
    pages += [(paper_page_name(a), max(ds)) for a, ds in sorted(paper_dates.items())]
    return {
        "sitemap.xml": sitemap(pages, base_url=site.base_url),
        "robots.txt": robots(base_url=site.base_url),
        **search_page(site),
        OPML: opml(site.feeds, site=site),
        "feeds.html": subscribe_page(site),
    }
