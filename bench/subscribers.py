"""Realistic subscribers for benchmarks: nearly every profile different, from the digests' words.

Other benchmarks import these:

    from bench.subscribers import realistic_filters, vocabulary
    filters = realistic_filters(vocabulary(digests), 20_000, seed=1)
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Sequence

from newsletter.model import Digest, Filters

STOPWORDS = {"and", "the", "for", "with", "via", "from", "using", "that", "this", "are", "its"}
# Korean verb and adjective endings: words ending so are not topics ("보여줍니다", "같은").
ENDINGS = tuple("다며여고서면지할한된은는인게운린른던록히이해와과도로")
PARTICLES = ("에서", "으로", "은", "는", "이", "가", "을", "를", "의", "에", "로", "와", "과", "도")


def vocabulary(digests: Sequence[Digest]) -> list[str]:
    """Topic phrases of the digests: English words, title bigrams and Korean words (particles
    stripped) found in at least 2 papers but not in most of them (those are function words
    such as "있습니다" or "the", which nobody subscribes to); the 600 most frequent.
    """
    frequency: Counter[str] = Counter()
    papers = [p for d in digests for p in d.papers]
    for paper in papers:
        text = " ".join([paper.display_title, *(s.text for s in paper.sections)])
        terms = set(re.findall(r"[A-Za-z][A-Za-z0-9-]{2,}", text))
        for word in re.findall(r"[가-힣]{2,}", text):
            for particle in PARTICLES:
                if word.endswith(particle) and len(word) > len(particle) + 1:
                    word = word[: -len(particle)]
                    break
            terms.add(word)
        title = re.findall(r"[A-Za-z][A-Za-z0-9-]+", paper.display_title)
        terms.update(f"{a} {b}" for a, b in itertools.pairwise(title))
        frequency.update(terms)
    topical = {
        t: n
        for t, n in frequency.items()
        if 2 <= n <= len(papers) // 5 and t.lower() not in STOPWORDS and not t.endswith(ENDINGS)
    }
    return sorted(topical, key=lambda t: (-topical[t], t))[:600]


def realistic_filters(vocabulary: Sequence[str], count: int, seed: int = 0) -> list[Filters]:
    """`count` filters, all different: 1-4 keywords from `vocabulary`, an exclusion for about one
    in five, min_votes mixed (most 0, some 5-30) and a paper cap for about one in four."""
    rng = random.Random(seed)
    seen: set[Filters] = set()
    out: list[Filters] = []
    while len(out) < count:
        filters = Filters(
            keywords=tuple(rng.sample(vocabulary, rng.randint(1, 4))),
            exclude=(rng.choice(vocabulary),) if rng.random() < 0.2 else (),
            min_votes=rng.choice((0, 0, 0, 0, 5, 10, 20, 30)),
            max_papers=rng.choice((None, None, None, 5, 10)),
        )
        if filters not in seen:
            seen.add(filters)
            out.append(filters)
    return out
