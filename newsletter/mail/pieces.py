"""A rendered format of the day cut into pieces: frames per variant and one fragment per card.

`Format` renders the frame (no paper, cards only, cards and the "N more" button) and each
paper's card with and without keyword chips, with markers where per-subscriber values go, and
cuts them with `fragments` into templates whose statics are ready-to-encode body pieces.
`fill` joins a frame and its cards with one subscriber's values into the body's pieces.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .fragments import (
    Insert,
    NotSpliceable,
    Template,
    common_position,
    inserts,
    list_separators,
    template,
)
from .render import PERSONAL_FIELDS, Card
from .splice import Piece, piece, piece_bytes

VARIANTS = ("empty", "cards", "more")  # no paper / cards only / cards and "N more" button
CARDS = "cards"  # the frame's hole where the cards go
NUMBER, REASONS, FILTERS = "number", "reasons", "filters"
FRAME_HOLES = ("subject", "preheader", "total", "shown", "more", *PERSONAL_FIELDS)
_NEWLINES = re.compile(r"\r\n|\r|\n")

Render = Callable[[Sequence[Card], str, Mapping[str, object]], str]


def crlf(text: str) -> bytes:
    """`text` in UTF-8 with CRLF, CR and LF line ends all made CRLF."""
    if "\r" in text:  # rare in rendered output: only then the slower regular expression
        text = _NEWLINES.sub("\n", text)
    return text.replace("\n", "\r\n").encode()


@dataclass(frozen=True, slots=True)
class Part:
    """A template ready to fill: a sequence of pieces and hole names, and its static size."""

    template: Template
    sequence: tuple[Piece | str, ...]  # bytes/Static: CRLF body pieces; str: a hole's name
    size: int  # UTF-8 bytes of the statics as rendered (LF), for the size budget
    counts: tuple[tuple[str, int], ...]  # each hole's name and how often it occurs

    @classmethod
    def of(cls, tpl: Template) -> Part:
        sequence: list[Piece | str] = []
        for i, static in enumerate(tpl.statics):
            if static:
                sequence.append(piece(crlf(static)))
            if i < len(tpl.holes):
                sequence.append(tpl.holes[i])
        counts = tuple(collections.Counter(tpl.holes).items())
        size = sum(len(s.encode()) for s in tpl.statics)
        return cls(tpl, tuple(sequence), size, counts)


@dataclass(frozen=True, slots=True)
class CardPieces:
    part: Part
    extras: frozenset[int]  # the stretches this card adds to the frame (e.g. a head style)
    lead: tuple[str, ...]  # the statics and number holes before any other hole
    rest: tuple[Piece | str, ...]  # the sequence after them
    heads: dict[bytes, Piece] = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, part: Part, extras: frozenset[int]) -> CardPieces:
        tpl = part.template
        stop = next((i for i, h in enumerate(tpl.holes) if h != NUMBER), len(tpl.holes))
        lead = tpl.statics[: stop + 1]
        rest: list[Piece | str] = []
        for i in range(stop, len(tpl.holes)):
            rest.append(tpl.holes[i])
            if tpl.statics[i + 1]:
                rest.append(piece(crlf(tpl.statics[i + 1])))
        return cls(part, extras, lead, tuple(rest))

    def head(self, number: bytes) -> Piece:
        """The card up to its first hole other than its number, with the number in (cached)."""
        found = self.heads.get(number)
        if found is None:
            found = self.heads[number] = piece(crlf(number.decode().join(self.lead)))
        return found


class Format:
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
        self.cards: dict[tuple[str, int, bool], CardPieces] = {}
        self.frames: dict[tuple[str, frozenset[int]], Part] = {}
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
                grown = self.render([chipped(card, self.pairs, chips=chips)], variant)
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
            self.cards[variant, index, chips] = CardPieces.of(
                Part.of(template(text, self.markers)), frozenset(ids[o.text] for o in others)
            )

    def _agree(self, seps: Mapping[str, str]) -> None:
        for name, sep in seps.items():
            if self.separators.setdefault(name, sep) != sep:
                raise NotSpliceable(f"{name} is joined in more than one way")

    def frame(self, variant: str, extras: frozenset[int]) -> Part:
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
            found = Part.of(template(text, {**self.markers, self.cards_marker: CARDS}))
            self.frames[key] = found
        return found


def chipped(card: Card, pairs: Mapping[str, tuple[str, str]], *, chips: bool) -> Card:
    return dataclasses.replace(card, reasons=pairs[REASONS] if chips else ())


def ended(body: bytes) -> bytes:
    """A body as sent: CRLF line ends and a final line break."""
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def rendered_size(
    fmt: Format,
    variant: str,
    rows: list[tuple[int, bool, bytes, bytes]],
    values: dict[str, bytes],
) -> int:
    """UTF-8 bytes of the body `fill` makes of the same arguments, as rendered (LF ends).

    The statics' sizes plus each hole's value times its count: nothing is joined.
    """
    extras: frozenset[int] = frozenset()
    size = 0
    for index, chips, number, chip in rows:
        card = fmt.cards[variant, index, chips]
        if card.extras:
            extras |= card.extras
        size += card.part.size
        for hole, count in card.part.counts:
            if hole == NUMBER:
                size += len(number) * count
            elif hole == REASONS:
                size += len(chip) * count
            else:
                size += len(values[hole]) * count
    frame = fmt.frame(variant, extras)
    for hole, count in frame.counts:
        if hole != CARDS:
            size += len(values[hole]) * count
    return size + frame.size


def fill(
    fmt: Format,
    variant: str,
    rows: list[tuple[int, bool, bytes, bytes]],
    values: dict[str, bytes],
) -> tuple[Piece, ...]:
    """The body's pieces: the frame with its values, the cards (number, chips) in its hole."""
    cards = [fmt.cards[variant, index, chips] for index, chips, _, _ in rows]
    extras = frozenset().union(*(card.extras for card in cards))
    out: list[Piece] = []
    append = out.append
    frame = fmt.frame(variant, extras)
    for item in frame.sequence:
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
    last = piece_bytes(out[-1]) if out else b""
    if not last.endswith(b"\r\n"):
        append(b"\r\n")
    return tuple(out)
