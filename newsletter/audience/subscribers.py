"""Subscriber records (pure): e-mail normalisation, filter validation and reading the subscribers CSV.

The CSV has a header row (row 1) naming its columns; data rows are numbered from 2, as a
spreadsheet numbers them. Columns: email, name, keywords, min_votes (required) and exclude,
max_papers, cadence (optional; `daily`, the default, or `weekly`) and status (optional;
`active`, the default, `unsubscribed` or `bounced`). Keywords and exclude hold `;`-separated phrases. A bad row becomes a
`SubscriberError` naming its row and is left out; the good rows are still imported.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SubscriberError
from ..model import CADENCES, Filters, Subscriber, SubscriberRow
from .csv_records import read_records
from .match import normalize

REQUIRED_COLUMNS = ("email", "name", "keywords", "min_votes")
OPTIONAL_COLUMNS = ("exclude", "max_papers", "cadence", "status")
CSV_STATUSES = ("active", "unsubscribed", "bounced")  # a CSV may not make anyone pending
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

MIN_KEYWORD_CHARS = 2
MAX_KEYWORD_CHARS = 100
MAX_KEYWORDS = 50
MAX_NAME_CHARS = 200
MAX_VOTES = 1_000_000
MAX_PAPERS = 1_000

# Every `SubscriberError.code` this module raises, so a user interface can translate each one.
ERROR_CODES = (
    "email_invalid",  # not an e-mail address
    "email_encoded",  # holds an RFC 2047 encoded word (=?...?=), which mail readers decode
    "name_too_long",
    "name_encoded",  # holds an RFC 2047 encoded word, which mail readers would decode
    "newline",  # CR or LF inside a field
    "control_character",  # another C0/C1 control, DEL, a line/paragraph separator or bidi control
    "invisible_character",  # a keyword holding a zero-width, format, private-use or unassigned one
    "keyword_encoded",  # a keyword holding an RFC 2047 encoded word (=?...?=)
    "keyword_too_short",
    "keyword_too_long",
    "too_many_keywords",
    "min_votes_invalid",  # not a non-negative integer
    "max_papers_invalid",  # not a positive integer
    "cadence_invalid",  # neither daily nor weekly
    "status_invalid",  # not active, unsubscribed or bounced
    "duplicate_email",  # the same address earlier in the same file
    "too_many_fields",  # more cells than the header has columns
    "unknown_column",
    "missing_column",
    "duplicate_column",
    "not_utf8",  # a CSV row with bytes that are not UTF-8
    "not_csv",  # empty, unreadable, or not UTF-8 from its header on
)

_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PHRASE_SEPARATORS = re.compile(r"[;\r\n]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bq]\?[^?\s]*\?=", re.IGNORECASE)  # RFC 2047
# C0 and C1 controls, DEL, the Unicode line and paragraph separators and the bidi embeddings,
# overrides and isolates: a terminal or a mail client acts on them instead of showing them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_JSON_UNESCAPED = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _refuse_controls(text: str, *, field: str) -> None:
    found = _CONTROL.search(text)
    if found:
        raise SubscriberError(
            f"{field} holds control character U+{ord(found.group()):04X}",
            code="control_character",
            field=field,
        )


def escape_controls(text: str, *, json: bool = False) -> str:
    """`text` with each control character escaped (\\x1b, \\u2028), so it prints as it is stored.

    With `json`, as JSON escapes (\\u001b), for a JSON document: valid and decoding the same.
    """

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 and not json else f"\\u{code:04x}"

    # JSON has already escaped C0 in its strings; the C0 left are its own line breaks.
    return (_JSON_UNESCAPED if json else _CONTROL).sub(escape, text)


@dataclass(frozen=True, slots=True)
class SubscribersCsv:
    """A read subscribers CSV: the valid rows and one error per rejected row."""

    source: str
    rows: tuple[SubscriberRow, ...]
    rejected: tuple[SubscriberError, ...]


def normalize_email(text: str) -> str:
    """The address trimmed with its domain lower-cased; SubscriberError if it is not one."""
    address = text.strip()
    local, at, domain = address.rpartition("@")
    domain = domain.lower()
    labels = domain.split(".")
    if (
        not at
        or len(address) > 254
        or len(local) > 64
        or not _LOCAL.fullmatch(local)
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise SubscriberError(
            f"not an e-mail address: {address!r}", code="email_invalid", field="email"
        )
    if "=?" in local:
        # Header parsers decode =?utf-8?q?victim=40evil.com?= into another address entirely.
        raise SubscriberError(
            f"an e-mail address may not hold an encoded word (=?...?=): {address!r}",
            code="email_encoded",
            field="email",
        )
    return f"{local}@{domain}"


def split_phrases(text: str) -> tuple[str, ...]:
    """`;`-separated (or line-separated) phrases, trimmed, without blanks."""
    return tuple(p.strip() for p in _PHRASE_SEPARATORS.split(text) if p.strip())


def _refuse_invisible(text: str, *, field: str) -> None:
    """A keyword must read as it matches: no zero-width or other format character (but the
    joiners some scripts need), private-use, unassigned or surrogate code point; one made of
    them shows as nothing in the form, one holding them matches nothing."""
    for char in text:
        category = unicodedata.category(char)
        if category in ("Co", "Cn", "Cs") or (category == "Cf" and char not in "\u200c\u200d"):
            raise SubscriberError(
                f"{field} holds invisible character U+{ord(char):04X}",
                code="invisible_character",
                field=field,
            )


def _phrases(text: str, *, name: str) -> tuple[str, ...]:
    phrases: list[str] = []
    seen: set[str] = set()
    for phrase in split_phrases(text):
        _refuse_controls(phrase, field=name)
        _refuse_invisible(phrase, field=name)
        if _ENCODED_WORD.search(phrase):
            raise SubscriberError(
                f"{name} {phrase[:40]!r} holds an encoded word (=?...?=)",
                code="keyword_encoded",
                field=name,
            )
        norm = normalize(phrase)
        length = len(norm)
        if length < MIN_KEYWORD_CHARS:
            raise SubscriberError(
                f"{name} {phrase!r} is shorter than {MIN_KEYWORD_CHARS} characters",
                code="keyword_too_short",
                field=name,
            )
        if length > MAX_KEYWORD_CHARS:
            raise SubscriberError(
                f"{name} {phrase[:20]!r}... is longer than {MAX_KEYWORD_CHARS} characters",
                code="keyword_too_long",
                field=name,
            )
        if norm not in seen:  # "RAG;rag" is one keyword
            seen.add(norm)
            phrases.append(phrase)
    if len(phrases) > MAX_KEYWORDS:
        raise SubscriberError(
            f"{len(phrases)} {name} phrases; at most {MAX_KEYWORDS}",
            code="too_many_keywords",
            field=name,
        )
    return tuple(phrases)


def _integer(text: str, *, name: str, code: str, low: int, high: int) -> int | None:
    value = text.strip()
    if not value:
        return None
    # The length check comes first: int() refuses (raises on) strings of 4,300+ digits.
    digits = value.isascii() and value.isdigit() and len(value) <= len(str(high))
    if not digits or not low <= int(value) <= high:
        kind = "a non-negative" if low == 0 else "a positive"
        raise SubscriberError(
            f"{name} must be {kind} whole number up to {high}, not {value!r}",
            code=code,
            field=name,
        )
    return int(value)


def validate_filters(
    *, keywords: str = "", exclude: str = "", min_votes: str = "", max_papers: str = ""
) -> Filters:
    """Filters from form or CSV text; SubscriberError with a `code` and `field` if invalid.

    Keywords and exclude are `;`-separated phrases of at least two characters; an empty
    min_votes is 0 and an empty max_papers is no cap.
    """
    return Filters(
        keywords=_phrases(keywords, name="keywords"),
        exclude=_phrases(exclude, name="exclude"),
        min_votes=_integer(
            min_votes, name="min_votes", code="min_votes_invalid", low=0, high=MAX_VOTES
        )
        or 0,
        max_papers=_integer(
            max_papers, name="max_papers", code="max_papers_invalid", low=1, high=MAX_PAPERS
        ),
    )


def validate_cadence(text: str) -> str:
    """`daily` (also when empty) or `weekly`, in any case; SubscriberError otherwise."""
    return _one_of(text, CADENCES, field="cadence")


def _one_of(text: str, choices: tuple[str, ...], *, field: str) -> str:
    """`text` trimmed and lower-cased (empty: the first choice) when it is one of `choices`;
    SubscriberError (code FIELD_invalid) otherwise."""
    value = text.strip().lower() or choices[0]
    if value not in choices:
        listed = f"{', '.join(choices[:-1])} or {choices[-1]}"
        raise SubscriberError(
            f"{field} must be {listed}, not {text.strip()!r}",
            code=f"{field}_invalid",
            field=field,
        )
    return value


def validate_name(text: str) -> str:
    """A display name, trimmed; SubscriberError if it is too long, spans lines, holds controls
    or an encoded word."""
    name = text.strip()
    if "\r" in name or "\n" in name:
        raise SubscriberError("name holds a line break", code="newline", field="name")
    _refuse_controls(name, field="name")
    if _ENCODED_WORD.search(name):
        # Mail readers decode an encoded word wherever it stands in a To: header, so the name
        # would read as whatever it encodes, not as typed.
        raise SubscriberError(
            "name may not hold an encoded word (=?...?=)", code="name_encoded", field="name"
        )
    if len(name) > MAX_NAME_CHARS:
        raise SubscriberError(
            f"name is longer than {MAX_NAME_CHARS} characters", code="name_too_long", field="name"
        )
    return name


def _header(cells: list[str], *, source: str) -> list[str]:
    columns = [c.strip().lower() for c in cells]
    valid = ", ".join(COLUMNS)
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise SubscriberError(
            f"unknown column {', '.join(map(repr, unknown))}; valid columns: {valid}",
            row=1,
            source=source,
            code="unknown_column",
        )
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise SubscriberError(
            f"column {', '.join(duplicates)} appears twice",
            row=1,
            source=source,
            code="duplicate_column",
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SubscriberError(
            f"missing column {', '.join(missing)}; required: {', '.join(REQUIRED_COLUMNS)}",
            row=1,
            source=source,
            code="missing_column",
        )
    return columns


def _row(cells: list[str], columns: list[str], *, number: int) -> SubscriberRow:
    if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
        raise SubscriberError(
            f"{len(cells)} fields but the header names {len(columns)}", code="too_many_fields"
        )
    values = dict(zip(columns, cells, strict=False))  # missing trailing cells are empty
    for column, value in values.items():
        if "\r" in value or "\n" in value:
            raise SubscriberError(f"{column} holds a line break", code="newline", field=column)
        if _UNDECODED.search(value):  # read_subscribers_csv kept the bytes it could not decode
            raise SubscriberError(f"{column} is not UTF-8 text", code="not_utf8", field=column)
    return SubscriberRow(
        row=number,
        email=normalize_email(values.get("email", "")),
        name=validate_name(values.get("name", "")),
        filters=validate_filters(
            keywords=values.get("keywords", ""),
            exclude=values.get("exclude", ""),
            min_votes=values.get("min_votes", ""),
            max_papers=values.get("max_papers", ""),
        ),
        cadence=validate_cadence(values.get("cadence", "")),
        status=_one_of(values.get("status", ""), CSV_STATUSES, field="status"),
    )


_UNDECODED = re.compile("[\udc80-\udcff]")  # a byte "surrogateescape" could not decode


def parse_subscribers_csv(text: str, *, source: str = "<csv>") -> SubscribersCsv:
    """Read CSV text; bad rows are rejected with their row number, bad headers raise."""
    records = read_records(text.removeprefix("\ufeff"))
    _, header = next(records, (1, []))
    if isinstance(header, str):  # the header row itself could not be read
        raise SubscriberError(header, row=1, source=source, code="not_csv")
    if any(_UNDECODED.search(cell) for cell in header):  # a spreadsheet's binary file, say
        raise SubscriberError("not UTF-8 text", row=1, source=source, code="not_csv")
    if not any(c.strip() for c in header):
        raise SubscriberError(
            f"no header row; expected columns: {', '.join(COLUMNS)}",
            row=1,
            source=source,
            code="not_csv",
        )
    columns = _header(header, source=source)
    rows: list[SubscriberRow] = []
    rejected: list[SubscriberError] = []
    first_row: dict[str, int] = {}  # by address lower-cased: its case names no one new
    for number, cells in records:
        if isinstance(cells, str):  # a record the csv module could not read, e.g. too long
            rejected.append(SubscriberError(cells, row=number, source=source, code="not_csv"))
            continue
        if not any(c.strip() for c in cells):
            continue  # blank line
        try:
            row = _row(cells, columns, number=number)
            if row.email.lower() in first_row:
                raise SubscriberError(
                    f"{row.email} is already on row {first_row[row.email.lower()]}",
                    code="duplicate_email",
                    field="email",
                )
        except SubscriberError as exc:
            rejected.append(
                SubscriberError(
                    exc.message, row=number, source=source, code=exc.code, field=exc.field
                )
            )
            continue
        first_row[row.email.lower()] = number
        rows.append(row)
    return SubscribersCsv(source=source, rows=tuple(rows), rejected=tuple(rejected))


def read_subscribers_csv(path: Path) -> SubscribersCsv:
    """Read a subscribers CSV file (UTF-8, with or without BOM).

    A row with bytes that are not UTF-8 is rejected alone (its cells keep them as lone
    surrogates, which no name or address may hold); the other rows are read as usual.
    """
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise SubscriberError(
            f"cannot read: {exc.strerror or exc}", source=str(path), code="not_csv"
        ) from None
    return parse_subscribers_csv(text, source=str(path))


def subscribers_csv(subscribers: Iterable[Subscriber]) -> str:
    """`subscribers` as the CSV `read_subscribers` reads: every column, phrases `;`-separated,
    so importing it into an empty database gives the same subscribers, the unsubscribed and
    bounced ones included as such (pending sign-ups are not subscribers yet: left out)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for s in subscribers:
        if s.status not in CSV_STATUSES:
            continue
        cap = s.filters.max_papers
        writer.writerow(
            [
                s.email,
                s.name,
                "; ".join(s.filters.keywords),
                s.filters.min_votes,
                "; ".join(s.filters.exclude),
                "" if cap is None else cap,
                s.cadence,
                s.status,
            ]
        )
    return out.getvalue()
