"""Headings, repeated fields and long lines: nothing is folded, overwritten or slow."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.digest.lines import Heading, classify
from newsletter.digest.parse import parse_digest
from newsletter.errors import DigestError

from .conftest import FIXTURES

HEADER = "## Daily Papers (2024-01-02)\n"
FIRST = (
    "### [First](https://arxiv.org/abs/2401.00001)\n"
    "Vote: 7\n"
    "Authors: Ann, Bob\n"
    "- **What's New**: first things\n"
)


def second(heading: str = "### ") -> str:
    return (
        f"{heading}[Second](https://arxiv.org/abs/2401.00002)\n"
        "Vote: 99\n"
        "Authors: Zed\n"
        "- **What's New**: second things\n"
    )


@pytest.mark.parametrize(
    "prefix",
    ["\ufeff", "\x00", "\x1b", "\u200b", "  ", "\t", "\u00a0"],
    ids=["bom", "nul", "escape", "zero-width-space", "spaces", "tab", "nbsp"],
)
def test_heading_after_stray_invisible_characters_is_a_paper(prefix: str) -> None:
    result = parse_digest(HEADER + FIRST + second(prefix + "### "), source="d.md")
    first, paper = result.digest.papers
    assert (first.votes, first.authors) == (7, ("Ann", "Bob"))
    assert first.sections[0].text == "first things"
    assert (paper.arxiv_id, paper.votes, paper.authors, paper.line) == (
        "2401.00002",
        99,
        ("Zed",),
        6,
    )
    assert result.warnings == ()


def test_heading_without_space_is_a_paper() -> None:
    (_, paper) = parse_digest(HEADER + FIRST + second("###"), source="d.md").digest.papers
    assert (paper.arxiv_id, paper.votes) == ("2401.00002", 99)


@pytest.mark.parametrize("hashes", ["#", "##", "####", "#####", "######", "##########"])
def test_arxiv_heading_of_another_level_is_an_error(hashes: str) -> None:
    with pytest.raises(DigestError) as info:
        parse_digest(HEADER + FIRST + second(hashes + " "), source="d.md")
    assert str(info.value) == (
        f"d.md:6: paper heading with {len(hashes)} '#' "
        "(expected '### [Title](https://arxiv.org/abs/ID)')"
    )


def test_other_heading_ends_the_paper_and_is_a_warning() -> None:
    text = HEADER + FIRST + "#### Notes\nVote: 99\nAuthors: Zed\n- **Aside**: x\n"
    result = parse_digest(text, source="d.md")
    (paper,) = result.digest.papers
    assert (paper.votes, paper.authors) == (7, ("Ann", "Bob"))
    assert [s.name for s in paper.sections] == ["What's New"]
    assert [str(w) for w in result.warnings] == [
        "d.md:6: warning: heading '#### Notes' is not a paper heading"
        " ('### [Title](https://arxiv.org/abs/ID)'); it and the lines under it are ignored"
    ]


def test_heading_before_the_first_paper_is_a_warning() -> None:
    result = parse_digest("# My digest\n" + HEADER + FIRST, source="d.md")
    assert [p.arxiv_id for p in result.digest.papers] == ["2401.00001"]
    assert [w.line for w in result.warnings] == [1]


def test_paper_after_an_ignored_heading_is_read() -> None:
    text = HEADER + FIRST + "## Extras\nsome text\n" + second()
    result = parse_digest(text, source="d.md")
    assert [(p.arxiv_id, p.votes) for p in result.digest.papers] == [
        ("2401.00001", 7),
        ("2401.00002", 99),
    ]
    assert [w.line for w in result.warnings] == [6]


@pytest.mark.parametrize(("extra", "name"), [("Vote: 99\n", "Vote"), ("Authors: Zed\n", "Authors")])
def test_second_field_for_one_paper_is_an_error(extra: str, name: str) -> None:
    with pytest.raises(DigestError) as info:
        parse_digest(HEADER + FIRST + extra, source="d.md")
    assert str(info.value) == (
        f"d.md:6: a second '{name}:' line for the paper at line 2 (the first is line "
        f"{3 if name == 'Vote' else 4})"
    )


def test_second_image_is_a_warning_and_the_first_is_kept() -> None:
    text = HEADER + FIRST.replace(
        "Vote: 7\n", "![](https://x.example/1.png)\nVote: 7\n![](https://x.example/2.png)\n"
    )
    result = parse_digest(text, source="d.md")
    (paper,) = result.digest.papers
    assert paper.image == "https://x.example/1.png"
    assert [str(w) for w in result.warnings] == [
        "d.md:5: warning: a second image for the paper at line 2 ignored; keeping line 3"
    ]


def test_empty_title_is_an_error() -> None:
    with pytest.raises(DigestError, match=r"^d\.md:2: paper heading without a title"):
        parse_digest(HEADER + "### [](https://arxiv.org/abs/2401.00001)\n", source="d.md")


def test_folded_heading_fails_through_the_cli(
    runner: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "2024-01-02.md"
    bad.write_text(HEADER + FIRST + second("#### "), encoding="utf-8")
    result = runner.invoke(main, ["ingest", str(bad), str(FIXTURES / "2024-06-28.md")], env=cli_env)
    assert result.exit_code == 1
    assert f"error: {bad}:6: paper heading with 4 '#'" in result.stderr
    assert "2024-06-28.md: added 2024-06-28 (9 papers)" in result.stdout


def seconds(text: str) -> float:
    start = time.perf_counter()
    with contextlib.suppress(DigestError):
        parse_digest(text, source="d.md")
    return time.perf_counter() - start


# The heading, vote and authors lines took 1 to 13 s with the old regular expressions (the
# heading's backtracking is quadratic); the others guard the rest of the classifier.
@pytest.mark.parametrize(
    "line",
    [
        "### [" + "](a" * 33_000,
        "#### [" + "](a" * 33_000,
        "Vote: 1" + " " * 99_000 + "x",
        "Authors: a" + " " * 99_000 + "b",
        "![](" + ")" * 99_000 + "x",
        "- **" + "a *" * 33_000,
    ],
    ids=["paper-heading", "other-heading", "vote", "authors", "image", "section"],
)
def test_pathological_line_parses_fast(line: str) -> None:
    assert len(line) < 100_000
    assert seconds(HEADER + FIRST + line + "\n") < 1.0


def test_many_continuation_lines_parse_in_linear_time() -> None:
    text = HEADER + FIRST + "a wrapped line of section text\n" * 200_000
    assert seconds(text) < 2.0
    result = parse_digest(text, source="d.md")
    (paper,) = result.digest.papers
    # Every line was read (the warning counts them all), then the section cut to its bound.
    whole = len("first things") + 200_000 * len("\na wrapped line of section text")
    assert [w.message for w in result.warnings] == [
        f'section "What\'s New" of this paper is {whole:,} characters; cut to 2,000'
    ]
    cut = paper.sections[0].text
    assert cut.endswith("\na…") and len(cut) == 2_000 - 1  # the line break before it trimmed


def test_overlong_line_is_an_error_naming_it() -> None:
    text = HEADER + FIRST + "### [" + "](a" * 340_000 + "\n"
    start = time.perf_counter()
    with pytest.raises(DigestError) as info:
        parse_digest(text, source="d.md")
    assert time.perf_counter() - start < 1.0
    assert str(info.value) == "d.md:6: line is 1,020,005 characters long; at most 100,000"


@pytest.mark.parametrize("junk", ["\x00", "\u200b", "\x1b", "\ufeff", "\u00a0", " ", "\t"])
def test_an_invisible_character_inside_the_hashes_keeps_the_heading(junk: str) -> None:
    # Found by the fuzz test: "#\x00## [Title](...)" was read as text and its paper dropped.
    found = classify(f"#{junk}## [Step-DPO](https://arxiv.org/abs/2406.18629)")
    assert isinstance(found, Heading) and found.level == 3
    assert found.link == ("Step-DPO", "https://arxiv.org/abs/2406.18629")


@pytest.mark.parametrize("stray", ["¡", "0", "\t0", "ab", "x.", "-·", "a b", ":]", "#a) #("])
def test_a_paper_heading_inside_a_line_is_an_error_not_a_lost_paper(stray: str) -> None:
    # Found by the fuzz test: "¡### [Title](...)", and later "0### [Title](...)", were read as
    # text and their paper dropped with only a warning.
    text = f"## Daily Papers (2024-06-28)\n\n{stray}### [Step-DPO](https://arxiv.org/abs/2406.18629)\nVote: 3\n"
    with pytest.raises(DigestError, match=r"x\.md:3: a paper heading .* must start its line"):
        parse_digest(text, source="x.md")


def test_a_paper_heading_hidden_under_an_ignored_heading_is_an_error() -> None:
    # Found by the fuzz test: "##]" then "[ZZ[# [Title](...)": the heading "## ]" is ignored
    # with the lines under it, and the paper with them.
    text = HEADER + FIRST + "##]\n[ZZ[# [SeaKR](https://arxiv.org/abs/2406.19215)\nVote: 3\n"
    with pytest.raises(DigestError, match=r"d\.md:7: a paper heading .* must start its line"):
        parse_digest(text, source="d.md")


@pytest.mark.parametrize(
    "line",
    [
        "Issue #[12](https://github.com/a/b/issues/12) fixed",
        "- **Code**: #[repo](https://github.com/a/b)",
        "See # [docs](https://example.com)",
        "→ #[12](https://github.com/a/b/issues/12)",
        "Fixes #[3](https://arxiv.org/abs/2401.00009) too",
    ],
)
def test_a_hash_and_link_inside_prose_is_section_text(line: str) -> None:
    result = parse_digest(HEADER + FIRST + line + "\n", source="d.md")
    (paper,) = result.digest.papers
    assert line.removeprefix("- **Code**: ") in paper.sections[-1].text
    assert result.warnings == ()


def test_a_hash_in_a_paper_heading_title_is_an_error_not_a_deeper_heading() -> None:
    text = HEADER + FIRST + "### #1 [Lost](https://arxiv.org/abs/2412.00002)\nVote: 5\n"
    with pytest.raises(DigestError) as info:
        parse_digest(text, source="d.md")
    assert str(info.value) == (
        "d.md:6: paper heading without a link (expected '### [Title](https://arxiv.org/abs/ID)')"
    )


@pytest.mark.parametrize(
    "line",
    [
        "#### #1 [Lost](https://arxiv.org/abs/2412.00002)",
        "## See [Lost](https://arxiv.org/abs/2412.00002) here",
        "# [Lost](https://arxiv.org/abs/2412.00002) and more",
    ],
)
def test_a_heading_linking_to_arxiv_anywhere_is_an_error(line: str) -> None:
    with pytest.raises(DigestError) as info:
        parse_digest(HEADER + FIRST + line + "\nVote: 5\n", source="d.md")
    assert str(info.value) == (
        f"d.md:6: heading {line!r} links to arXiv;"
        " a paper heading is '### [Title](https://arxiv.org/abs/ID)'"
    )


def test_invisible_characters_in_a_paper_title_are_kept() -> None:
    title = "Coder 👩\u200d💻 soft\u00adhyphen \u2060end"
    found = classify(f"#\x00##\u200b [{title}](https://arxiv.org/abs/2401.00001)\x00")
    assert found == Heading(
        level=3,
        text=f"[{title}](https://arxiv.org/abs/2401.00001)",
        link=(title, "https://arxiv.org/abs/2401.00001"),
    )
    (paper,) = parse_digest(
        HEADER + f"### [{title}](https://arxiv.org/abs/2401.00001)\n", source="d.md"
    ).digest.papers
    assert paper.title == title
