"""Splitting a rendered document into a frame and insertable fragments (pure string work).

Render a document once without a card and once with it: when the second is the first with a
few stretches inserted, those stretches are the card's fragment (and, for MJML, any style the
card adds to the head). An inserted stretch can often sit at several neighbouring positions
(`<div>` inserted before `<div>` reads the same one character later), so each `Insert` keeps
the whole range, and cards are made to agree on one position inside every card's range.
Markers in the rendered text become holes filled per subscriber.
"""

from __future__ import annotations

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
        k = (position - self.left) % len(self.text)  # a slide may pass the whole text
        return self.text[k:] + self.text[:k]


def _prefix_length(a: str, b: str) -> int:
    """Length of the common prefix of `a` and `b` (binary search: slices compare in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _suffix_length(a: str, b: str, limit: int) -> int:
    """Length of the common suffix of `a` and `b`, at most `limit`."""
    low, high = 0, min(len(a), len(b), limit)
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle - 1
    return low


def _slide(base: str, position: int, text: str) -> Insert:
    """The range of positions at which inserting a rotation of `text` gives the same result.

    Sliding right by one is possible while the next character of the base equals the text's
    first (the text then rotates left by one), so the distance is the common prefix of the base
    after `position` and the text repeated; sliding left mirrors it. Compared a text's length
    at a time, never character by character.
    """
    size = len(text)
    right = position
    while True:
        step = _prefix_length(base[right : right + size], text)
        right += step
        if step < size:
            break
    left = position
    while True:
        step = _suffix_length(base[max(left - size, 0) : left], text, size)
        left -= step
        if step < size:
            break
    k = (position - left) % size  # each step left moves the text's last character to its front
    return Insert(left, text[size - k :] + text[: size - k], right)


def inserts(base: str, grown: str) -> tuple[Insert, ...]:
    """The stretches (at most two) that make `grown` out of `base`; NotSpliceable otherwise."""
    start = _prefix_length(base, grown)
    end = _suffix_length(base, grown, min(len(base), len(grown)) - start)
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


# A day's markers are the same in each of its ~200 renders: their patterns are built once
# rather than escaped and joined again each time. Bounded: every day brings new markers.
_PAIRS: dict[tuple[str, str], re.Pattern[str]] = {}
_MARKERS: dict[tuple[str, ...], re.Pattern[str]] = {}
_KEPT = 64


def _pair_pattern(first: str, second: str) -> re.Pattern[str]:
    """Matches `first`, up to 40 characters (group 1), then `second`."""
    pattern = _PAIRS.get((first, second))
    if pattern is None:
        if len(_PAIRS) >= _KEPT:
            _PAIRS.clear()
        text = f"{re.escape(first)}(.{{0,40}}?){re.escape(second)}"
        pattern = _PAIRS[first, second] = re.compile(text, re.DOTALL)
    return pattern


def _markers_pattern(markers: tuple[str, ...]) -> re.Pattern[str]:
    """Matches any of `markers`, the longest first where one starts another."""
    pattern = _MARKERS.get(markers)
    if pattern is None:
        if len(_MARKERS) >= _KEPT:
            _MARKERS.clear()
        longest_first = sorted(markers, key=len, reverse=True)
        pattern = _MARKERS[markers] = re.compile("|".join(map(re.escape, longest_first)))
    return pattern


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _: text


def list_separators(text: str, pairs: Mapping[str, tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """Each list rendered from two markers ("A, B") becomes one marker; their separators.

    `pairs` maps a list's name to its two item markers. Returns the text with every "A<sep>B"
    replaced by A, and the separator per list name.
    """
    separators: dict[str, str] = {}
    for name, (first, second) in pairs.items():
        pattern = _pair_pattern(first, second)
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
    pattern = _markers_pattern(tuple(markers))
    statics: list[str] = []
    holes: list[str] = []
    position = 0
    for found in pattern.finditer(text):
        statics.append(text[position : found.start()])
        holes.append(markers[found.group()])
        position = found.end()
    statics.append(text[position:])
    return Template(tuple(statics), tuple(holes))
