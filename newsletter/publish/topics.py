"""Topic feeds from the configuration: names, stable ASCII slugs, and each paper's topics (pure)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..audience.match import PreparedDigest, select_papers
from ..errors import ConfigError
from ..model import Digest, Filters


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic feed from the configuration: its name, URL slug and keywords."""

    name: str
    slug: str
    keywords: tuple[str, ...]


MAX_SLUG = 80  # then "-" and 8 hex digits at most: topics/SLUG.xml.gz stays a short name


def topic_slug(name: str) -> str:
    """An ASCII file name for a topic: `Large Language Models` -> `large-language-models`.

    When the name has letters ASCII cannot spell (Hangul, say), a short hash of the full name
    is appended, so `에이전트` and `LLM 에이전트` keep distinct, stable URLs.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    lost = any(c.isalnum() and not c.isascii() for c in unicodedata.normalize("NFKD", name))
    # NFKD can spell one character as several letters ("㎉" is "kcal"): a name of 100
    # characters may give 400, too long for a file name; a long slug is cut and hashed.
    if lost or not slug or len(slug) > MAX_SLUG:
        digest = hashlib.sha256(name.strip().encode()).hexdigest()[:8]
        slug = slug[:MAX_SLUG].rstrip("-")
        slug = f"{slug}-{digest}" if slug else f"topic-{digest}"
    return slug


def topic_categories(
    days: Sequence[Digest | PreparedDigest], topics: Sequence[Topic]
) -> dict[str, tuple[str, ...]]:
    """The topic names each paper of `days` belongs to (its feed categories), by arXiv id."""
    if not topics:
        return {}
    # Each day's text is normalised once for every topic, not once per topic.
    prepared = [d if isinstance(d, PreparedDigest) else PreparedDigest(d) for d in days]
    categories: dict[str, list[str]] = {}
    for topic in topics:
        filters = Filters(keywords=topic.keywords)
        for day in prepared:
            for pick in select_papers(day, filters):
                names = categories.setdefault(pick.paper.arxiv_id, [])
                if topic.name not in names:
                    names.append(topic.name)
    return {k: tuple(v) for k, v in categories.items()}


def topics_from(config: Mapping[str, str]) -> list[Topic]:
    """The configured topics (name -> "keyword; keyword"), sorted by name; ConfigError if unusable."""
    topics: list[Topic] = []
    by_slug: dict[str, str] = {}
    for name in sorted(config):
        keywords = tuple(k.strip() for k in config[name].split(";") if k.strip())
        if not name.strip():
            raise ConfigError("a topic has an empty name")
        if not keywords:
            raise ConfigError(f'topic {name!r} has no keywords (expected "keyword; keyword")')
        slug = topic_slug(name)
        if slug in by_slug:
            raise ConfigError(
                f"topics {by_slug[slug]!r} and {name!r} would share the feed topics/{slug}.xml; rename one"
            )
        by_slug[slug] = name
        topics.append(Topic(name=name, slug=slug, keywords=keywords))
    return topics
