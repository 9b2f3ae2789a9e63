"""A day's email as pieces: each paper's card and the frame rendered once, assembled per reader.

A day holds ~25 papers and everything a subscriber receives is an arrangement of them, so the
day is rendered (Jinja + MJML) a few dozen times in all, with markers where per-subscriber
values go: the frame (header, footer, the "more" button) once per variant, and each paper's
card once with and once without keyword chips. `fragments` cuts each render into the frame
with a hole where the cards go, one fragment per card, and any stretch a card adds elsewhere
(MJML puts an image style in the head). A subscriber's bodies are then cached pieces joined
around a few escaped values, and their size is known without rendering anything.

Before use, every variant is checked against whole renders with hostile values in every
hole. A template whose output does not split that way (a user template may number its cards
itself, or style the first one apart) raises `NotSpliceable`; the composer then renders it
whole, once per selection.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from markupsafe import escape

from ..audience.describe import KOREAN, describe_filters
from ..audience.match import Pick, Reason
from ..config import Settings
from ..errors import TemplateError
from ..model import Digest, Filters, Paper
from .fragments import (
    NotSpliceable,
)
from .pieces import (
    FILTERS,
    FRAME_HOLES,
    NUMBER,
    REASONS,
    VARIANTS,
    Format,
    Render,
    crlf,
    ended,
    fill,
    rendered_size,
)
from .render import (
    HTML_BUDGET,
    MJML_TEMPLATE,
    PERSONAL_FIELDS,
    SAMPLE_READER,
    TEXT_TEMPLATE,
    Card,
    Personal,
    compile_mjml,
    day_values,
    paper_card,
    preheader_for,
    reason_label,
    render_template,
    subject_for,
)
from .splice import Piece, piece_bytes


@dataclass(frozen=True, slots=True)
class Assembled:
    """One subscriber's email as pieces, and what it holds."""

    subject: str
    preheader: str
    shown: int
    total: int
    html: tuple[Piece, ...]
    text: tuple[Piece, ...]


@dataclass(frozen=True, slots=True)
class _Head:
    subject: str
    preheader: str
    html: dict[str, bytes]  # subject, preheader and total as the HTML shows them
    text: dict[str, bytes]


# Card numbers: max_papers_per_email is at most 1000 (config), as a subscriber's own cap.
_NUMBERS = tuple(str(n).encode() for n in range(1001))


@dataclass(frozen=True, slots=True)
class _Chip:
    html: bytes
    text: bytes


@dataclass(frozen=True, slots=True)
class _Sample:
    """Values the day's check renders whole and also splices from the pieces, to compare."""

    values: Mapping[str, object]  # every frame hole, and the filter parts
    filters: tuple[str, ...]
    reasons: tuple[str, ...]  # each chip's
    cards: int  # cards at most


def _samples() -> tuple[_Sample, ...]:
    hostile_filters = ("<f&1>", "f'2\"")
    hostile: dict[str, object] = {n: f"<{n}&\"'>" for n in FRAME_HOLES}
    hostile.update(total=17, shown=3, more=14)
    hostile[FILTERS] = hostile_filters
    plain_filters = ("키워드: LLM", "최소 추천 5", "제외: survey")
    plain: dict[str, object] = {
        "subject": "Daily Papers 2024-12-13: 1편",
        "preheader": "One paper",
        "total": 1,
        "shown": 1,
        "more": 1,
        **{name: getattr(SAMPLE_READER, name) for name in PERSONAL_FIELDS},
    }
    plain[FILTERS] = plain_filters
    return (
        _Sample(hostile, hostile_filters, ("<k&1> (제목)", "k'2\" (What's New)"), cards=1000),
        _Sample(plain, plain_filters, ("LLM (제목)",), cards=1),
    )


_SAMPLES = _samples()
assert all(set(FRAME_HOLES) <= set(s.values) for s in _SAMPLES)


class DayEmail:
    """The day's email for any selection, assembled from pieces rendered once per day."""

    def __init__(
        self,
        *,
        settings: Settings,
        digest: Digest,
        papers: Sequence[Paper],
        template_dir: Path | None = None,
        weekly: bool = False,
    ) -> None:
        """Render and split the day (`papers` in selection order); NotSpliceable if it won't."""
        self.settings = settings
        self.digest = digest
        self.weekly = weekly
        self._template_dir = template_dir or settings.template_dir
        self._index = {paper.arxiv_id: i for i, paper in enumerate(papers)}
        nonce = secrets.token_hex(8)  # markers no digest text can predict
        names = (*FRAME_HOLES, NUMBER, "filtersa", "filtersb", "reasonsa", "reasonsb")
        marker = {name: f"nl{nonce}{name.replace('_', '')}" for name in names}
        self._marker = marker
        holes = {marker[n]: n for n in (*FRAME_HOLES, NUMBER)}
        holes[marker["filtersa"]] = FILTERS
        holes[marker["reasonsa"]] = REASONS
        pairs = {
            FILTERS: (marker["filtersa"], marker["filtersb"]),
            REASONS: (marker["reasonsa"], marker["reasonsb"]),
        }
        self._day = day_values(settings=settings, digest=digest, weekly=weekly)
        cards = [dataclasses.replace(paper_card(p), number=marker[NUMBER]) for p in papers]
        try:
            self._html = Format(
                render=self._marked(self._html_of), cards=cards, markers=holes, pairs=pairs
            )
            self._text = Format(
                render=self._marked(self._text_of), cards=cards, markers=holes, pairs=pairs
            )
            self._check(papers)
        except TemplateError as exc:  # e.g. a template that does sums with the card number
            raise NotSpliceable(str(exc)) from None
        self._chips: dict[tuple[Reason, ...], _Chip] = {}
        self._heads: dict[tuple[int, str], _Head] = {}
        self._html_filters_sep = self._html.separators.get(FILTERS, " · ")
        self._text_filters_sep = self._text.separators.get(FILTERS, " · ")

    # Rendering the day's pieces ---------------------------------------------------------

    def _context(
        self, cards: Sequence[Card], variant: str, values: Mapping[str, object]
    ) -> dict[str, object]:
        empty = variant == "empty"
        return {
            **self._day,
            **{name: values[name] for name in FRAME_HOLES},
            FILTERS: values[FILTERS],
            "total": 0 if empty else values["total"],
            "more": values["more"] if variant == "more" else 0,
            "papers": list(cards),
        }

    def _html_of(self, cards: Sequence[Card], variant: str, values: Mapping[str, object]) -> str:
        mjml = render_template(
            MJML_TEMPLATE, self._template_dir, self._context(cards, variant, values)
        )
        return compile_mjml(mjml)

    def _text_of(self, cards: Sequence[Card], variant: str, values: Mapping[str, object]) -> str:
        return render_template(
            TEXT_TEMPLATE, self._template_dir, self._context(cards, variant, values)
        )

    def _marked(self, render: Render) -> Callable[[Sequence[Card], str], str]:
        marker = self._marker
        values: dict[str, object] = {name: marker[name] for name in FRAME_HOLES}
        values[FILTERS] = (marker["filtersa"], marker["filtersb"])
        return lambda cards, variant: render(cards, variant, values)

    def _check(self, papers: Sequence[Paper]) -> None:
        """Every variant, filled with sample values, must equal the whole render of them.

        Two samples: hostile text in every hole (escaping), and plain values of other
        shapes (one paper, one keyword, three filter parts, an address with its @), so a
        template that computes with a reader's values (`total == 1`, `email.split('@')`,
        `reasons | length`) instead of printing them does not split.
        """
        for sample in _SAMPLES:
            self._check_with(papers, sample)

    def _check_with(self, papers: Sequence[Paper], sample: _Sample) -> None:
        chosen = [(i, i % 2 == 0) for i in range(min(len(papers), sample.cards))]
        for variant in VARIANTS:
            rows_of = [] if variant == "empty" else chosen
            cards = [
                dataclasses.replace(
                    paper_card(papers[i]), number=str(n), reasons=sample.reasons if chips else ()
                )
                for n, (i, chips) in enumerate(rows_of, start=1)
            ]
            for fmt, render, quote in (
                (self._html, self._html_of, _escaped),
                (self._text, self._text_of, str),
            ):
                whole = crlf(render(cards, variant, sample.values))
                values = {name: quote(str(sample.values[name])).encode() for name in FRAME_HOLES}
                sep = fmt.separators.get(FILTERS, "")
                values[FILTERS] = sep.join(quote(f) for f in sample.filters).encode()
                chip = fmt.separators.get(REASONS, "").join(quote(r) for r in sample.reasons)
                rows = [
                    (i, chips, str(n).encode(), chip.encode())
                    for n, (i, chips) in enumerate(rows_of, 1)
                ]
                pieces = fill(fmt, variant, rows, values)
                if b"".join(piece_bytes(p) for p in pieces) != ended(whole):
                    raise NotSpliceable(f"the {variant} email does not split into frame and cards")

    # One subscriber --------------------------------------------------------------------

    def _chip(self, reasons: tuple[Reason, ...]) -> _Chip:
        chip = self._chips.get(reasons)
        if chip is None:
            labels = [reason_label(r) for r in reasons]
            html_sep = self._html.separators.get(REASONS, ", ")
            text_sep = self._text.separators.get(REASONS, ", ")
            chip = _Chip(
                html_sep.join(_escaped(label) for label in labels).encode(),
                text_sep.join(labels).encode(),
            )
            if len(self._chips) < 65536:
                self._chips[reasons] = chip
        return chip

    def _head(self, picks: Sequence[Pick]) -> _Head:
        """Subject, preheader and count: they depend only on the count and the first paper."""
        total = len(picks)
        key = (total, picks[0].paper.arxiv_id if picks else "")
        head = self._heads.get(key)
        if head is None:
            subject = subject_for(
                settings=self.settings, date=self.digest.date, total=total, weekly=self.weekly
            )
            first = (paper_card(picks[0].paper),) if picks else ()
            preheader = preheader_for(cards=first, total=total)
            texts = {"subject": subject, "preheader": preheader, "total": str(total)}
            head = _Head(
                subject,
                preheader,
                {name: _escaped(value).encode() for name, value in texts.items()},
                {name: value.encode() for name, value in texts.items()},
            )
            if len(self._heads) < 65536:
                self._heads[key] = head
        return head

    def assemble(self, picks: Sequence[Pick], *, filters: Filters, personal: Personal) -> Assembled:
        """The subscriber's bodies: cards capped at `max_papers_per_email`, then by HTML size."""
        total = len(picks)
        head = self._head(picks)
        html = dict(head.html)
        text = dict(head.text)
        for name in PERSONAL_FIELDS:
            value = getattr(personal, name)
            text[name] = raw = value.encode()
            html[name] = _escaped(value).encode() if _ESCAPED.search(value) else raw
        described = describe_filters(filters, words=KOREAN)
        html[FILTERS] = self._html_filters_sep.join(map(_escaped_if_needed, described)).encode()
        text[FILTERS] = self._text_filters_sep.join(described).encode()
        shown = min(total, self.settings.max_papers_per_email)
        index = self._index
        chips = [self._chip(p.reasons) if p.reasons else None for p in picks[:shown]]
        html_rows = [
            (index[p.paper.arxiv_id], chip is not None, _NUMBERS[n], chip.html if chip else b"")
            for n, (p, chip) in enumerate(zip(picks[:shown], chips, strict=True), start=1)
        ]
        while True:
            variant = _variant(total, shown)
            html["shown"] = str(shown).encode()
            html["more"] = str(total - shown).encode()
            size = rendered_size(self._html, variant, html_rows[:shown], html)
            if size <= HTML_BUDGET or shown == 0:
                break
            # Cards are of similar size: jump close to the fit, then step down one at a time.
            shown = min(shown - 1, shown * HTML_BUDGET // size)
        text["shown"] = html["shown"]
        text["more"] = html["more"]
        text_rows = [
            (i, c, number, chip.text if chip else b"")
            for (i, c, number, _), chip in zip(html_rows[:shown], chips[:shown], strict=True)
        ]
        return Assembled(
            subject=head.subject,
            preheader=head.preheader,
            shown=shown,
            total=total,
            html=fill(self._html, variant, html_rows[:shown], html),
            text=fill(self._text, variant, text_rows, text),
        )


def _variant(total: int, shown: int) -> str:
    return "empty" if total == 0 else "more" if shown < total else "cards"


def _escaped(text: str) -> str:
    return str(escape(text))


def _escaped_if_needed(text: str) -> str:
    """`_escaped`, without the call when nothing in `text` needs it (most values)."""
    return _escaped(text) if _ESCAPED.search(text) else text


_ESCAPED = re.compile("[&<>\"']")  # the characters `escape` (and Jinja) replace
