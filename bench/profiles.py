"""Realistic subscribers for benchmarks: every profile different, keywords from the digests.

Real subscribers type their own keywords, so nearly every profile differs. These are drawn from
the digests' own vocabulary (English terms of titles and summaries, Korean words with their
particles cut), 1-4 keywords each, weighted towards the common ones as people pick them, with
some exclusions, mixed minimum votes and caps, and no two alike.
"""

from __future__ import annotations

import collections
import random
import re
from collections.abc import Iterable

from newsletter.model import Digest, Filters

_ENGLISH = re.compile(r"[A-Za-z][A-Za-z0-9-]{2,}")
_HANGUL = re.compile(r"[\uac00-\ud7a3]{2,}")
_PARTICLES = ("으로", "에서", "에게", "까지", "부터", "처럼", "보다", "을", "를", "이", "가",
              "은", "는", "의", "에", "로", "와", "과", "도", "만")  # fmt: skip
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "that",
        "this",
        "are",
        "our",
        "its",
        "into",
        "than",
        "also",
        "more",
        "such",
        "can",
        "using",
        "based",
        "which",
        "these",
        "their",
        "they",
        "has",
        "have",
        "been",
        "not",
        "new",
        "via",
        "how",
        "what",
        "when",
        "where",
        "while",
        "each",
        "both",
        "all",
        "one",
        "two",
        "model",
        "models",
    ]
)


def vocabulary(digests: Iterable[Digest], *, size: int = 3000) -> list[str]:
    """The digests' commonest terms, most common first: what readers would type."""
    counts: collections.Counter[str] = collections.Counter()
    for digest in digests:
        for paper in digest.papers:
            texts = [paper.display_title, *(s.text for s in paper.sections)]
            for text in texts:
                for word in _ENGLISH.findall(text):
                    if word.lower() not in _STOP:
                        counts[word if word.isupper() else word.lower()] += 1
                for word in _HANGUL.findall(text):
                    for particle in _PARTICLES:
                        if word.endswith(particle) and len(word) - len(particle) >= 2:
                            word = word[: -len(particle)]
                            break
                    counts[word] += 1
    return [word for word, _ in counts.most_common(size)]


def realistic_filters(vocab: list[str], count: int, *, seed: int = 1) -> list[Filters]:
    """`count` different filter sets: 1-4 keywords (Zipf-weighted), some exclusions and limits."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(vocab))]
    seen: set[Filters] = set()
    out: list[Filters] = []
    while len(out) < count:
        keywords = tuple(dict.fromkeys(rng.choices(vocab, weights, k=rng.randint(1, 4))))
        exclude = (rng.choice(vocab),) if rng.random() < 0.15 else ()
        filters = Filters(
            keywords=keywords,
            exclude=tuple(e for e in exclude if e not in keywords),
            min_votes=rng.choice((0, 0, 0, 0, 5, 10, 20)),
            max_papers=rng.choice((None, None, None, 5, 10)),
        )
        if filters not in seen:
            seen.add(filters)
            out.append(filters)
    return out
