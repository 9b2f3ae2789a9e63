"""`sitemap.xml` and `robots.txt` for the public pages (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from ..links import PRIVATE_DIR


def sitemap(pages: Iterable[tuple[str, dt.date | None]], *, base_url: str) -> bytes:
    """A sitemap of `pages` (path relative to the site root, last change or None), in order."""
    root = base_url.rstrip("/")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
    ]
    for path, changed in pages:
        lastmod = f"<lastmod>{changed.isoformat()}</lastmod>" if changed else ""
        lines.append(f"<url><loc>{escape(f'{root}/{path}')}</loc>{lastmod}</url>")
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode()


def robots(*, base_url: str) -> bytes:
    """robots.txt: everything but the private feeds, and where the sitemap is."""
    prefix = urlsplit(base_url).path.rstrip("/")
    text = (
        "User-agent: *\n"
        f"Disallow: {prefix}/{PRIVATE_DIR}\n"
        f"Sitemap: {base_url.rstrip('/')}/sitemap.xml\n"
    )
    return text.encode()
