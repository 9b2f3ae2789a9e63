"""Every URL the product publishes: a day's archive page, a paper on arXiv, a safe outside link."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

# Spaces and controls make a URL unusable (and are how a header or markup injection starts);
# surrogates and noncharacters are not allowed in XML or HTML.
_BAD_URL = re.compile("[\\s\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
_HOST = re.compile(r"[^/?#\[\]@]+(?::\d*)?")  # a host name (no IP literal) and optional port
# Private feeds, `feeds/<token>.xml`: `serve` answers them and their names are secrets, so
# robots.txt keeps crawlers out, WebSub is never told of them, and a build removes old copies.
PRIVATE_DIR = "feeds/"


def web_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL with a host and no unsafe character, else None."""
    if not url or _BAD_URL.search(url):
        return None
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return url if _HOST.fullmatch(authority.rpartition("@")[2]) else None


def arxiv_url(arxiv_id: str) -> str:
    """The arXiv abstract page of `arxiv_id`: also the permanent id of its feed entry."""
    return f"https://arxiv.org/abs/{quote(arxiv_id, safe='./')}"


def page_name(date: dt.date) -> str:
    """The archive page of a day, relative to the site root: `YYYY-MM-DD.html`."""
    return f"{date.isoformat()}.html"


def day_url(base_url: str, date: dt.date) -> str:
    """The absolute URL of a day's archive page under `base_url`."""
    return f"{base_url.rstrip('/')}/{page_name(date)}"


def paper_page_name(arxiv_id: str) -> str:
    """A paper's own page, relative to the site root: `papers/<arxiv_id>.html`.

    Old-style ids (`hep-th/9901001`) hold a slash, which becomes `_` in the file name.
    """
    return f"papers/{arxiv_id.replace('/', '_')}.html"


def paper_url(base_url: str, arxiv_id: str) -> str:
    """The absolute URL of a paper's own page under `base_url`."""
    return f"{base_url.rstrip('/')}/{paper_page_name(arxiv_id)}"


def arxiv_pdf_url(arxiv_id: str) -> str:
    """The PDF of `arxiv_id` on arXiv."""
    return f"https://arxiv.org/pdf/{quote(arxiv_id, safe='./')}"


def hf_paper_url(arxiv_id: str) -> str:
    """The paper's page on Hugging Face Papers."""
    return f"https://huggingface.co/papers/{quote(arxiv_id, safe='./')}"
