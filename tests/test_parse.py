"""The digest parser: real files against golden summaries, and every variation and bad input."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from newsletter.digest.parse import parse_digest
from newsletter.errors import DigestError

from .conftest import DIGESTS

GOLDEN = Path(__file__).parent / "golden"


def summary(path: Path) -> dict[str, object]:
    result = parse_digest(path.read_text(encoding="utf-8"), source=path.name)
    return {
        "date": result.digest.date.isoformat(),
        "warnings": [str(w) for w in result.warnings],
        "papers": [
            {
                "arxiv_id": p.arxiv_id,
                "display_title": p.display_title,
                "votes": p.votes,
                "is_thumbnail": p.is_thumbnail,
                "image": p.image,
                "authors": list(p.authors),
                "sections": [s.name for s in p.sections],
                "line": p.line,
                "section_chars": [len(s.text) for s in p.sections],
            }
            for p in result.digest.papers
        ],
    }


@pytest.mark.parametrize("path", DIGESTS, ids=lambda p: p.name)
def test_real_digest_matches_golden(path: Path, request: pytest.FixtureRequest) -> None:
    golden = GOLDEN / f"parse-{path.stem}.json"
    got = summary(path)
    if request.config.getoption("--update-golden"):
        golden.write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    assert got == json.loads(golden.read_text(encoding="utf-8"))


def test_real_digests_paper_counts_and_special_cases() -> None:
    by_name = {
        p.name: parse_digest(p.read_text(encoding="utf-8"), source=p.name).digest for p in DIGESTS
    }
    assert {n: len(d.papers) for n, d in by_name.items()} == {
        "2024-06-28.md": 9,
        "2024-10-16.md": 18,
        "2024-12-13.md": 27,
    }
    october = {p.arxiv_id: p for p in by_name["2024-10-16.md"].papers}
    assert (
        october["2410.09342"].title
        == "LLM$\\times$MapReduce: Simplified Long-Sequence Processing using Large Language Models"
    )
    assert october["2410.09342"].display_title.startswith("LLM×MapReduce:")
    assert october["2410.11419"].display_title.startswith("GS³:")
    assert october["2410.11619"].votes is None  # "Vote: -"
    avatar = october["2410.10816"]
    assert avatar.image == "https://huggingface.co/avatars/2de1b1539a86452c2c89570eeb02f5ab.svg"
    assert not avatar.is_thumbnail
    assert [s.name for s in october["2410.11805"].sections] == ["What's New"]  # one section only
    december = by_name["2024-12-13.md"]
    assert all(len(p.sections) >= 1 for p in december.papers)  # bold-italic labels parse
    first = by_name["2024-06-28.md"].papers[0]
    assert first.votes == 14 and first.authors[0] == "Senqiao Yang" and len(first.authors) == 6
    assert first.sections[2].text.startswith("Step-DPO로 Qwen-72B-Instruct")


PAPER = """### [A Paper](https://arxiv.org/abs/2401.00001v2)
![](https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2401.00001.png)
Vote: 7
Authors: Ann, Bob
- **What's New**: new things
- **Technical Details**: details
- **Performance Highlights**: fast
"""


def parse(text: str, source: str = "2024-01-02.md"):  # type: ignore[no-untyped-def]
    return parse_digest(text, source=source)


def test_minimal_digest_and_version_suffix() -> None:
    digest = parse("## Daily Papers (2024-01-02)\n\n" + PAPER).digest
    assert digest.date == dt.date(2024, 1, 2)
    (paper,) = digest.papers
    assert paper.arxiv_id == "2401.00001"
    assert paper.url == "https://arxiv.org/abs/2401.00001v2"
    assert paper.votes == 7 and paper.authors == ("Ann", "Bob") and paper.is_thumbnail
    assert [(s.name, s.text) for s in paper.sections] == [
        ("What's New", "new things"),
        ("Technical Details", "details"),
        ("Performance Highlights", "fast"),
    ]


def test_bold_italic_labels_crlf_bom_and_blank_lines() -> None:
    text = "\ufeff## Daily Papers (2024-01-02)\r\n\r\n\r\n" + PAPER.replace("**", "***").replace(
        "\n", "\r\n\r\n"
    )
    (paper,) = parse(text).digest.papers
    assert [s.name for s in paper.sections] == [
        "What's New",
        "Technical Details",
        "Performance Highlights",
    ]
    assert paper.sections[0].text == "new things"
    assert paper.authors == ("Ann", "Bob")


def test_unknown_vote_is_none_not_zero() -> None:
    (paper,) = parse(
        "## Daily Papers (2024-01-02)\n" + PAPER.replace("Vote: 7", "Vote: -")
    ).digest.papers
    assert paper.votes is None


def test_relative_avatar_resolved_and_not_a_thumbnail() -> None:
    text = PAPER.replace(
        "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2401.00001.png",
        "/avatars/abc.svg",
    )
    (paper,) = parse("## Daily Papers (2024-01-02)\n" + text).digest.papers
    assert paper.image == "https://huggingface.co/avatars/abc.svg"
    assert paper.is_thumbnail is False


def test_file_ending_mid_entry_keeps_the_paper() -> None:
    text = (
        "## Daily Papers (2024-01-02)\n"
        + PAPER
        + "\n### [Second](https://arxiv.org/abs/2401.00002)\nVote: 3\n- **What's New**: only"
    )
    papers = parse(text).digest.papers
    assert [p.arxiv_id for p in papers] == ["2401.00001", "2401.00002"]
    assert papers[1].sections[0].text == "only" and papers[1].authors == ()


def test_tex_titles_keep_raw_and_offer_display() -> None:
    text = PAPER.replace("A Paper", "LLM$\\times$MapReduce and GS^3")
    (paper,) = parse("## Daily Papers (2024-01-02)\n" + text).digest.papers
    assert paper.title == "LLM$\\times$MapReduce and GS^3"
    assert paper.display_title == "LLM×MapReduce and GS³"


@pytest.mark.parametrize("title", ["$\\;$", "$\\,$", "\u200b\u200b"])
def test_a_title_that_shows_nothing_displays_the_arxiv_id(title: str) -> None:
    # The email's card was an empty link, its preheader began with nothing.
    text = PAPER.replace("A Paper", title)
    (paper,) = parse("## Daily Papers (2024-01-02)\n" + text).digest.papers
    assert paper.title == title
    assert paper.display_title == "2401.00001"


@pytest.mark.parametrize(
    ("link", "kept"),
    [
        (
            'https://arxiv.org/abs/2401.00001?x="><script>alert(1)</script>',
            "https://arxiv.org/abs/2401.00001",
        ),
        (
            'https://arxiv.org/abs/2401.00001#"onmouseover="alert(1)',
            "https://arxiv.org/abs/2401.00001",
        ),
        ("https://evil.example@arxiv.org/abs/2401.00001", "https://arxiv.org/abs/2401.00001"),
        ("https://arxiv.org:8443/abs/2401.00001v2", "https://arxiv.org/abs/2401.00001v2"),
        ("http://ARXIV.org/pdf/2401.00001.pdf", "https://arxiv.org/pdf/2401.00001.pdf"),
    ],
)
def test_a_paper_link_keeps_only_host_and_path_over_https(link: str, kept: str) -> None:
    # Escaped everywhere, yet a dead port, a user@ that reads as phishing, or '"<>' in an
    # RSS <link> (an invalid URI) went into every output.
    (paper,) = parse(
        "## Daily Papers (2024-01-02)\n" + PAPER.replace("https://arxiv.org/abs/2401.00001v2", link)
    ).digest.papers
    assert (paper.arxiv_id, paper.url) == ("2401.00001", kept)


def test_old_style_ids_are_one_paper_however_cased() -> None:
    texts = [
        PAPER.replace("https://arxiv.org/abs/2401.00001v2", f"https://arxiv.org/abs/{old}")
        for old in ("cs.AI/0701001", "cs.ai/0701001", "CS.AI/0701001")
    ]
    result = parse("## Daily Papers (2024-01-02)\n" + "\n".join(texts))
    (paper,) = result.digest.papers
    assert paper.arxiv_id == "cs.AI/0701001"
    assert [w.line for w in result.warnings] == [10, 18]  # each later one: already listed


def test_other_section_names_kept_in_order() -> None:
    text = PAPER.replace(
        "- **Technical Details**: details\n", "- **Limitations**: some\n- **Code**: github\n"
    )
    (paper,) = parse("## Daily Papers (2024-01-02)\n" + text).digest.papers
    assert [s.name for s in paper.sections] == [
        "What's New",
        "Limitations",
        "Code",
        "Performance Highlights",
    ]


def test_wrapped_section_text_continues() -> None:
    text = PAPER.replace(
        "- **What's New**: new things\n", "- **What's New**: new things\nand more\n"
    )
    (paper,) = parse("## Daily Papers (2024-01-02)\n" + text).digest.papers
    assert paper.sections[0].text == "new things\nand more"


def test_an_overlong_section_is_cut_with_a_warning() -> None:
    # Six 96,000-character lines under one label crowded every other paper out of the feeds
    # and emails; real sections are a few hundred characters.
    long = "긴 요약 " * 1000  # 5,000 characters
    text = PAPER.replace("- **What's New**: new things\n", f"- **What's New**: {long}\n{long}\n")
    result = parse("## Daily Papers (2024-01-02)\n" + text)
    (paper,) = result.digest.papers
    assert len(paper.sections[0].text) == 2_000
    assert paper.sections[0].text.endswith("…")
    assert paper.sections[0].text.startswith("긴 요약 긴 요약")
    assert (
        paper.sections[1:]
        == parse("## Daily Papers (2024-01-02)\n" + PAPER).digest.papers[0].sections[1:]
    )
    (warning,) = result.warnings
    assert str(warning) == (
        '2024-01-02.md:2: warning: section "What\'s New" of this paper is 9,999 characters; '
        "cut to 2,000"
    )


def test_date_from_file_name_when_header_missing() -> None:
    digest = parse(PAPER, source="digests/papers-2024-03-04.md").digest
    assert digest.date == dt.date(2024, 3, 4)


def test_duplicate_id_keeps_first_and_warns_with_line() -> None:
    second = PAPER.replace("A Paper", "Again").replace("Vote: 7", "Vote: 99")
    result = parse("## Daily Papers (2024-01-02)\n" + PAPER + "\n" + second)
    (paper,) = result.digest.papers
    assert paper.title == "A Paper" and paper.votes == 7
    (warning,) = result.warnings
    assert warning.line == 10 and "2401.00001" in str(warning) and "line 2" in str(warning)
    assert str(warning).startswith("2024-01-02.md:10: warning:")


@pytest.mark.parametrize(
    ("text", "source", "line", "fragment"),
    [
        ("Hello, this is a shopping list.\n- eggs\n", "notes-2024-01-02.md", 1, "not a digest"),
        (
            "## Daily Papers (2024-01-02)\n### A title without link\nVote: 3\n",
            "d.md",
            2,
            "without a link",
        ),
        (
            "## Daily Papers (2024-01-02)\n" + PAPER.replace("Vote: 7", "Vote: lots"),
            "d.md",
            4,
            "bad vote count 'lots'",
        ),
        (PAPER, "undated.md", 1, "no date"),
        ("## Daily Papers (2024-13-45)\n" + PAPER, "d.md", 1, "bad date"),
        (
            "## Daily Papers (2024-01-02)\n### [X](https://example.com/paper)\n",
            "d.md",
            2,
            "not an arXiv URL",
        ),
    ],
    ids=["not-a-digest", "heading-without-link", "vote-lots", "no-date", "bad-date", "not-arxiv"],
)
def test_bad_input_names_file_and_line(text: str, source: str, line: int, fragment: str) -> None:
    with pytest.raises(DigestError) as info:
        parse(text, source)
    assert info.value.line == line
    assert str(info.value).startswith(f"{source}:{line}: ")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_hostile_image_scheme_is_dropped() -> None:
    text = PAPER.replace(
        "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2401.00001.png",
        "javascript:alert(1)",
    )
    (paper,) = parse("## Daily Papers (2024-01-02)\n" + text).digest.papers
    assert paper.image is None and not paper.is_thumbnail


@pytest.mark.parametrize(
    ("vote", "expected"),
    [("10000000", 10_000_000), ("0" * 5000 + "12", 12), ("0", 0), ("000", 0)],
    ids=["at-bound", "5000-leading-zeros", "zero", "zeros"],
)
def test_votes_up_to_the_bound_parse(vote: str, expected: int) -> None:
    text = "## Daily Papers (2024-01-02)\n" + PAPER.replace("Vote: 7", f"Vote: {vote}")
    (paper,) = parse(text).digest.papers
    assert paper.votes == expected
