"""Paper selection: every example of the matching rules, properties, and the real digests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import re
import time
import tracemalloc
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.audience import match
from newsletter.audience.match import (
    KeywordCache,
    Pick,
    PreparedDigest,
    Reason,
    keyword_matches,
    normalize,
    select_papers,
)
from newsletter.digest.parse import parse_digest
from newsletter.model import Digest, Filters, Paper, Section, Subscriber

from .conftest import FIXTURES


def paper(arxiv_id: str, title: str, votes: int | None = 10, **sections: str) -> Paper:
    return Paper(
        arxiv_id=arxiv_id,
        title=title,
        display_title=title,
        url=f"https://arxiv.org/abs/{arxiv_id}",
        image=None,
        is_thumbnail=False,
        votes=votes,
        sections=tuple(
            Section(name.replace("_s_", "'s ").replace("_", " "), text)
            for name, text in sections.items()
        ),
    )


def digest(*papers: Paper) -> Digest:
    return Digest(date=dt.date(2024, 12, 13), papers=papers)


def real(name: str) -> Digest:
    path = FIXTURES / name
    return parse_digest(path.read_text(encoding="utf-8"), source=path.name).digest


def ids(picks: tuple[Pick, ...]) -> list[str]:
    return [p.paper.arxiv_id for p in picks]


# --- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＲＡＧ", "rag"),  # full-width
        ("  In\u00a0Context \t\n Learning ", "in context learning"),  # NBSP, runs of whitespace
        ("in\u2010context \u2014 x \u2212 y \uff0d z", "in-context - x - y - z"),  # dashes
        ("Straße", "strasse"),  # casefold, not lower
        (unicodedata.normalize("NFD", "강화학습"), "강화학습"),  # decomposed Hangul composed
        ("ﬁne-tuning", "fine-tuning"),  # ligature
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


# --- the examples of the issue ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "text"),
    [
        ("RAG", "RAG를 이용한 검색"),
        ("RAG", "a retriever (RAG) pipeline"),
        ("RAG", "RAG-based question answering"),
        ("RAG", "we compare RAGs"),
        ("RAG", "ＲＡＧ pipelines"),
        ("LLM", "LLMs are few-shot learners"),
        ("LLM", "LLM×MapReduce"),
        ("강화학습", "심층강화학습을 적용"),
        ("강화학습", unicodedata.normalize("NFD", "심층강화학습을 적용")),
        ("in context learning", "in-context learning works"),
        ("in-context learning", "in context  learning works"),
        ("in context learning", "In\u2011Context Learning"),  # non-breaking hyphen
        ("diffusion model", "latent diffusion models"),
        ("process", "several processes"),
        ("agent", "AgentTrek의 agents를"),
        ("멀티모달", "멀티 모달 모델"),
        ("멀티 모달", "멀티모달 모델"),
        ("강화학습", "강화 학습을"),
        ("RAG 시스템", "RAG시스템"),
        ("C++", "written in c++ today"),
    ],
)
def test_keyword_matches(keyword: str, text: str) -> None:
    assert keyword_matches(keyword, text)


@pytest.mark.parametrize(
    ("keyword", "text"),
    [
        ("RAG", "object storage"),
        ("RAG", "we leverage data"),
        ("RAG", "RAGE against"),
        ("RAG", "fragment"),
        ("LLM", "MLLM의 성능"),
        ("강화학습", "강화된 학습"),
        ("RAG 시스템", "storage 시스템"),
        ("agent", "AgentTrek"),
        ("in context learning", "in contextual learning"),
        ("diffusion", "diffusive"),
        ("a.c", "abc"),  # keywords are data, not regular expressions
    ],
)
def test_keyword_does_not_match(keyword: str, text: str) -> None:
    assert not keyword_matches(keyword, text)


@pytest.mark.parametrize(
    "keyword", ["(a+)+$", "(a|aa)*b", "[", "\\", ".*", "a{1,99999}", "(?P<x>", "a" * 5000]
)
def test_hostile_keywords_are_literal_and_fast(keyword: str) -> None:
    text = "a" * 50_000 + "!"
    start = time.perf_counter()
    assert not keyword_matches(keyword, text + " x")
    assert keyword_matches(keyword, f"before {keyword} after")
    assert time.perf_counter() - start < 1.0


def test_many_word_keyword_against_adversarial_text_is_fast() -> None:
    keyword = " ".join(["a"] * 30) + " b"
    start = time.perf_counter()
    assert not keyword_matches(keyword, "a-" * 100_000)
    assert time.perf_counter() - start < 2.0


# --- properties --------------------------------------------------------------------------------

HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
LATIN = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789éÉöÖ")
WORD = st.text(st.one_of(LATIN, HANGUL), min_size=1, max_size=8)
SEPARATOR = st.sampled_from([" ", "-", "  ", "\u2010", "(", ")", ", ", "를 ", "\u3000"])
TEXT = st.lists(st.tuples(WORD, SEPARATOR), max_size=12).map(
    lambda parts: "".join(w + s for w, s in parts)
)
KEYWORD = st.lists(WORD, min_size=1, max_size=3).map(" ".join)


@settings(max_examples=300)
@given(text=TEXT, keyword=KEYWORD)
def test_matching_is_invariant_under_nfc_nfd_and_case(text: str, keyword: str) -> None:
    expected = keyword_matches(keyword, text)
    for form in ("NFC", "NFD", "NFKD"):
        assert keyword_matches(unicodedata.normalize(form, keyword), text) == expected
        assert keyword_matches(keyword, unicodedata.normalize(form, text)) == expected
    assert keyword_matches(keyword.upper(), text.lower()) == expected
    assert keyword_matches(keyword.lower(), text.upper()) == expected
    assert keyword_matches(keyword.swapcase(), text.swapcase()) == expected


@settings(max_examples=300)
@given(before=TEXT, keyword=KEYWORD, after=TEXT)
def test_a_keyword_set_off_by_spaces_is_always_found(before: str, keyword: str, after: str) -> None:
    assert keyword_matches(keyword, f"{before} {keyword} {after}")


@given(keywords=st.lists(st.text(max_size=20), max_size=4), text=st.text(max_size=200))
def test_any_keyword_is_safe_to_match(keywords: list[str], text: str) -> None:
    # Arbitrary strings as keywords never raise (they are escaped, never parsed as regex).
    d = digest(paper("1", text, What_s_New=text))
    picks = select_papers(d, Filters(keywords=tuple(keywords)))
    assert len(picks) <= 1


# --- selection -----------------------------------------------------------------------------

SAMPLE = digest(
    paper("1", "Scaling RAG to a Million Documents", 12, What_s_New="검색 증강 생성"),
    paper("2", "Object Storage for Checkpoints", 30, What_s_New="we leverage RAGE"),
    paper("3", "A Survey of Diffusion Models", 50, Technical_Details="denoising diffusion"),
    paper("4", "Tuning Retrieval", None, Performance_Highlights="RAG를 개선했습니다"),
    paper("5", "Agents Everywhere", 12, What_s_New="심층강화학습을 사용"),
    paper("6", "Another RAG paper", 12, Technical_Details="diffusion too"),
)


def test_keywords_combine_with_or_and_say_why() -> None:
    picks = select_papers(SAMPLE, Filters(keywords=("RAG", "강화학습")))
    assert ids(picks) == ["5", "6", "1", "4"]  # votes desc, then title; None counts as 0
    reasons = {p.paper.arxiv_id: p.reasons for p in picks}
    assert reasons["1"] == (Reason("RAG", "title"),)
    assert reasons["4"] == (Reason("RAG", "Performance Highlights"),)
    assert reasons["5"] == (Reason("강화학습", "What's New"),)


def test_every_matching_keyword_is_a_reason_with_its_first_field() -> None:
    picks = select_papers(SAMPLE, Filters(keywords=("diffusion", "RAG")))
    by_id = {p.paper.arxiv_id: p.reasons for p in picks}
    assert by_id["6"] == (Reason("diffusion", "Technical Details"), Reason("RAG", "title"))
    assert by_id["3"] == (Reason("diffusion", "title"),)


def test_exclude_removes_a_paper() -> None:
    picks = select_papers(SAMPLE, Filters(keywords=("diffusion",), exclude=("survey",)))
    assert ids(picks) == ["6"]


def test_min_votes_applies_on_top_and_unknown_votes_count_as_zero() -> None:
    assert ids(select_papers(SAMPLE, Filters(keywords=("RAG",), min_votes=12))) == ["6", "1"]
    assert ids(select_papers(SAMPLE, Filters(keywords=("RAG",), min_votes=13))) == []
    assert "4" in ids(select_papers(SAMPLE, Filters(keywords=("RAG",), min_votes=0)))
    assert "4" not in ids(select_papers(SAMPLE, Filters(keywords=("RAG",), min_votes=1)))


def test_no_keywords_means_every_paper_without_reasons() -> None:
    picks = select_papers(SAMPLE, Filters())
    assert ids(picks) == ["3", "2", "5", "6", "1", "4"]
    assert all(p.reasons == () for p in picks)
    assert ids(select_papers(SAMPLE, Filters(keywords=("  ", "")))) == ids(picks)


def test_max_papers_caps_the_ordered_result() -> None:
    assert ids(select_papers(SAMPLE, Filters(max_papers=2))) == ["3", "2"]
    assert ids(select_papers(SAMPLE, Filters(keywords=("RAG",), max_papers=1))) == ["6"]
    assert ids(select_papers(SAMPLE, Filters(max_papers=0))) == []


def test_keyword_spelling_is_kept_in_reasons_and_duplicates_collapse() -> None:
    picks = select_papers(SAMPLE, Filters(keywords=("ｒａｇ", "RAG")))
    assert picks[0].reasons == (Reason("ｒａｇ", "title"),)


def test_profile_of_subscriber_is_hashable_and_equal_for_equal_filters() -> None:
    a = Subscriber(
        id=1, email="a@example.com", filters=Filters(keywords=("RAG",), min_votes=5, max_papers=3)
    )
    b = Subscriber(
        id=2, email="b@example.com", filters=Filters(keywords=("RAG",), min_votes=5, max_papers=3)
    )
    assert a.filters == b.filters == Filters(("RAG",), (), 5, 3)
    assert len({a.filters, b.filters}) == 1


def test_a_digest_or_a_prepared_digest_give_the_same_answer() -> None:
    d = real("2024-12-13.md")
    profile = Filters(keywords=("LLM", "diffusion"), min_votes=5)
    picks = select_papers(d, profile)
    assert picks and picks == select_papers(PreparedDigest(d), profile)


def hangul(rng: random.Random, length: int) -> str:
    return "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(length))


def test_long_hangul_keywords_cannot_grow_the_keyword_cache_past_its_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = KeywordCache(max_items=100_000, max_bytes=2**18)
    monkeypatch.setattr(match, "KEYWORDS", cache)
    keywords = [hangul(random.Random(n), 100) for n in range(200)]  # ~7 KB compiled each
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        found = [keyword_matches(k, f"앞 {k}을 뒤") for k in keywords]
        re.purge()  # re's own bounded cache of compiled patterns is not ours to measure
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert all(found)
    assert cache.bytes <= 2**18 and 0 < len(cache) < 100
    assert grown < 2**19  # all 200 kept would be about 1.4 MB


def test_keyword_cache_keeps_the_most_recently_used_within_its_count() -> None:
    cache = KeywordCache(max_items=3, max_bytes=2**30)
    terms = {k: cache.term(k) for k in ("LLM", "RAG", "agent")}
    assert cache.term("LLM") is terms["LLM"]  # a hit, and now the most recent
    cache.term("diffusion")
    assert len(cache) == 3
    assert cache.term("LLM") is terms["LLM"]
    assert cache.term("RAG") is not terms["RAG"]  # the least recently used was dropped


@pytest.mark.parametrize(
    "profile",
    [
        Filters(keywords=("LLM", "diffusion", "에이전트"), exclude=("survey",), min_votes=2),
        Filters(exclude=("video",), max_papers=5),
        Filters(keywords=("model", "MODEL", " "), min_votes=0),
    ],
)
def test_uncached_selection_gives_the_same_answer(profile: Filters) -> None:
    d = PreparedDigest(real("2024-12-13.md"))
    uncached = select_papers(d, profile, cache=False)
    assert d._found == {} and len(d._candidates) == 0  # nothing remembered
    assert uncached == select_papers(d, profile)


# --- the real digests ------------------------------------------------------------------------


def test_real_digest_rag_selects_only_papers_mentioning_rag_as_a_word() -> None:
    picks = select_papers(real("2024-06-28.md"), Filters(keywords=("RAG",)))
    assert ids(picks) == ["2406.19215"]  # SeaKR: "적응형 RAG 방법"
    assert picks[0].reasons == (Reason("RAG", "Performance Highlights"),)


# Read off tests/fixtures/2024-10-16.md by hand: each paper whose title or sections say LLM or
# LLMs as a word (Korean particles attached are fine), in votes-then-title order.
LLM_PAPERS_2024_10_16 = [
    "2406.15786",  # 19 "What Matters in Transformers?": 대형 언어 모델(LLM)의
    "2410.10814",  # 19 "Your Mixture-of-Experts LLM Is Secretly ..."
    "2410.11710",  # 16 MTU-Bench: LLM의
    "2410.09342",  # 15 "LLM×MapReduce"
    "2410.10626",  # 13 "Medical LLMs"
    "2410.11096",  # 12 SecCodePLT: LLM
    "2410.11795",  # 10 Efficient Diffusion Models: LLMs가
    "2410.11805",  # 9 NesTools: LLMs의
    "2410.10934",  # 6 Agent-as-a-Judge: LLM
    "2410.09745",  # 2 Mutual Reinforcement Effect: LLM (and GIELLM)
]
ONLY_MLLM_2024_10_16 = "2410.11779"  # "MLLM can see?": says MLLM, MLLMs, MLLMs의, never LLM


def test_real_digest_llm_matches_llms_but_not_mllm() -> None:
    d = real("2024-10-16.md")
    text = (FIXTURES / "2024-10-16.md").read_text(encoding="utf-8")
    assert "MLLM can see?" in text and f"abs/{ONLY_MLLM_2024_10_16})" in text
    picks = select_papers(d, Filters(keywords=("LLM",)))
    assert ids(picks) == LLM_PAPERS_2024_10_16
    assert ONLY_MLLM_2024_10_16 not in ids(picks)
    reasons = {p.paper.arxiv_id: p.reasons for p in picks}
    assert reasons["2410.10814"] == (Reason("LLM", "title"),)
    assert reasons["2406.15786"] == (Reason("LLM", "What's New"),)


def test_real_digest_korean_keyword_and_vote_dash() -> None:
    d = real("2024-10-16.md")
    picks = select_papers(d, Filters(keywords=("강화학습",)))
    assert picks and all(r.keyword == "강화학습" for p in picks for r in p.reasons)
    unknown = [p.arxiv_id for p in d.papers if p.votes is None]
    assert len(unknown) == 1
    assert unknown[0] in ids(select_papers(d, Filters()))
    assert unknown[0] not in ids(select_papers(d, Filters(min_votes=1)))


def test_real_digest_order_is_votes_then_title() -> None:
    picks = select_papers(real("2024-12-13.md"), Filters())
    keys = [(-(p.paper.votes or 0), normalize(p.paper.display_title)) for p in picks]
    assert keys == sorted(keys)
    assert len(picks) == 27


def test_bounded_caches_evict_without_changing_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.audience import match

    monkeypatch.setattr(match, "_CACHE_LIMIT", 2)
    monkeypatch.setattr(match, "_MEMO_LIMIT", 3)
    d = real("2024-12-13.md")
    profiles = [
        Filters(keywords=kw)
        for kw in [("LLM",), ("diffusion",), ("멀티모달", "LLM"), ("agent", "벤치마크"), ("LoRA",)]
    ]
    fresh = [select_papers(PreparedDigest(d), p) for p in profiles]
    prepared = PreparedDigest(d)
    for _ in range(3):
        assert [select_papers(prepared, p) for p in profiles] == fresh
    assert len(prepared._candidates) <= 2


def spellings(rng: random.Random, text: str) -> str:
    """A stretch of `text` as a reader might type it: cut anywhere, Hangul spaced out or run
    together, spaces as hyphens, any case."""
    start = rng.randrange(len(text))
    stretch = text[start : start + rng.randint(1, 24)]
    if rng.random() < 0.3:
        stretch = " ".join(stretch)  # "멀 티 모 달", "l o r a"
    if rng.random() < 0.3:
        stretch = stretch.replace(" ", rng.choice(["", "-", "  "]))
    return stretch.upper() if rng.random() < 0.3 else stretch


def test_selection_finds_exactly_what_each_field_matches_for_typed_keywords() -> None:
    # Keywords cut from this day's text (most are found) and from another day's (most are
    # not, and are ruled out before any pattern is compiled): each keyword's papers must be
    # those with a field that `keyword_matches` finds it in, and the reason its first field.
    day, other = real("2024-12-13.md"), real("2024-10-16.md")
    prepared = PreparedDigest(day)
    rng = random.Random(11)
    texts = [
        text
        for d in (day, other)
        for p in d.papers
        for text in (p.display_title, *(s.text for s in p.sections))
    ]
    found = 0
    for _ in range(600):
        keyword = spellings(rng, rng.choice(texts))
        expected = []
        for p in prepared.papers:
            fields = [("title", p.display_title), *((s.name, s.text) for s in p.sections)]
            first = next((name for name, text in fields if keyword_matches(keyword, text)), None)
            if first is not None:
                expected.append((p.arxiv_id, first))
        picks = select_papers(prepared, Filters(keywords=(keyword,)))
        if normalize(keyword):
            assert [(p.paper.arxiv_id, p.reasons[0].field) for p in picks] == expected, keyword
        found += bool(expected)
    assert 100 < found < 500  # both kinds were tried


def test_a_keyword_absent_from_the_day_is_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = KeywordCache(max_items=100, max_bytes=2**20)
    monkeypatch.setattr(match, "KEYWORDS", cache)
    prepared = PreparedDigest(real("2024-12-13.md"))
    assert not select_papers(prepared, Filters(keywords=("quantum chromodynamics",)))
    assert len(cache) == 0
    # One Latin word and Hangul alone are found without a pattern too; two words need one.
    assert select_papers(prepared, Filters(keywords=("LLM", "멀티모달", "벤치 마크")))
    assert len(cache) == 0
    assert select_papers(prepared, Filters(keywords=("language model",)))
    assert len(cache) == 1


# Letters around word boundaries: plural endings, digits, "_" (not a boundary letter), Hangul,
# a kanji, spaces and hyphens, punctuation, a combining mark and an NFKC-folded ligature.
_EDGES = "lmsae4_멀티모달漢 -.,'\u0301ﬁ"


@settings(max_examples=300, deadline=None)
@example(fields=["a lmes", "lm"], keyword="LM")  # an es plural, in the first field
@example(fields=["lm_s"], keyword="lm")  # "_" is no letter: a boundary
@example(fields=["lmss", "lms"], keyword="lm")  # an s plural, in the second field
@example(fields=["멀티", "멀 티-모달"], keyword="멀티모달")  # spaced out, in the second field
@example(fields=["멀티 모", "달"], keyword="멀티모달")  # not across fields
@example(fields=["lm멀티"], keyword="lm")  # Hangul is a boundary for a Latin word
@given(
    fields=st.lists(st.text(_EDGES, max_size=30), min_size=1, max_size=4),
    keyword=st.text(_EDGES, min_size=1, max_size=6),
)
def test_keywords_found_without_a_pattern_are_found_where_the_pattern_finds_them(
    fields: list[str], keyword: str
) -> None:
    # One-word Latin and Hangul-only keywords skip their pattern (see _found_directly): the
    # field each is found in must be the one the pattern (keyword_matches) finds first.
    p = dataclasses.replace(
        paper("2401.00001", fields[0]),
        sections=tuple(Section(f"s{i}", text) for i, text in enumerate(fields[1:])),
    )
    names = ["title", *(f"s{i}" for i in range(len(fields) - 1))]
    expected = next(
        (n for n, t in zip(names, fields, strict=True) if keyword_matches(keyword, t)), None
    )
    picks = select_papers(PreparedDigest(digest(p)), Filters(keywords=(keyword,)))
    assert [r.field for pick in picks for r in pick.reasons] == ([expected] if expected else [])
