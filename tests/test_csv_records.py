"""CSV records read one by one: an oversized field costs its own row, nothing else."""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.audience.csv_records import _record_end, read_records

BIG = "x" * 140_000


def test_oversized_fields_are_rows_of_their_own() -> None:
    text = (
        "email,name\n"
        "a@x.org,A\n"
        f"b@x.org,{BIG}\n"
        'c@x.org,"C, with\nline breaks and ""quotes"""\n'
        f'd@x.org,"{BIG}\nstill d, ""quoted"", ,\n"\n'
        "e@x.org,E\r\n"
        f'"{BIG}'  # unclosed at the end of the file
    )
    assert list(read_records(text)) == [
        (1, ["email", "name"]),
        (2, ["a@x.org", "A"]),
        (3, "a field is over 128 KB"),
        (4, ["c@x.org", 'C, with\nline breaks and "quotes"']),
        (5, "a field is over 128 KB"),
        (6, ["e@x.org", "E"]),
        (7, "a field is over 128 KB"),
    ]


def test_blank_lines_are_empty_rows() -> None:
    assert list(read_records("a\n\nb\n")) == [(1, ["a"]), (2, []), (3, ["b"])]


cells = st.text(alphabet='ab,"\n\r ', max_size=12)


@settings(max_examples=300)
@given(text=st.lists(cells, max_size=6).map("".join))
def test_record_ends_agree_with_the_csv_module(text: str) -> None:
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(iter(lines))
    start = 0
    for _ in reader:
        assert _record_end(lines, start) == reader.line_num
        start = reader.line_num
