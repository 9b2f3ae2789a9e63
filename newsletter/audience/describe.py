"""Filters in words, for emails, pages and the CLI: one phrase per rule (pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..model import Filters
from ..text import clean_text


@dataclass(frozen=True, slots=True)
class FilterWords:
    """The words `describe_filters` uses: one set per language the filters are shown in."""

    every: str
    keywords: str
    exclude: str
    min_votes: str
    max_papers: str
    separator: str  # between keywords


ENGLISH = FilterWords(
    every="every paper",
    keywords="keywords: {}",
    exclude="exclude: {}",
    min_votes="votes >= {}",
    max_papers="at most {}",
    separator="; ",
)
KOREAN = FilterWords(
    every="모든 논문",
    keywords="키워드 {}",
    exclude="제외 {}",
    min_votes="추천 {} 이상",
    max_papers="하루 최대 {}편",
    separator=", ",
)


def describe_filters(
    filters: Filters, *, words: FilterWords = ENGLISH, clean: Callable[[str], str] = clean_text
) -> tuple[str, ...]:
    """The filters in words, one part per rule, e.g. ("keywords: RAG; LLM", "votes >= 5").

    Each phrase goes through `clean`: by default control characters become spaces, so a
    stored keyword can never move a terminal's cursor or break a line of an email.
    """
    keywords = [k for k in map(clean, filters.keywords) if k]
    exclude = [k for k in map(clean, filters.exclude) if k]
    parts = [words.keywords.format(words.separator.join(keywords)) if keywords else words.every]
    if exclude:
        parts.append(words.exclude.format(words.separator.join(exclude)))
    if filters.min_votes > 0:
        parts.append(words.min_votes.format(filters.min_votes))
    if filters.max_papers is not None:
        parts.append(words.max_papers.format(filters.max_papers))
    return tuple(parts)
