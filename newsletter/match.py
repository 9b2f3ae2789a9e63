"""Which papers of a digest a subscriber reads: keyword, exclude, vote and cap rules (pure).

Text and keywords are normalised the same way (`normalize`). A keyword holding Hangul (or
another CJK script, which does not separate words with spaces) matches as a substring, so
Korean particles do not hide it, and ignores spacing between syllables ("멀티 모달"). Any other keyword matches only between letter/digit
boundaries, allows an `s`/`es` plural on its last word and whitespace or hyphens between its
words. Keywords are data: every piece is escaped, and the patterns hold no nested repetition.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from .model import Digest, Paper, Subscriber

TITLE = "title"

# Every character of Unicode category Pd (dash punctuation), plus the minus signs and the
# hyphen bullet, which readers treat as dashes too.
_DASHES = (
    "\u058a\u05be\u1400\u1806\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u2e17\u2e1a"
    "\u2e3a\u2e3b\u2e40\u2e5d\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d\U00010ead"
)
_DASH_TABLE = str.maketrans(dict.fromkeys(_DASHES, "-"))
_SPACES = re.compile(r"\s+")
# Scripts written without spaces between words: Hangul jamo and syllables, kana, CJK ideographs.
_CJK = (
    "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff"
)
_HAS_CJK = re.compile(f"[{_CJK}]")
# A letter or digit of a script that separates words with spaces (not "_", not CJK).
_WORD = f"[^\\W_{_CJK}]"
_IS_WORD = re.compile(_WORD)
_SEPARATORS = re.compile(r"[ -]+")


def normalize(text: str) -> str:
    """NFKC, casefold, every Unicode dash to "-", whitespace collapsed; idempotent."""
    previous = None
    # Casefolding can leave text that NFKC changes again (and back); stop at the fixed point.
    while text != previous:
        previous = text
        text = unicodedata.normalize("NFKC", text).casefold()
        text = unicodedata.normalize("NFKC", text).translate(_DASH_TABLE)
        text = _SPACES.sub(" ", text).strip()
    return text


def _spacing_free(word: str) -> str:
    """The escaped word, allowing spaces or hyphens between adjacent CJK characters."""
    out = [re.escape(word[0])]
    for before, char in itertools.pairwise(word):
        if _HAS_CJK.match(before) and _HAS_CJK.match(char):
            out.append("[ -]*")
        out.append(re.escape(char))
    return "".join(out)


@functools.lru_cache(maxsize=65536)
def _pattern(keyword: str) -> re.Pattern[str] | None:
    """The compiled search for one normalised keyword (None when it holds nothing to find)."""
    if not keyword:
        return None
    words = [w for w in _SEPARATORS.split(keyword) if w]
    if not words:  # only hyphens and spaces: find them literally
        return re.compile(re.escape(keyword))
    if _HAS_CJK.search(keyword):
        # Korean spacing varies ("멀티모달", "멀티 모달"): spaces and hyphens are optional
        # between its words and between two Hangul syllables, in keyword and text alike.
        return re.compile("[ -]*".join(_spacing_free(w) for w in words))
    body = "[ -]+".join(re.escape(w) for w in words)
    if _IS_WORD.fullmatch(words[0][0]):
        body = f"(?<!{_WORD}){body}"
    if _IS_WORD.fullmatch(words[-1][-1]):
        body = f"{body}(?:e?s)?(?!{_WORD})"
    return re.compile(body)


def keyword_matches(keyword: str, text: str) -> bool:
    """Whether `keyword` occurs in `text` under the matching rules (both normalised here)."""
    pattern = _pattern(normalize(keyword))
    return pattern is not None and pattern.search(normalize(text)) is not None


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a paper was chosen: a subscriber keyword and the field it was found in."""

    keyword: str  # as the subscriber wrote it
    field: str  # "title" or a summary section name such as "What's New"


@dataclass(frozen=True, slots=True)
class Pick:
    """A selected paper and the reasons; no reasons when the profile has no keywords."""

    paper: Paper
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class Profile:
    """What a subscriber asked for; hashable, so equal profiles share one selection."""

    keywords: tuple[str, ...] = ()  # OR; empty (or only blank keywords): every paper
    exclude: tuple[str, ...] = ()  # any hit removes the paper
    min_votes: int = 0  # "Vote: -" counts as 0
    max_papers: int | None = None  # None: no cap

    @classmethod
    def of(cls, subscriber: Subscriber) -> Profile:
        """The profile a stored subscriber's filters describe."""
        return cls(
            keywords=tuple(subscriber.keywords),
            exclude=tuple(subscriber.exclude),
            min_votes=subscriber.min_votes,
            max_papers=subscriber.max_papers,
        )


@functools.lru_cache(maxsize=65536)
def _terms(keywords: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(as written, normalised) per keyword; blanks and normalised duplicates dropped."""
    seen: set[str] = set()
    terms: list[tuple[str, str]] = []
    for keyword in keywords:
        norm = normalize(keyword)
        if norm and norm not in seen and _pattern(norm) is not None:
            seen.add(norm)
            terms.append((keyword, norm))
    return tuple(terms)


_CACHE_LIMIT = 100_000  # distinct keyword/exclude sets remembered per digest


class PreparedDigest:
    """A digest with its papers' text normalised once, in selection order (votes, title)."""

    __slots__ = ("_candidates", "_fields", "_hits", "_votes", "digest", "papers")

    def __init__(self, digest: Digest) -> None:
        self.digest = digest
        titles = {p.arxiv_id: normalize(p.display_title) for p in digest.papers}
        self.papers: tuple[Paper, ...] = tuple(
            sorted(digest.papers, key=lambda p: (-(p.votes or 0), titles[p.arxiv_id], p.arxiv_id))
        )
        self._votes = tuple(p.votes or 0 for p in self.papers)
        self._fields: tuple[tuple[tuple[str, str], ...], ...] = tuple(
            ((TITLE, titles[p.arxiv_id]), *((s.name, normalize(s.text)) for s in p.sections))
            for p in self.papers
        )
        # normalised keyword -> per paper, the first field it is found in (or None)
        self._hits: dict[str, tuple[str | None, ...]] = {}
        # (keywords, exclude) -> the picks before votes and cap, in selection order
        self._candidates: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[Pick, ...]] = {}

    def _fields_hit(self, keyword: str) -> tuple[str | None, ...]:
        found = self._hits.get(keyword)
        if found is None:
            pattern = _pattern(keyword)
            assert pattern is not None  # _terms keeps only keywords with a pattern
            found = tuple(
                next((name for name, text in fields if pattern.search(text)), None)
                for fields in self._fields
            )
            self._hits[keyword] = found
        return found

    def candidates(self, keywords: tuple[str, ...], exclude: tuple[str, ...]) -> tuple[Pick, ...]:
        """Papers matching any keyword and no exclude, in selection order, with reasons."""
        key = (keywords, exclude)
        cached = self._candidates.get(key)
        if cached is not None:
            return cached
        terms = _terms(keywords)
        excluded = [self._fields_hit(norm) for _, norm in _terms(exclude)]
        hits = [(written, self._fields_hit(norm)) for written, norm in terms]
        picks: list[Pick] = []
        for i, paper in enumerate(self.papers):
            if any(fields[i] is not None for fields in excluded):
                continue
            reasons = tuple(Reason(w, field) for w, f in hits if (field := f[i]) is not None)
            if reasons or not terms:
                picks.append(Pick(paper, reasons))
        result = tuple(picks)
        if len(self._candidates) >= _CACHE_LIMIT:
            self._candidates.clear()
        self._candidates[key] = result
        return result

    def select(self, profile: Profile) -> tuple[Pick, ...]:
        """The profile's picks: candidates with enough votes, capped at max_papers."""
        picks = self.candidates(profile.keywords, profile.exclude)
        count = len(picks)
        if profile.min_votes > 0:
            # Candidates are ordered by votes, so those with enough form a prefix.
            count = next(
                (n for n, pick in enumerate(picks) if (pick.paper.votes or 0) < profile.min_votes),
                count,
            )
        if profile.max_papers is not None:
            count = min(count, max(profile.max_papers, 0))
        return picks if count == len(picks) else picks[:count]


_PREPARED: OrderedDict[int, PreparedDigest] = OrderedDict()
_PREPARED_LOCK = threading.Lock()
_PREPARED_LIMIT = 16


def prepare(digest: Digest) -> PreparedDigest:
    """The digest's normalised text, computed once per digest object and then reused."""
    with _PREPARED_LOCK:
        prepared = _PREPARED.get(id(digest))
        # The cache holds the digest itself, so its id cannot be reused while it is cached.
        if prepared is not None and prepared.digest is digest:
            _PREPARED.move_to_end(id(digest))
            return prepared
    prepared = PreparedDigest(digest)
    with _PREPARED_LOCK:
        _PREPARED[id(digest)] = prepared
        while len(_PREPARED) > _PREPARED_LIMIT:
            _PREPARED.popitem(last=False)
    return prepared


def select_papers(digest: Digest | PreparedDigest, profile: Profile) -> tuple[Pick, ...]:
    """The papers of `digest` that `profile` selects, by votes (desc) then title, with reasons."""
    prepared = digest if isinstance(digest, PreparedDigest) else prepare(digest)
    return prepared.select(profile)
