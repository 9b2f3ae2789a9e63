"""Mutated real digests: the parser raises only DigestError and never drops or merges a paper.

The expectation comes from the golden summaries of the unmutated files (tests/golden), not
from the parser: every paper whose lines no mutation touched must come out with its golden
votes and authors, every injected paper with its own, and every `#... [` heading line must be
a paper or a notice on that line.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.digest.ingest import read_digest
from newsletter.digest.parse import ParseResult, parse_digest
from newsletter.errors import DigestError

from .conftest import DIGESTS

GOLDEN = Path(__file__).parent / "golden"
# A heading line that links somewhere, after the invisible characters a bad export leaves.
HEADING_WITH_LINK = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2060\ufeff]*#+\s*\[")
FIRST_MARK = 4242  # injected paper k has votes FIRST_MARK + k and authors ("Injected k",)

NASTY_LINES = [
    "",
    "#",
    "## Notes",
    "#### Notes",
    "##Daily Papers (2024-01-02)",
    "## Daily Papers (2024-01-02)",
    "### No link",
    "### [",
    "### [](https://arxiv.org/abs/2401.00001)",
    "### [T](https://[arxiv.org/abs/2503.00003)",
    "### [T](https://example.com/x)",
    "### [" + "](a" * 30_000,
    "![](https://[x/y.png)",
    "![](/avatars/a.svg)",
    "Vote: 99999999999999999999",
    "Vote: " + "9" * 5000,
    "Vote: 10000001",
    "Vote: -",
    "Vote: 1" + " " * 50_000 + "x",
    "Authors: ",
    "- **Extra**: text",
    "- **" + "a *" * 20_000,
    "x" * 100_001,
    "\ufeff",
    "\x00\x1b\x7f",
]
PREFIXES = ["\ufeff", "\x00", "\x1b", "\u200b", " ", "\t", "\x7f", "\u2060"]


@dataclass
class Line:
    owner: str | None  # the arXiv id of the paper block the line sits in
    text: str
    inject: int | None = None  # k for the heading line of injected paper k


@dataclass
class Doc:
    lines: list[Line]
    expected: dict[str, tuple[int | None, tuple[str, ...]]]
    injected: dict[str, int] = field(default_factory=dict)  # arXiv id -> heading level
    touched: set[str] = field(default_factory=set)

    def touch(self, pos: int) -> None:
        for i in (pos - 1, pos, pos + 1):
            if 0 <= i < len(self.lines) and self.lines[i].owner is not None:
                self.touched.add(self.lines[i].owner)  # type: ignore[arg-type]

    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def load(path: Path) -> Doc:
    golden = json.loads((GOLDEN / f"parse-{path.stem}.json").read_text(encoding="utf-8"))
    starts = {p["line"]: p["arxiv_id"] for p in golden["papers"]}
    owner: str | None = None
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        owner = starts.get(number, owner)
        lines.append(Line(owner, text))
    expected = {p["arxiv_id"]: (p["votes"], tuple(p["authors"])) for p in golden["papers"]}
    return Doc(lines, expected)


def apply(doc: Doc, op: tuple[str, int, object]) -> None:
    kind, at, payload = op
    pos = at % (len(doc.lines) + 1)
    doc.touch(pos)
    owner = doc.lines[pos - 1].owner if pos > 0 else None
    if kind == "delete" and pos < len(doc.lines):
        del doc.lines[pos]
    elif kind == "duplicate" and pos < len(doc.lines):
        doc.lines.insert(pos, Line(doc.lines[pos].owner, doc.lines[pos].text))
    elif kind == "prefix" and pos < len(doc.lines):
        doc.lines[pos].text = str(payload) + doc.lines[pos].text
    elif kind == "insert":
        doc.lines.insert(pos, Line(owner, str(payload)))
    elif kind == "inject":
        level, prefix = cast(tuple[int, str], payload)
        k = len(doc.injected)
        arxiv_id = f"2501.{90000 + k}"
        doc.injected[arxiv_id] = level
        doc.expected[arxiv_id] = (FIRST_MARK + k, (f"Injected {k}",))
        block = [
            Line(
                arxiv_id,
                f"{prefix}{'#' * level} [Injected {k}](https://arxiv.org/abs/{arxiv_id})",
                k,
            ),
            Line(arxiv_id, f"Vote: {FIRST_MARK + k}"),
            Line(arxiv_id, f"Authors: Injected {k}"),
            Line(arxiv_id, "- **What's New**: injected"),
        ]
        doc.lines[pos:pos] = block


junk_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=30
)
operations = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["delete", "duplicate"]), st.integers(0, 10_000), st.none()),
        st.tuples(
            st.just("insert"),
            st.integers(0, 10_000),
            st.one_of(st.sampled_from(NASTY_LINES), junk_text),
        ),
        st.tuples(
            st.just("prefix"),
            st.integers(0, 10_000),
            st.one_of(
                st.sampled_from(PREFIXES),
                st.characters(categories=("Cc", "Cf"), blacklist_characters="\r\n"),
            ),
        ),
        st.tuples(
            st.just("inject"),
            st.integers(0, 10_000),
            st.tuples(st.sampled_from([1, 2, 3, 3, 3, 4, 5, 6]), st.sampled_from(["", *PREFIXES])),
        ),
    ),
    max_size=6,
)


def check(doc: Doc, result: ParseResult) -> None:
    papers = {p.arxiv_id: p for p in result.digest.papers}
    noticed = {w.line for w in result.warnings}
    for number, line in enumerate(doc.lines, start=1):
        if HEADING_WITH_LINK.match(line.text):
            assert number in noticed or any(p.line == number for p in papers.values()), (
                f"heading line {number} neither a paper nor a notice: {line.text[:80]!r}"
            )
    for arxiv_id, (votes, authors) in doc.expected.items():
        if arxiv_id in doc.touched:
            continue
        assert arxiv_id in papers, f"{arxiv_id} dropped silently"
        assert (papers[arxiv_id].votes, papers[arxiv_id].authors) == (votes, authors)
    for k, arxiv_id in enumerate(doc.injected):
        if arxiv_id in doc.touched:
            continue
        heading = next(i for i, line in enumerate(doc.lines, start=1) if line.inject == k)
        assert papers[arxiv_id].line == heading
        for paper in papers.values():  # its votes and authors went to no other paper
            if paper.arxiv_id != arxiv_id:
                assert paper.votes != FIRST_MARK + k and f"Injected {k}" not in paper.authors


@settings(max_examples=250, deadline=None)
@given(path=st.sampled_from(DIGESTS), ops=operations)
def test_mutated_digest_never_drops_merges_or_crashes(
    path: Path, ops: list[tuple[str, int, object]]
) -> None:
    doc = load(path)
    for op in ops:
        apply(doc, op)
    text = doc.text()
    try:
        result = parse_digest(text, source=path.name)
    except DigestError as exc:
        assert exc.line is not None and 1 <= exc.line <= len(doc.lines)
        assert str(exc).startswith(f"{path.name}:{exc.line}: ") and "\n" not in str(exc)
        return
    # A paper heading of another level that links to arXiv is an error, never a silent skip.
    assert all(level == 3 for i, level in doc.injected.items() if i not in doc.touched)
    check(doc, result)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(DIGESTS),
    at=st.integers(0, 100_000),
    junk=st.binary(min_size=1, max_size=8),
)
def test_random_bytes_in_a_file_give_a_digest_or_a_digest_error(
    tmp_path: Path, path: Path, at: int, junk: bytes
) -> None:
    data = path.read_bytes()
    at %= len(data) + 1
    target = tmp_path / path.name
    target.write_bytes(data[:at] + junk + data[at:])
    try:
        digest, _ = read_digest(target)
    except DigestError as exc:
        assert str(exc).startswith(f"{target}:") and "\n" not in str(exc)
        return
    golden = json.loads((GOLDEN / f"parse-{path.stem}.json").read_text(encoding="utf-8"))
    assert len(digest.papers) == len(golden["papers"])  # a paper is never lost without an error


def best_of_three(text: str) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        parse_digest(text, source="d.md")
        times.append(time.perf_counter() - start)
    return min(times)


def test_parse_time_grows_linearly_with_the_file() -> None:
    """Four times the papers (and wrapped lines) takes about four times as long, not sixteen."""
    block = DIGESTS[0].read_text(encoding="utf-8").split("\n", 1)[1]  # without the header
    ids = re.findall(r"arxiv\.org/abs/(\d{4}\.\d{5})", block)

    def digest(copies: int) -> str:
        parts = ["## Daily Papers (2024-06-28)"]
        for n in range(copies):
            copy = block
            for i, arxiv_id in enumerate(ids):
                copy = copy.replace(arxiv_id, f"2407.{n * len(ids) + i:05d}")
            parts.append(copy + "\nwrapped section text\n" * 20)
        return "\n".join(parts)

    small, large = digest(40), digest(160)
    assert len(parse_digest(large).digest.papers) == 160 * len(ids)
    ratio = best_of_three(large) / best_of_three(small)
    assert ratio < 8, f"4x the input took {ratio:.1f}x the time"


@pytest.mark.parametrize("kind", ["### [", "Vote: 1", "Authors: a", "- **"])
def test_one_megabyte_line_is_rejected_in_well_under_a_second(kind: str) -> None:
    line = kind + ("](a" if kind == "### [" else " a ") * 350_000 + "x"
    start = time.perf_counter()
    with pytest.raises(DigestError, match=r"^d\.md:2: line is 1,050,0\d\d characters long"):
        parse_digest("## Daily Papers (2024-01-02)\n" + line + "\n", source="d.md")
    assert time.perf_counter() - start < 0.5
