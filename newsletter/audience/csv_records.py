"""Read CSV text record by record, so one unreadable record costs its row, not the file.

The csv module raises `csv.Error` for a field over its size limit (128 KiB) and leaves the
reader in the middle of that record: reading on would turn the rest of a quoted multi-line
field into made-up rows. Here the record is skipped to its true end (quotes tracked as the
csv module's default dialect does) and reading restarts on the next record.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator


def _ends_in_quotes(body: str, *, inside: bool) -> bool:
    """Whether a line's text (without its line break) ends inside a quoted field.

    The default dialect, not strict: a quote opens a field only at its start, `""` inside
    one is a literal quote, and text after a closing quote belongs to the same field.
    """
    i, n = 0, len(body)
    start_of_field = not inside
    while i < n:
        if inside:
            close = body.find('"', i)
            if close < 0:
                return True
            if body.startswith('""', close):
                i = close + 2
                continue
            inside, i = False, close + 1
        elif start_of_field and body[i] == '"':
            inside, start_of_field, i = True, False, i + 1
        else:
            comma = body.find(",", i)
            if comma < 0:
                return False
            start_of_field, i = True, comma + 1
    return inside


def _record_end(lines: list[str], start: int) -> int:
    """The index of the first line after the record that starts at `lines[start]`."""
    inside = False
    for index in range(start, len(lines)):
        inside = _ends_in_quotes(lines[index].rstrip("\r\n"), inside=inside)
        if not inside:
            return index + 1
    return len(lines)


def _problem(exc: csv.Error) -> str:
    if "field limit" in str(exc):
        return f"a field is over {csv.field_size_limit() // 1024} KB"
    return f"not valid CSV: {exc}"


def read_records(text: str) -> Iterator[tuple[int, list[str] | str]]:
    """(row, cells) for each record, or (row, problem) for one that cannot be read.

    Rows count records from 1, as a spreadsheet numbers them; a blank line is a row of no cells.
    """
    lines = io.StringIO(text, newline="").readlines()
    position = 0  # the next line the csv reader will take

    def feed() -> Iterator[str]:
        nonlocal position
        while position < len(lines):
            position += 1
            yield lines[position - 1]

    row = 0
    while position < len(lines):
        reader = csv.reader(feed())
        while True:
            start = position
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row += 1
                yield row, _problem(exc)
                position = _record_end(lines, start)
                break  # a fresh reader: this one is mid-record
            row += 1
            yield row, cells
