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

import collections
import dataclasses
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from markupsafe import escape

from ..audience.match import Pick, Reason
from ..audience.subscribers import KOREAN, describe_filters
from ..config import Settings
from ..errors import TemplateError
from ..model import Digest, Filters, Paper
from .fragments import (
    Insert,
    NotSpliceable,
    Template,
    common_position,
    inserts,
    list_separators,
    template,
)
from .render import (
    HTML_BUDGET,
    MJML_TEMPLATE,
    PERSONAL_FIELDS,
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
from .splice import Piece, Static, piece

VARIANTS = ("empty", "cards", "more")  # no paper / cards only / cards and "N more" button
CARDS = "cards"  # the frame's hole where the cards go
NUMBER, REASONS, FILTERS = "number", "reasons", "filters"
FRAME_HOLES = ("subject", "preheader", "total", "shown", "more", *PERSONAL_FIELDS)
_NEWLINES = re.compile(r"\r\n|\r|\n")
_PERSONAL = frozenset((*PERSONAL_FIELDS, FILTERS, CARDS, NUMBER, REASONS))
LEADS = 1024  # frame beginnings kept ready per format (~17 KB each with their base64)

Render = Callable[[Sequence[Card], str, Mapping[str, object]], str]


def _crlf(text: str) -> bytes:
    return _NEWLINES.sub("\r\n", text).encode()


@dataclass(frozen=True, slots=True)
class _Part:
    """A template ready to fill: a sequence of pieces and hole names, and its static size."""

    template: Template
    sequence: tuple[Piece | str, ...]  # bytes/Static: CRLF body pieces; str: a hole's name
    size: int  # UTF-8 bytes of the statics as rendered (LF), for the size budget
    counts: tuple[tuple[str, int], ...]  # each hole's name and how often it occurs
    lead: int  # sequence items before the first hole that differs per subscriber
    lead_holes: tuple[str, ...]  # the holes among them (subject, preheader, count...)

    @classmethod
    def of(cls, tpl: Template) -> _Part:
        sequence: list[Piece | str] = []
        for i, static in enumerate(tpl.statics):
            if static:
                sequence.append(piece(_crlf(static)))
            if i < len(tpl.holes):
                sequence.append(tpl.holes[i])
        counts = tuple(collections.Counter(tpl.holes).items())
        lead = next(
            (i for i, item in enumerate(sequence) if isinstance(item, str) and item in _PERSONAL),
            len(sequence),
        )
        holes = tuple(item for item in sequence[:lead] if isinstance(item, str))
        size = sum(len(s.encode()) for s in tpl.statics)
        return cls(tpl, tuple(sequence), size, counts, lead, holes)


@dataclass(frozen=True, slots=True)
class _Card:
    part: _Part
    extras: frozenset[int]  # the stretches this card adds to the frame (e.g. a head style)
    lead: tuple[str, ...]  # the statics and number holes before any other hole
    rest: tuple[Piece | str, ...]  # the sequence after them
    heads: dict[bytes, Piece] = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, part: _Part, extras: frozenset[int]) -> _Card:
        tpl = part.template
        stop = next((i for i, h in enumerate(tpl.holes) if h != NUMBER), len(tpl.holes))
        lead = tpl.statics[: stop + 1]
        rest: list[Piece | str] = []
        for i in range(stop, len(tpl.holes)):
            rest.append(tpl.holes[i])
            if tpl.statics[i + 1]:
                rest.append(piece(_crlf(tpl.statics[i + 1])))
        return cls(part, extras, lead, tuple(rest))

    def head(self, number: bytes) -> Piece:
        """The card up to its first hole other than its number, with the number in (cached)."""
        found = self.heads.get(number)
        if found is None:
            found = self.heads[number] = piece(_crlf(number.decode().join(self.lead)))
        return found


class _Format:
    """One body format (HTML or plain text) of the day: frames and cards as templates."""

    def __init__(
        self,
        *,
        render: Callable[[Sequence[Card], str], str],
        cards: Sequence[Card],
        markers: Mapping[str, str],
        pairs: Mapping[str, tuple[str, str]],
    ) -> None:
        self.render = render
        self.markers = markers  # marker -> hole name
        self.pairs = pairs
        self.cards_marker = next(m for m, n in markers.items() if n == NUMBER) + "cards"
        self.bases = {variant: render([], variant) for variant in VARIANTS}
        self.points: dict[str, int] = {}
        self.extras: list[tuple[str, int, str]] = []  # id -> (variant, position, stretch)
        self.cards: dict[tuple[str, int, bool], _Card] = {}
        self.frames: dict[tuple[str, frozenset[int]], _Part] = {}
        # The frame up to its first personal value, filled and ready to encode, by its values.
        self.leads: collections.OrderedDict[tuple[object, ...], Static] = collections.OrderedDict()
        self.separators: dict[str, str] = {}
        for variant in ("cards", "more"):
            self._split(variant, cards)
        for variant in VARIANTS:  # also learns how the frame joins the filters
            self.frame(variant, frozenset())

    def _split(self, variant: str, cards: Sequence[Card]) -> None:
        number = next(m for m, n in self.markers.items() if n == NUMBER)
        base = self.bases[variant]
        found: dict[tuple[int, bool], tuple[Insert, list[Insert]]] = {}
        for index, card in enumerate(cards):
            for chips in (False, True):
                grown = self.render([_chipped(card, self.pairs, chips=chips)], variant)
                stretches = inserts(base, grown)
                mine = [s for s in stretches if number in s.text]
                if len(mine) != 1:
                    raise NotSpliceable("a card's number is not in exactly one inserted stretch")
                found[index, chips] = (mine[0], [s for s in stretches if s is not mine[0]])
        point = common_position([own for own, _ in found.values()])
        self.points[variant] = point
        groups: dict[str, list[Insert]] = {}
        for _, others in found.values():
            for other in others:
                groups.setdefault(other.text, []).append(other)
        ids: dict[str, int] = {}
        for text, members in groups.items():
            where = common_position(members)
            ids[text] = len(self.extras)
            self.extras.append((variant, where, members[0].at(where)))
        for (index, chips), (own, others) in found.items():
            text, seps = list_separators(own.at(point), self.pairs)
            self._agree(seps)
            self.cards[variant, index, chips] = _Card.of(
                _Part.of(template(text, self.markers)), frozenset(ids[o.text] for o in others)
            )

    def _agree(self, seps: Mapping[str, str]) -> None:
        for name, sep in seps.items():
            if self.separators.setdefault(name, sep) != sep:
                raise NotSpliceable(f"{name} is joined in more than one way")

    def frame(self, variant: str, extras: frozenset[int]) -> _Part:
        """The frame of `variant` with the stretches `extras` added and a hole for the cards."""
        key = (variant, extras)
        found = self.frames.get(key)
        if found is None:
            stretches = []
            for i in extras:
                owner, position, text = self.extras[i]
                if owner != variant:
                    raise NotSpliceable("a card's stretch belongs to another variant")
                stretches.append((position, 1, text))
            if variant != "empty":
                stretches.append((self.points[variant], 0, self.cards_marker))
            text = self.bases[variant]
            # From the end, so earlier positions stay valid; at one position the cards go last.
            for position, _, stretch in sorted(stretches, reverse=True):
                text = text[:position] + stretch + text[position:]
            text, seps = list_separators(text, self.pairs)
            self._agree(seps)
            found = _Part.of(template(text, {**self.markers, self.cards_marker: CARDS}))
            self.frames[key] = found
        return found


def _chipped(card: Card, pairs: Mapping[str, tuple[str, str]], *, chips: bool) -> Card:
    return dataclasses.replace(card, reasons=pairs[REASONS] if chips else ())


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


_NUMBERS = tuple(str(n).encode() for n in range(1001))  # card numbers (max_papers is <= 1000)


@dataclass(frozen=True, slots=True)
class _Chip:
    html: bytes
    text: bytes


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
            self._html = _Format(
                render=self._marked(self._html_of), cards=cards, markers=holes, pairs=pairs
            )
            self._text = _Format(
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
        """Every variant, filled with hostile values, must equal the whole render of them."""
        hostile: dict[str, object] = {n: f"<{n}&\"'>" for n in FRAME_HOLES}
        hostile.update(total="17", shown="3", more="14")
        parts = ("<f&1>", "f'2\"")
        hostile[FILTERS] = parts
        reasons = ("<k&1> (제목)", "k'2\" (What's New)")
        sample = [(i, i % 2 == 0) for i in range(len(papers))]  # chips on every other card
        for variant in VARIANTS:
            chosen = [] if variant == "empty" else sample
            cards = [
                dataclasses.replace(
                    paper_card(papers[i]), number=str(n), reasons=reasons if chips else ()
                )
                for n, (i, chips) in enumerate(chosen, start=1)
            ]
            for fmt, render, quote in (
                (self._html, self._html_of, _escaped),
                (self._text, self._text_of, str),
            ):
                whole = _crlf(render(cards, variant, hostile))
                values = {name: quote(str(hostile[name])).encode() for name in FRAME_HOLES}
                sep = fmt.separators.get(FILTERS, "")
                values[FILTERS] = sep.join(quote(f) for f in parts).encode()
                chip = fmt.separators.get(REASONS, "").join(quote(r) for r in reasons).encode()
                rows = [(i, chips, str(n).encode(), chip) for n, (i, chips) in enumerate(chosen, 1)]
                pieces = _fill(fmt, variant, rows, values)
                if b"".join(_raw(p) for p in pieces) != _ended(whole):
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
            text[name] = value.encode()
            html[name] = _escaped(value).encode()
        described = describe_filters(filters, words=KOREAN)
        html[FILTERS] = self._html_filters_sep.join(map(_escaped, described)).encode()
        text[FILTERS] = self._text_filters_sep.join(described).encode()
        shown = min(total, self.settings.max_papers_per_email)
        rows: list[tuple[int, bool, bytes, _Chip | None]] = []
        index = self._index
        for n, pick in enumerate(picks[:shown], start=1):
            chip = self._chip(pick.reasons) if pick.reasons else None
            rows.append((index[pick.paper.arxiv_id], chip is not None, _NUMBERS[n], chip))
        while True:
            size = self._html_size(rows, shown, total, html)
            if size <= HTML_BUDGET or shown == 0:
                break
            # Cards are of similar size: jump close to the fit, then step down one at a time.
            shown = min(shown - 1, shown * HTML_BUDGET // size)
        variant = _variant(total, shown)
        html["shown"] = text["shown"] = str(shown).encode()
        html["more"] = text["more"] = str(total - shown).encode()
        shown_rows = rows[:shown]
        return Assembled(
            subject=head.subject,
            preheader=head.preheader,
            shown=shown,
            total=total,
            html=_fill(
                self._html,
                variant,
                [(i, c, n, ch.html if ch else b"") for i, c, n, ch in shown_rows],
                html,
            ),
            text=_fill(
                self._text,
                variant,
                [(i, c, n, ch.text if ch else b"") for i, c, n, ch in shown_rows],
                text,
            ),
        )

    def _html_size(
        self,
        rows: Sequence[tuple[int, bool, bytes, _Chip | None]],
        shown: int,
        total: int,
        values: Mapping[str, bytes],
    ) -> int:
        """Bytes of the HTML as rendered (LF line ends) with `shown` cards."""
        cards = self._html.cards
        variant = _variant(total, shown)
        extras: frozenset[int] = frozenset()
        size = 0
        for index, chips, number, chip in rows[:shown]:
            card = cards[variant, index, chips]
            if card.extras:
                extras |= card.extras
            size += card.part.size
            for hole, count in card.part.counts:
                if hole == NUMBER:
                    size += len(number) * count
                elif hole == REASONS:
                    size += (len(chip.html) if chip else 0) * count
                else:
                    size += len(values[hole]) * count
        frame = self._html.frame(variant, extras)
        for hole, count in frame.counts:
            if hole == "shown":
                size += len(str(shown)) * count
            elif hole == "more":
                size += len(str(total - shown)) * count
            elif hole != CARDS:
                size += len(values[hole]) * count
        return size + frame.size


def _variant(total: int, shown: int) -> str:
    return "empty" if total == 0 else "more" if shown < total else "cards"


def _escaped(text: str) -> str:
    return str(escape(text))


def _raw(item: Piece) -> bytes:
    return item if isinstance(item, bytes) else item.data


def _ended(body: bytes) -> bytes:
    """A body as sent: CRLF line ends and a final line break."""
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def _fill(
    fmt: _Format,
    variant: str,
    rows: Sequence[tuple[int, bool, bytes, bytes]],
    values: Mapping[str, bytes],
) -> tuple[Piece, ...]:
    """The body's pieces: the frame with its values, the cards (number, chips) in its hole."""
    cards = [fmt.cards[variant, index, chips] for index, chips, _, _ in rows]
    extras = frozenset().union(*(card.extras for card in cards))
    out: list[Piece] = []
    append = out.append
    frame = fmt.frame(variant, extras)
    if frame.lead:
        # Everything before the greeting depends on a few values only, and starts the body:
        # one block, encoded once, serves every subscriber with the same count and first paper.
        key = (variant, extras, *(values[h] for h in frame.lead_holes))
        block = fmt.leads.get(key)
        if block is None:
            block = Static(
                b"".join(
                    values[item] if isinstance(item, str) else _raw(item)
                    for item in frame.sequence[: frame.lead]
                )
            )
            fmt.leads[key] = block
            if len(fmt.leads) > LEADS:
                fmt.leads.popitem(last=False)
        append(block)
    for item in frame.sequence[frame.lead :]:
        if not isinstance(item, str):
            append(item)
        elif item != CARDS:
            append(values[item])
        else:
            for card, (_, _, number, chip) in zip(cards, rows, strict=True):
                append(card.head(number))
                for part in card.rest:
                    if not isinstance(part, str):
                        append(part)
                    elif part == REASONS:
                        append(chip)
                    elif part == NUMBER:
                        append(number)
                    else:
                        append(values[part])
    last = _raw(out[-1]) if out else b""
    if not last.endswith(b"\r\n"):
        append(b"\r\n")
    return tuple(out)
