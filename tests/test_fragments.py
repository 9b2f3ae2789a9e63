"""Splitting rendered documents into inserted stretches (`newsletter.mail.fragments`).

The slide of an insert is checked by hand on small cases, and against a character-by-character
reference (the definition: move while the neighbouring character equals the one the text
would rotate past) on random repetitive documents, where stretches slide a long way.
"""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.mail.fragments import (
    Insert,
    NotSpliceable,
    _slide,
    inserts,
    list_separators,
    template,
)
from newsletter.mail.pieces import crlf


def slide_by_definition(base: str, position: int, text: str) -> Insert:
    left, at_left = position, text
    while left > 0 and base[left - 1] == at_left[-1]:
        at_left = at_left[-1] + at_left[:-1]
        left -= 1
    right = position
    while right < len(base) and base[right] == text[(right - position) % len(text)]:
        right += 1
    return Insert(left, at_left, right)


def test_a_stretch_between_different_characters_stays_put() -> None:
    assert _slide("ab", 1, "x") == Insert(1, "x", 1)


def test_a_repeated_section_can_go_before_or_after_its_twins() -> None:
    # "<s></s>" inserted between two equal sections could as well be the first or the last,
    # and one character further each way ("<b>" ends and "</b>" starts like it).
    base = "<b><s></s><s></s></b>"
    found = _slide(base, 10, "<s></s>")
    assert (found.left, found.text, found.right) == (2, "><s></s", 18)
    assert base[:3] + found.at(3) + base[3:] == "<b>" + "<s></s>" * 3 + "</b>"


def test_a_stretch_that_slides_past_its_own_length_keeps_its_rotation() -> None:
    base = "xaba"
    found = _slide(base, 2, "ba")
    assert (found.left, found.text, found.right) == (1, "ab", 4)
    for position in range(found.left, found.right + 1):
        assert base[:position] + found.at(position) + base[position:] == "xababa"


def test_slides_agree_with_the_definition_on_repetitive_documents() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        alphabet = "ab" if rng.random() < 0.7 else "abc<>/"
        base = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        unit = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 6)))
        if rng.random() < 0.5:
            base = unit * rng.randrange(1, 12) + base  # long runs of the inserted text
        text = unit * rng.randrange(1, 3) if rng.random() < 0.5 else unit
        position = rng.randrange(0, len(base) + 1)
        found = _slide(base, position, text)
        assert found == slide_by_definition(base, position, text), (base, position, text)
        grown = base[:position] + text + base[position:]
        for place in range(found.left, found.right + 1):
            assert base[:place] + found.at(place) + base[place:] == grown


def test_inserts_finds_a_card_and_its_head_style() -> None:
    base = "<head></head><body><main></main></body>"
    grown = "<head><style>c</style></head><body><main><card/></main></body>"
    found = inserts(base, grown)
    assert [(f.left, f.text, f.right) for f in found] == [
        (5, "><style>c</style", 7),
        (24, "><card/", 26),
    ]
    assert [f.at(f.left + 1) for f in found] == ["<style>c</style>", "<card/>"]


def test_an_unchanged_document_has_no_inserts() -> None:
    assert inserts("same", "same") == ()


def test_a_card_that_rewrites_the_document_is_refused() -> None:
    with pytest.raises(NotSpliceable):
        inserts("<p>one</p>", "<p>two</p><x/>")


@given(st.text(alphabet="a\r\n한"))
def test_crlf_makes_every_line_end_crlf(text: str) -> None:
    assert crlf(text) == re.sub(r"\r\n|\r|\n", "\r\n", text).encode()


def test_templates_split_at_each_days_own_markers() -> None:
    # Patterns are kept per marker set: a second day's markers, or a set where one marker
    # starts another, split as their own.
    first = template("a<m1>b<m2>c", {"<m1>": "x", "<m2>": "y"})
    assert (first.statics, first.holes) == (("a", "b", "c"), ("x", "y"))
    second = template("a<m1>b<m2>c<m1><m3>", {"<m1>": "z", "<m3>": "w"})
    assert (second.statics, second.holes) == (("a", "b<m2>c", "", ""), ("z", "z", "w"))
    nested = template("<m1><m1x>", {"<m1": "short", "<m1x>": "long", "<m1>": "whole"})
    assert (nested.statics, nested.holes) == (("", "", ""), ("whole", "long"))
    for _ in range(2):  # once built, once kept
        text, seps = list_separators("[A; B][C | D]", {"l": ("A", "B"), "k": ("C", "D")})
        assert (text, seps) == ("[A][C]", {"l": "; ", "k": " | "})
    text, seps = list_separators("[X; B][A | D]", {"l": ("A", "D")})
    assert (text, seps) == ("[X; B][A]", {"l": " | "})
