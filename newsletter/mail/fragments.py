"""Splitting a rendered document into a frame and insertable fragments (pure string work).

Render a document once without a card and once with it: when the second is the first with a
few stretches inserted, those stretches are the card's fragment (and, for MJML, any style the
card adds to the head). An inserted stretch can often sit at several neighbouring positions
(`<div>` inserted before `<div>` reads the same one character later), so each `Insert` keeps
the whole range, and cards are made to agree on one position inside every card's range.
Markers in the rendered text become holes filled per subscriber.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


class NotSpliceable(Exception):
    """The template's output is not a frame plus independent cards; render it whole instead."""


@dataclass(frozen=True, slots=True)
class Insert:
    """A stretch inserted into a base document, placeable anywhere from `left` to `right`."""

    left: int
    text: str  # the stretch as inserted at `left`
    right: int

    def at(self, position: int) -> str:
        """The stretch as inserted at `position` (a rotation of the text at `left`)."""
        if not self.left <= position <= self.right:
            raise NotSpliceable(f"no common place for an insert at {position}")
        k = position - self.left
        return self.text[k:] + self.text[:k]


def _slide(base: str, position: int, text: str) -> Insert:
    left, at_left = position, text
    while left > 0 and base[left - 1] == at_left[-1]:
        at_left = at_left[-1] + at_left[:-1]
        left -= 1
    right, at_right = position, text
    while right < len(base) and base[right] == at_right[0]:
        at_right = at_right[1:] + at_right[0]
        right += 1
    return Insert(left, at_left, right)


def _common_suffix(a: str, b: str, limit: int) -> int:
    low, high = 0, min(len(a), len(b), limit)
    while low < high:  # binary search: slices compare in C
        middle = (low + high + 1) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle - 1
    return low


def inserts(base: str, grown: str) -> tuple[Insert, ...]:
    """The stretches (at most two) that make `grown` out of `base`; NotSpliceable otherwise."""
    start = len(os.path.commonprefix([base, grown]))  # noqa: RUF071 - characters are meant
    end = _common_suffix(base, grown, min(len(base), len(grown)) - start)
    old, new = base[start : len(base) - end], grown[start : len(grown) - end]
    if not new:
        return ()
    if not old:
        return (_slide(base, start, new),)
    found = new.find(old)
    if found < 0:
        raise NotSpliceable("the card changes the document instead of adding to it")
    before, after = new[:found], new[found + len(old) :]
    return tuple(
        _slide(base, at, text) for at, text in ((start, before), (len(base) - end, after)) if text
    )


def common_position(found: Sequence[Insert]) -> int:
    """A position inside every insert's range (NotSpliceable when there is none)."""
    position = max(i.left for i in found)
    if position > min(i.right for i in found):
        raise NotSpliceable("cards do not share one insertion point")
    return position


@dataclass(frozen=True, slots=True)
class Template:
    """Text with holes: statics[0], hole[0], statics[1], ..., statics[-1]."""

    statics: tuple[str, ...]
    holes: tuple[str, ...]

    def fill(self, values: Mapping[str, str]) -> str:
        out = [self.statics[0]]
        for hole, static in zip(self.holes, self.statics[1:], strict=True):
            out += (values[hole], static)
        return "".join(out)


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _: text


def list_separators(text: str, pairs: Mapping[str, tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """Each list rendered from two markers ("A, B") becomes one marker; their separators.

    `pairs` maps a list's name to its two item markers. Returns the text with every "A<sep>B"
    replaced by A, and the separator per list name.
    """
    separators: dict[str, str] = {}
    for name, (first, second) in pairs.items():
        pattern = re.compile(f"{re.escape(first)}(.{{0,40}}?){re.escape(second)}", re.DOTALL)
        seps = set(pattern.findall(text))
        if len(seps) > 1:
            raise NotSpliceable(f"{name} is joined in more than one way")
        text = pattern.sub(_constant(first), text)
        if second in text:
            raise NotSpliceable(f"{name} is not shown as a joined list")
        if seps:
            separators[name] = seps.pop()
    return text, separators


def template(text: str, markers: Mapping[str, str]) -> Template:
    """`text` split at each marker (marker -> hole name)."""
    if not markers:
        return Template((text,), ())
    pattern = re.compile("|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True)))
    statics: list[str] = []
    holes: list[str] = []
    position = 0
    for found in pattern.finditer(text):
        statics.append(text[position : found.start()])
        holes.append(markers[found.group()])
        position = found.end()
    statics.append(text[position:])
    return Template(tuple(statics), tuple(holes))
