"""Emails of templates that do not split into cards: each selection rendered whole, once.

A user template may number its cards itself or style the first one apart (`day.DayEmail`
then refuses to split it). Such a template is rendered once per distinct selection with
markers where personal values go (`Layout`), and each subscriber's email is that render with
their values filled in. That reads exactly like a render of their own unless

- the template computes with a personal value instead of printing it (`email.split('@')`):
  found once per selection by rendering a sample reader and comparing; or
- the size budget is close: the markers are not as long as a reader's own values, so the
  number of cards that fit may differ. A selection the budget cut, or a reader whose own
  values would take it past the budget, is rendered whole for that reader.

In those cases (`Layout.fits` says no) the reader's email is rendered for them alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from markupsafe import escape

from ..audience.match import Pick
from ..config import Settings
from ..model import Digest, Filters
from .render import (
    HTML_BUDGET,
    Personal,
    RenderedEmail,
    papers_per_email,
    render_email,
)
from .splice import SplicedBody

CRLF = "\r\n"

# A reader the check renders: values of ordinary shapes, not the markers' (an @, dots).
_SAMPLE = Personal(
    greeting="Ann님, 안녕하세요.",
    email="ann.lee@example.com",
    unsubscribe_url="https://papers.example.com/u/MTc.sample",
    preferences_url="https://papers.example.com/p/MTc.sample",
    feed_url="https://papers.example.com/feeds/0123456789abcdef.xml",
)


def canonical_body(text: str) -> str:
    """A body as the stdlib encodes it: CRLF line endings and a final line break."""
    # Bytes split only at CR and LF, as `email.contentmanager` does (str.splitlines does more).
    return CRLF.join(line.decode() for line in text.encode().splitlines()) + CRLF


@dataclass(frozen=True, slots=True)
class Layout:
    """One selection rendered whole, waiting for personal values."""

    rendered: RenderedEmail
    boundary: str
    html: SplicedBody
    text: SplicedBody
    nbytes: int
    # What fitting a reader's values needs: the budget did not cut this render, the
    # template only prints personal values, and how often each appears in the HTML.
    uncut: bool
    prints_only: bool
    html_size: int
    counts: Mapping[str, int]
    marker_sizes: Mapping[str, int]

    def fits(self, html_values: Mapping[str, bytes]) -> bool:
        """Whether filling in these (escaped, UTF-8) values gives the reader's own render."""
        if not (self.uncut and self.prints_only):
            return False
        size = self.html_size + sum(
            count * (len(html_values[name]) - self.marker_sizes[name])
            for name, count in self.counts.items()
        )
        return size <= HTML_BUDGET


def boundary_of(html_body: str, text_body: str) -> str:
    """A MIME boundary from the content only: a resend is byte-identical. Base64 lines never
    hold "=_", so it cannot occur in a body."""
    digest = hashlib.sha256(f"{html_body}\0{text_body}".encode()).hexdigest()
    return f"=_nl_{digest[:28]}"


def build_layout(
    *,
    settings: Settings,
    digest: Digest,
    picks: tuple[Pick, ...],
    filters: Filters,
    markers: Mapping[str, str],
    template_dir: Path | None,
    weekly: bool,
) -> Layout:
    """The selection rendered with `markers` (personal field -> its marker) in the holes."""

    def render(personal: Personal, limit: int | None = None) -> RenderedEmail:
        return render_email(
            settings=settings,
            digest=digest,
            picks=picks,
            filters=filters,
            personal=personal,
            template_dir=template_dir,
            limit=limit,
            weekly=weekly,
        )

    rendered = render(Personal(**markers))
    holes = {marker: name for name, marker in markers.items()}
    html_body = canonical_body(rendered.html)
    text_body = canonical_body(rendered.text)
    # The sample reader's own render, with as many cards, must read like the filled one.
    sample = render(_SAMPLE, limit=rendered.shown)
    filled_html, filled_text = html_body, text_body
    for name, marker in markers.items():
        value = getattr(_SAMPLE, name)
        filled_html = filled_html.replace(marker, str(escape(value)))
        filled_text = filled_text.replace(marker, value)
    prints_only = (filled_html, filled_text) == (
        canonical_body(sample.html),
        canonical_body(sample.text),
    )
    # The boundary names the content, not the random markers.
    named_html, named_text = html_body, text_body
    for name, marker in markers.items():
        named_html = named_html.replace(marker, name)
        named_text = named_text.replace(marker, name)
    html = SplicedBody(html_body, holes)
    text = SplicedBody(text_body, holes)
    cap = papers_per_email(settings=settings, max_papers=filters.max_papers)
    return Layout(
        rendered=rendered,
        boundary=boundary_of(named_html, named_text),
        html=html,
        text=text,
        nbytes=html.nbytes + text.nbytes,
        uncut=rendered.shown == min(rendered.total, cap),
        prints_only=prints_only,
        html_size=len(rendered.html.encode()),
        counts={name: rendered.html.count(marker) for name, marker in markers.items()},
        marker_sizes={name: len(marker.encode()) for name, marker in markers.items()},
    )


def own_render(
    *,
    settings: Settings,
    digest: Digest,
    picks: tuple[Pick, ...],
    filters: Filters,
    personal: Personal,
    template_dir: Path | None,
    weekly: bool,
) -> tuple[RenderedEmail, str, SplicedBody, SplicedBody]:
    """One reader's email rendered for them alone: the render, its boundary and bodies."""
    rendered = render_email(
        settings=settings,
        digest=digest,
        picks=picks,
        filters=filters,
        personal=personal,
        template_dir=template_dir,
        weekly=weekly,
    )
    html_body = canonical_body(rendered.html)
    text_body = canonical_body(rendered.text)
    return (
        rendered,
        boundary_of(html_body, text_body),
        SplicedBody(html_body, {}),
        SplicedBody(text_body, {}),
    )
