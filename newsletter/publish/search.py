"""The search page: `search.html` and its script, which query the Pagefind index of paper pages.

What is indexed is declared in the paper page itself (templates/site/paper.html): the article's
text, `data-pagefind-filter` (month, topic), `data-pagefind-sort` (votes, date),
`data-pagefind-meta` and the extra Korean terms of `korean.py`.
"""

from __future__ import annotations

from ..templates import template_environment
from .archive import SiteInfo, render_page


def search_page(site: SiteInfo) -> dict[str, bytes]:
    """`search.html` and its script `search.js` (a template folder may override both)."""
    env = template_environment(site.template_dir)
    assert env.loader is not None
    script, _, _ = env.loader.get_source(env, "site/search.js")
    return {
        "search.html": render_page("site/search.html", site, "search.html"),
        "search.js": script.encode("utf-8"),
    }
