"""Say what one digest line is: pure, stateless, and linear in the line's length.

Every line is exactly one kind. A line that starts with `##`, or with `#` followed by a space,
a `[` or nothing, is a `Heading` of its level whatever its text, so the parser has to decide about
every heading-like line and cannot mistake one for text that continues a section.
Leading and trailing whitespace, BOMs and control characters are ignored (copy-paste and
bad exports leave them), so `\\ufeff### [Title](url)` is still a paper heading; so are
those inside the run of `#` and before its `[`, but never those in the heading's text.

No regular expression here can backtrack more than a constant per character: links are
split with `str` methods on the last `](`, so a 100 KB line of `](` parses in milliseconds.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# "- **What's New**: text", "- ***What's New***: text", "- **What's New:** text".
# Linear: the name cannot contain `*`, so each star run is tried once.
_SECTION = re.compile(r"[-*+]\s+\*{2,3}(?P<name>[^*]+?)\*{2,3}\s*(?P<text>.*)")
_DAY = re.compile(r"Daily Papers\s*\((?P<date>[^)]*)\)", re.IGNORECASE)
_FIELDS = {"vote": "Vote", "votes": "Vote", "author": "Authors", "authors": "Authors"}
_LONGEST_FIELD = max(len(name) for name in _FIELDS)


@dataclass(frozen=True, slots=True)
class DayHeader:
    """`## Daily Papers (YYYY-MM-DD)`; `date` is the text between the brackets."""

    date: str


@dataclass(frozen=True, slots=True)
class Heading:
    """Any other `#` heading; `link` is (title, url) when its text is one markdown link."""

    level: int
    text: str
    link: tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class Image:
    """`![alt](url)` alone on its line."""

    url: str


@dataclass(frozen=True, slots=True)
class Field:
    """`Vote: N` or `Authors: A, B`; `name` is "Vote" or "Authors", `value` is trimmed."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class SectionStart:
    """`- **Name**: text`, the first line of a named section."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Text:
    """Any other non-blank line."""

    text: str


Line = DayHeader | Heading | Image | Field | SectionStart | Text


def _unprintable(ch: str) -> bool:
    """A control or format character that is not spacing (NUL, ESC, BOM, zero-width space)."""
    return not ch.isspace() and unicodedata.category(ch) in ("Cc", "Cf")


def _invisible(ch: str) -> bool:
    return ch.isspace() or _unprintable(ch)


def clean(raw: str) -> str:
    """`raw` without leading and trailing whitespace, BOMs, zero-width and control characters."""
    start, end = 0, len(raw)
    while start < end and _invisible(raw[start]):
        start += 1
    while end > start and _invisible(raw[end - 1]):
        end -= 1
    return raw[start:end]


def split_link(text: str) -> tuple[str, str] | None:
    """(title, url) of `[title](url)`, split on the last `](`; None if `text` is not one link."""
    if not (text.startswith("[") and text.endswith(")")):
        return None
    split = text.rfind("](")
    if split < 1:
        return None
    url = text[split + 2 : -1].strip()
    if not url or len(url.split()) != 1:
        return None
    return text[1:split].strip(), url


def _hashes(line: str) -> tuple[int, str]:
    r"""The heading level and what follows the run of "#".

    Control and zero-width characters inside the run are skipped ("#\x00## Title" is level 3).
    Spacing is skipped only when the run then reaches a link ("#\u00a0## [Title](...)" is
    level 3), so a "#" in the text stays text ("### #1 [Title](...)" is level 3, "#1 ..." its text).
    """
    n, end = len(line), 0
    while end < n and (line[end] == "#" or _invisible(line[end])):
        end += 1
    if end == n or line[end] != "[":
        end = 0
        while end < n and (line[end] == "#" or _unprintable(line[end])):
            end += 1
    return line.count("#", 0, end), line[end:]


def _heading(line: str) -> DayHeader | Heading | None:
    level, rest = _hashes(line)
    # "#hashtag" or "#1 paper" is text; "#", "# Title", "##Title" and "###[Title](url)" are
    # headings: prose rarely starts with two "#", a digest heading missing its space often does.
    if level == 1 and rest and not rest[0].isspace() and rest[0] != "[":
        return None
    rest = clean(rest)
    if level == 2 and (day := _DAY.fullmatch(rest)):
        return DayHeader(day.group("date"))
    return Heading(level=level, text=rest, link=split_link(rest))


def _image(line: str) -> Image | None:
    if not (line.startswith("![") and line.endswith(")")):
        return None
    split = line.find("](")
    if split < 0 or "]" in line[2:split]:
        return None
    url = line[split + 2 : -1].strip()
    if len(url.split()) > 1:
        return None
    return Image(url)


def _field(line: str) -> Field | None:
    head, colon, _ = line[: _LONGEST_FIELD + 8].partition(":")
    name = _FIELDS.get(head.rstrip().lower())
    if not colon or name is None:
        return None
    return Field(name, line[len(head) + 1 :].strip())


def classify(raw: str) -> Line | None:
    """What `raw` (one line, without its line break) is; None for a blank line."""
    line = clean(raw)
    if not line:
        return None
    if line.startswith("#") and (heading := _heading(line)) is not None:
        return heading
    if (image := _image(line)) is not None:
        return image
    if (field := _field(line)) is not None:
        return field
    if section := _SECTION.fullmatch(line):
        name = section.group("name").strip().rstrip(":").strip()
        return SectionStart(name, section.group("text").strip().removeprefix(":").strip())
    return Text(line)
