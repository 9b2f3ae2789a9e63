"""Parse a daily digest markdown file into a `Digest` (pure: text in, data out).

Each line is classified on its own (`lines.classify`); this module decides what every kind
means where it appears. Nothing is dropped or merged silently: a heading that is not a paper
heading is a warning naming its line, a heading of another level with an arXiv link anywhere
in its text is an error, and a second `Vote:` or `Authors:` line for one paper is an error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urljoin, urlsplit

from ..errors import DigestError
from ..model import Digest, Notice, Paper, Section
from .lines import DayHeader, Field, Heading, Image, SectionStart, classify
from .texmath import plain_title

HF_BASE = "https://huggingface.co"
PAPER_HEADING = "### [Title](https://arxiv.org/abs/ID)"

_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
_ARXIV = re.compile(
    r"^/(?:abs|pdf|html|papers)/(?P<id>\d{4}\.\d{4,5}|[a-z][a-z.\-]*/\d{7})(?:v\d+)?(?:\.pdf)?/?$",
    re.IGNORECASE,
)
_ARXIV_HOSTS = {"arxiv.org", "www.arxiv.org", "export.arxiv.org", "huggingface.co"}
# Far above any real count (the busiest Hugging Face papers have a few thousand) and far below
# SQLite's 64-bit INTEGER and Python's 4,300-digit int() limit, so a typo fails its file.
MAX_VOTES = 10_000_000
# Real lines are under 1,000 characters; a longer one is a broken file, not a long abstract.
MAX_LINE_CHARS = 100_000
# A summary section is a few hundred characters (381 at most in a year of real digests). One
# far longer would crowd every other paper out of the feeds' and emails' byte budgets.
MAX_SECTION_CHARS = 2_000
# "#" then "[" after a few stray non-word characters: a paper heading spoiled by one, such as
# "¡### [Title](...)" (anchored and bounded, so a hostile line costs one pass). A word before
# the "#" is prose: "Issue #[12](...)".
_NON_WORD = re.compile(r"[^\w]*")
_HASH_BRACKET = re.compile(r"#\s*\[")
# Where each markdown link in a line points; brackets end a target, so each character is read once.
_LINK_TARGET = re.compile(r"\]\(\s*(https?://[^\s\[\]()]+)", re.IGNORECASE)
_NO_VOTES = ("-", "–", "—", "")


@dataclass(frozen=True, slots=True)
class ParseResult:
    """A parsed digest and the warnings met on the way."""

    digest: Digest
    warnings: tuple[Notice, ...]


@dataclass
class _Draft:
    line: int
    title: str
    url: str
    arxiv_id: str
    image: str | None = None
    is_thumbnail: bool = False
    votes: int | None = None
    authors: tuple[str, ...] = ()
    # The line each field came from, so a second one can name the first.
    field_lines: dict[str, int] = field(default_factory=dict)
    # (name, lines): a section's lines are joined once at the end, not re-copied per line.
    sections: list[tuple[str, list[str]]] = field(default_factory=list)

    def finish(self) -> Paper:
        sections = tuple(
            Section(name=name, text="\n".join(lines).strip()) for name, lines in self.sections
        )
        return Paper(
            arxiv_id=self.arxiv_id,
            title=self.title,
            display_title=_visible(plain_title(self.title)) or self.arxiv_id,
            url=self.url,
            image=self.image,
            is_thumbnail=self.is_thumbnail,
            votes=self.votes,
            authors=self.authors,
            sections=sections,
            line=self.line,
        )


def _visible(text: str) -> str:
    """`text`, or "" when it shows nothing: a title of zero-width spaces (or, its TeX read,
    `$\\,$`) renders to no letter at all, and a card or a link needs something to click (the
    arXiv id, then)."""
    shown = any(unicodedata.category(char)[0] not in "CZ" for char in text)
    return text if shown else ""


def _excerpt(text: str, *, limit: int = 80) -> str:
    """`text` cut to `limit` characters, so one bad value cannot flood the error line."""
    return text if len(text) <= limit else text[:limit] + "…"


def _parse_date(text: str, *, source: str, line: int) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise DigestError(
            f"bad date {_excerpt(text.strip(), limit=40)!r} (expected YYYY-MM-DD)",
            source=source,
            line=line,
        ) from None


def _split_url(url: str) -> SplitResult | None:
    """`url` split into parts, or None when it cannot be (an unclosed `[` IPv6 host)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def arxiv_id_from_url(url: str) -> str | None:
    """Return the arXiv id (without version) that `url` points at, or None.

    Old-style ids are spelt as arXiv does (`cs.AI/0701001`: archive lower case, subject class
    upper case), so one paper written two ways is one paper.
    """
    parts = _split_url(url)
    if parts is None or parts.scheme not in ("http", "https") or parts.hostname not in _ARXIV_HOSTS:
        return None
    match = _ARXIV.match(parts.path)
    if match is None:
        return None
    found = match.group("id")
    if "/" not in found:
        return found
    archive, number = found.split("/")
    name, dot, subject = archive.partition(".")
    return f"{name.lower()}{dot}{subject.upper()}/{number}"


def canonical_url(url: str) -> str:
    """An arXiv link (one `arxiv_id_from_url` accepts) as https on its host and path alone:
    no user@, port, query or fragment, which a digest could smuggle into every link."""
    parts = urlsplit(url)
    return f"https://{parts.hostname}{parts.path}"


def _hides_a_heading(raw: str, *, ignoring: bool) -> bool:
    """Whether a line that is not a heading looks like a paper heading behind stray characters.

    It has "# [" in its first 24 characters, and before that: only non-word characters
    ("¡### [Title](...)"), or two more "#" ("\t0### [", "#a) #(## ["), or, under a heading
    whose lines are ignored, anything ("[ZZ[# ["). Prose such as "Fixes #[3](...)" is none.
    """
    found = _HASH_BRACKET.search(raw, 0, 24)
    if found is None:
        return False
    before = raw[: found.start()]  # what stands before the last "#" of the heading
    return ignoring or before.count("#") >= 2 or _NON_WORD.fullmatch(before) is not None


def _links_to_arxiv(text: str) -> bool:
    """Whether any markdown link in `text` points at an arXiv paper."""
    return any(arxiv_id_from_url(target[1]) for target in _LINK_TARGET.finditer(text))


def _image(url: str, *, source: str, line: int) -> tuple[str | None, bool]:
    """Resolve an image reference; relative ones are uploader avatars on Hugging Face."""
    parts = _split_url(url)
    if parts is None:
        raise DigestError(
            f"image link is not a valid URL: {_excerpt(url)}", source=source, line=line
        )
    if url.startswith("/") and not url.startswith("//"):
        return urljoin(HF_BASE, url), False
    if parts.scheme not in ("http", "https"):
        return None, False
    return url, "/avatars/" not in parts.path


def _votes(value: str, *, source: str, line: int) -> int | None:
    if value in _NO_VOTES:
        return None
    if not (value.isascii() and value.isdigit()):
        raise DigestError(
            f"bad vote count {_excerpt(value, limit=40)!r} (expected a number or '-')",
            source=source,
            line=line,
        )
    # Compare lengths first: int() refuses strings of 4,300+ digits (zeros too).
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(MAX_VOTES)) or int(digits) > MAX_VOTES:
        raise DigestError(
            f"vote count {_excerpt(value, limit=20)} is over {MAX_VOTES:,}",
            source=source,
            line=line,
        )
    return int(digits)


class _Parser:
    """The state of one parse: the papers so far and the one being read."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.date: dt.date | None = None
        self.papers: list[Paper] = []
        self.seen: dict[str, int] = {}  # arXiv id -> line of its heading
        self.warnings: list[Notice] = []
        self.draft: _Draft | None = None
        # Lines under a duplicate paper or a non-paper heading; the warning was given there.
        self.ignoring = False

    def error(self, message: str, number: int) -> DigestError:
        return DigestError(message, source=self.source, line=number)

    def warn(self, message: str, number: int) -> None:
        self.warnings.append(Notice(self.source, number, message))

    def close(self) -> None:
        if self.draft is not None:
            paper = self.draft.finish()
            if any(len(s.text) > MAX_SECTION_CHARS for s in paper.sections):
                paper = self._cut_sections(paper)
            self.papers.append(paper)
        self.draft = None

    def _cut_sections(self, paper: Paper) -> Paper:
        """`paper` with each over-long section cut to MAX_SECTION_CHARS, each cut a warning."""
        sections = []
        for section in paper.sections:
            if len(section.text) > MAX_SECTION_CHARS:
                self.warn(
                    f"section {_excerpt(section.name, limit=40)!r} of this paper is "
                    f"{len(section.text):,} characters; cut to {MAX_SECTION_CHARS:,}",
                    paper.line,
                )
                text = section.text[: MAX_SECTION_CHARS - 1].rstrip() + "…"
                section = dataclasses.replace(section, text=text)
            sections.append(section)
        return dataclasses.replace(paper, sections=tuple(sections))

    def line(self, number: int, raw: str) -> None:
        """Take one line (without its line break) into the parse."""
        if len(raw) > MAX_LINE_CHARS:
            raise self.error(
                f"line is {len(raw):,} characters long; at most {MAX_LINE_CHARS:,}", number
            )
        kind = classify(raw)
        if kind is None:
            return
        if isinstance(kind, DayHeader):
            if self.date is not None or self.papers or self.draft is not None:
                raise self.error("a second '## Daily Papers' header", number)
            self.date = _parse_date(kind.date, source=self.source, line=number)
            return
        if isinstance(kind, Heading):
            self.heading(number, kind)
            return
        if _hides_a_heading(raw, ignoring=self.ignoring) and _links_to_arxiv(raw):
            # "¡### [Title](https://arxiv...)": a paper heading spoiled by a stray character would
            # otherwise be text, and its paper lost with only a warning.
            raise self.error("a paper heading ('### [Title](url)') must start its line", number)
        draft = self.draft
        if self.ignoring:
            return
        if draft is None:
            if self.date is not None:
                self.warn("text outside any paper ignored", number)
            return
        if isinstance(kind, Image):
            self.image(draft, number, kind.url)
        elif isinstance(kind, Field):
            self.field(draft, number, kind)
        elif isinstance(kind, SectionStart):
            draft.sections.append((kind.name, [kind.text]))
        elif draft.sections:
            draft.sections[-1][1].append(kind.text)  # a wrapped paragraph continues its section
        else:
            self.warn(f"unrecognised line in paper at line {draft.line} ignored", number)

    def heading(self, number: int, heading: Heading) -> None:
        link = heading.link
        if heading.level == 3:
            if link is None:
                raise self.error(
                    f"paper heading without a link (expected '{PAPER_HEADING}')", number
                )
            self.paper(number, title=link[0], url=link[1])
            return
        shown = _excerpt(f"{'#' * heading.level} {heading.text}".strip(), limit=60)
        if _links_to_arxiv(heading.text):
            # "#### #1 [Title](https://arxiv...)" is a paper heading too: never a lost paper.
            if link is None:
                raise self.error(
                    f"heading {shown!r} links to arXiv; a paper heading is '{PAPER_HEADING}'",
                    number,
                )
            raise self.error(
                f"paper heading with {heading.level} '#' (expected '{PAPER_HEADING}')", number
            )
        self.close()
        self.ignoring = True
        self.warn(
            f"heading {shown!r} is not a paper heading ('{PAPER_HEADING}');"
            " it and the lines under it are ignored",
            number,
        )

    def paper(self, number: int, *, title: str, url: str) -> None:
        self.close()
        if not title:
            raise self.error(f"paper heading without a title (expected '{PAPER_HEADING}')", number)
        if _split_url(url) is None:
            raise self.error(f"paper link is not a valid URL: {_excerpt(url)}", number)
        arxiv_id = arxiv_id_from_url(url)
        if arxiv_id is None:
            raise self.error(f"paper link is not an arXiv URL: {_excerpt(url)}", number)
        if arxiv_id in self.seen:
            first = self.seen[arxiv_id]
            self.warn(f"arXiv {arxiv_id} already listed at line {first}; keeping the first", number)
            self.ignoring = True
            return
        self.ignoring = False
        self.seen[arxiv_id] = number
        self.draft = _Draft(line=number, title=title, url=canonical_url(url), arxiv_id=arxiv_id)

    def image(self, draft: _Draft, number: int, url: str) -> None:
        resolved = _image(url, source=self.source, line=number)
        first = draft.field_lines.get("image")
        if first is not None:
            self.warn(
                f"a second image for the paper at line {draft.line} ignored; keeping line {first}",
                number,
            )
            return
        draft.field_lines["image"] = number
        draft.image, draft.is_thumbnail = resolved

    def field(self, draft: _Draft, number: int, field: Field) -> None:
        first = draft.field_lines.get(field.name)
        if first is not None:
            raise self.error(
                f"a second '{field.name}:' line for the paper at line {draft.line}"
                f" (the first is line {first})",
                number,
            )
        draft.field_lines[field.name] = number
        if field.name == "Vote":
            draft.votes = _votes(field.value, source=self.source, line=number)
        else:
            draft.authors = tuple(a.strip() for a in field.value.split(",") if a.strip())

    def result(self) -> ParseResult:
        """The digest read so far; DigestError if it has no date or no papers."""
        self.close()
        date = self.date
        if date is None:
            found = _DATE_IN_NAME.search(self.source.replace("\\", "/").rsplit("/", 1)[-1])
            if found is None:
                if not self.papers:
                    raise self.error(
                        "not a digest: no '## Daily Papers (YYYY-MM-DD)' header and no papers", 1
                    )
                raise self.error(
                    "no date: no '## Daily Papers (YYYY-MM-DD)' header and no YYYY-MM-DD in the file name",
                    1,
                )
            date = _parse_date(found.group(1), source=self.source, line=1)
        if not self.papers:
            raise self.error(f"not a digest: no '{PAPER_HEADING}' paper headings", 1)
        digest = Digest(date=date, papers=tuple(self.papers), source=self.source)
        return ParseResult(digest=digest, warnings=tuple(self.warnings))


def parse_digest(text: str, *, source: str = "<digest>") -> ParseResult:
    """Parse one digest; raise `DigestError` naming `source` and line on malformed input."""
    parser = _Parser(source)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, raw in enumerate(lines, start=1):
        parser.line(number, raw)
    return parser.result()
