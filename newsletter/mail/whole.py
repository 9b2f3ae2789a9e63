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

In those cases (`Layout.reader_email`) the reader's email is rendered for them alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from markupsafe import escape

from .render import HTML_BUDGET, PERSONAL_FIELDS, SAMPLE_READER, Personal, RenderedEmail
from .splice import SplicedBody

CRLF = "\r\n"

# One selection's render for a reader, with at most `limit` cards (None: what fits the budget).
Render = Callable[[Personal, int | None], RenderedEmail]


def canonical_body(text: str) -> str:
    """A body as the stdlib encodes it: CRLF line endings and a final line break."""
    # Bytes split only at CR and LF, as `email.contentmanager` does (str.splitlines does more).
    return CRLF.join(line.decode() for line in text.encode().splitlines()) + CRLF


def boundary_of(html_body: str, text_body: str) -> str:
    """A MIME boundary from the content only: a resend is byte-identical. Base64 lines never
    hold "=_", so it cannot occur in a body."""
    digest = hashlib.sha256(f"{html_body}\0{text_body}".encode()).hexdigest()
    return f"=_nl_{digest[:28]}"


@dataclass(frozen=True, slots=True)
class ReaderEmail:
    """One reader's whole render: its bodies with holes, and the values that fill them."""

    rendered: RenderedEmail
    boundary: str
    html: SplicedBody
    text: SplicedBody
    html_values: Mapping[str, bytes]
    text_values: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class Layout:
    """One selection rendered whole, waiting for personal values."""

    render: Render
    rendered: RenderedEmail
    boundary: str
    html: SplicedBody
    text: SplicedBody
    nbytes: int
    # Whether filling in is exact: the budget did not cut this render, and the template only
    # prints personal values; how often each marker appears in the HTML, and its length.
    uncut: bool
    prints_only: bool
    counts: Mapping[str, int]
    marker_sizes: Mapping[str, int]

    def reader_email(self, personal: Personal) -> ReaderEmail:
        """The reader's email: this render filled in, or their own where that reads otherwise."""
        text_values = {}
        html_values = {}
        for name in PERSONAL_FIELDS:
            value = getattr(personal, name)
            text_values[name] = value.encode()
            html_values[name] = str(escape(value)).encode()
        if self._fits(html_values):
            return ReaderEmail(
                self.rendered, self.boundary, self.html, self.text, html_values, text_values
            )
        own = self.render(personal, None)
        html_body, text_body = canonical_body(own.html), canonical_body(own.text)
        return ReaderEmail(
            own,
            boundary_of(html_body, text_body),
            SplicedBody(html_body, {}),
            SplicedBody(text_body, {}),
            {},
            {},
        )

    def _fits(self, html_values: Mapping[str, bytes]) -> bool:
        if not (self.uncut and self.prints_only):
            return False
        size = len(self.rendered.html.encode()) + sum(
            count * (len(html_values[name]) - self.marker_sizes[name])
            for name, count in self.counts.items()
        )
        return size <= HTML_BUDGET


def build_layout(render: Render, *, markers: Mapping[str, str], cap: int) -> Layout:
    """The selection rendered with `markers` (personal field -> its marker) in the holes;
    `cap`: the most cards its reader's email may show (the budget aside)."""
    rendered = render(Personal(**markers), None)
    html_body = canonical_body(rendered.html)
    text_body = canonical_body(rendered.text)
    # The sample reader's own render, with as many cards, must read like the filled one.
    sample = render(SAMPLE_READER, rendered.shown)
    filled_html, filled_text = html_body, text_body
    named_html, named_text = html_body, text_body
    for name, marker in markers.items():
        value = getattr(SAMPLE_READER, name)
        filled_html = filled_html.replace(marker, str(escape(value)))
        filled_text = filled_text.replace(marker, value)
        named_html = named_html.replace(marker, name)  # the boundary names the content,
        named_text = named_text.replace(marker, name)  # not the random markers
    prints_only = (filled_html, filled_text) == (
        canonical_body(sample.html),
        canonical_body(sample.text),
    )
    holes = {marker: name for name, marker in markers.items()}
    html = SplicedBody(html_body, holes)
    text = SplicedBody(text_body, holes)
    return Layout(
        render=render,
        rendered=rendered,
        boundary=boundary_of(named_html, named_text),
        html=html,
        text=text,
        nbytes=html.nbytes + text.nbytes,
        uncut=rendered.shown == min(rendered.total, cap),
        prints_only=prints_only,
        counts={name: rendered.html.count(marker) for name, marker in markers.items()},
        marker_sizes={name: len(marker.encode()) for name, marker in markers.items()},
    )
