"""Which papers of a digest a subscriber reads: keyword, exclude, vote and cap rules (pure).

Text and keywords are normalised the same way (`normalize`). A keyword holding Hangul (or
another CJK script, which does not separate words with spaces) matches as a substring, so
Korean particles do not hide it, and ignores spacing between syllables ("멀티 모달"). Any
other keyword matches only between letter/digit boundaries (a CJK character is one), allows
an `s`/`es` plural on its last word and whitespace or hyphens between its words. Keywords are data: every piece is escaped, and the patterns hold no nested repetition.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from ..model import Digest, Paper, Subscriber

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
_CJK_RUNS = re.compile(f"[{_CJK}]+")
# A letter or digit; "_" and CJK characters never reach it (see `_latin_view`).
_WORD = r"[^\W_]"
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


def _latin_view(text: str) -> str:
    """Normalised text with CJK runs replaced by NUL: a boundary, neither letter nor space.

    Latin keywords are searched in this view, so their boundary test stays the cheap
    `[^\\W_]` (a class listing the CJK ranges costs milliseconds to compile per keyword).
    """
    return _CJK_RUNS.sub("\x00", text)


@dataclass(frozen=True, slots=True)
class _Term:
    """One normalised keyword compiled, and which view of the text it is searched in."""

    pattern: re.Pattern[str]
    latin: bool  # True: search `_latin_view(text)`; False: the normalised text itself


@functools.lru_cache(maxsize=65536)
def _term(keyword: str) -> _Term | None:
    """The compiled search for one normalised keyword (None when it holds nothing to find)."""
    if not keyword:
        return None
    words = [w for w in _SEPARATORS.split(keyword) if w]
    if not words:  # only hyphens and spaces: find them literally
        return _Term(re.compile(re.escape(keyword)), latin=False)
    if _HAS_CJK.search(keyword):
        # Korean spacing varies ("멀티모달", "멀티 모달"): spaces and hyphens are optional
        # between its words and between two Hangul syllables, in keyword and text alike.
        return _Term(re.compile("[ -]*".join(_spacing_free(w) for w in words)), latin=False)
    body = "[ -]+".join(re.escape(w) for w in words)
    if _IS_WORD.fullmatch(words[0][0]):
        body = f"(?<!{_WORD}){body}"
    if _IS_WORD.fullmatch(words[-1][-1]):
        body = f"{body}(?:e?s)?(?!{_WORD})"
    return _Term(re.compile(body), latin=True)


def keyword_matches(keyword: str, text: str) -> bool:
    """Whether `keyword` occurs in `text` under the matching rules (both normalised here)."""
    term = _term(normalize(keyword))
    if term is None:
        return False
    norm = normalize(text)
    return term.pattern.search(_latin_view(norm) if term.latin else norm) is not None


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


def _unique_terms(keywords: tuple[str, ...], *, cache: bool = True) -> tuple[tuple[str, str], ...]:
    """(as written, normalised) per keyword; blanks and normalised duplicates dropped."""
    norm_of, term_of = (_normalized, _term) if cache else (normalize, _term.__wrapped__)
    seen: set[str] = set()
    terms: list[tuple[str, str]] = []
    for keyword in keywords:
        norm = norm_of(keyword)
        if norm and norm not in seen and term_of(norm) is not None:
            seen.add(norm)
            terms.append((keyword, norm))
    return tuple(terms)


_terms = functools.lru_cache(maxsize=65536)(_unique_terms)


# Distinct keyword sets often share keywords, so each keyword is normalised only once.
_normalized = functools.lru_cache(maxsize=65536)(normalize)

# Distinct keyword/exclude sets remembered per digest: enough for the popular ones; a bound,
# because a cache of every set of a million subscribers would cost memory and GC time.
_CACHE_LIMIT = 8192
_MEMO_LIMIT = 200_000  # keywords, reasons and picks remembered per digest before starting over


class PreparedDigest:
    """A digest with its papers' text normalised once, in selection order (votes, title)."""

    __slots__ = (
        "_candidates",
        "_every",
        "_fields",
        "_found",
        "_lock",
        "_picks",
        "_reasons",
        "digest",
        "papers",
    )

    def __init__(self, digest: Digest) -> None:
        self.digest = digest
        titles = {p.arxiv_id: normalize(p.display_title) for p in digest.papers}
        self.papers: tuple[Paper, ...] = tuple(
            sorted(digest.papers, key=lambda p: (-(p.votes or 0), titles[p.arxiv_id], p.arxiv_id))
        )
        texts = (
            ((TITLE, titles[p.arxiv_id]), *((s.name, normalize(s.text)) for s in p.sections))
            for p in self.papers
        )
        # per paper: (field name, normalised text, its Latin view) for title and sections
        self._fields: tuple[tuple[tuple[str, str, str], ...], ...] = tuple(
            tuple((name, text, _latin_view(text)) for name, text in fields) for fields in texts
        )
        self._every = tuple(Pick(p) for p in self.papers)
        # normalised keyword -> (paper index, first field it is found in) for each paper hit
        self._found: dict[str, tuple[tuple[int, str], ...]] = {}
        # One Reason per (keyword, field) and one Pick per (paper, reasons), shared by every
        # selection that gives them: fewer objects to build and for the GC to trace.
        self._reasons: dict[tuple[str, str], Reason] = {}
        self._picks: dict[tuple[int, ...], Pick] = {}
        # (keywords, exclude) -> the picks before votes and cap, in selection order (LRU)
        self._candidates: OrderedDict[tuple[tuple[str, ...], tuple[str, ...]], tuple[Pick, ...]]
        self._candidates = OrderedDict()
        self._lock = threading.Lock()  # the service may select from several threads

    def _scan(self, term: _Term | None) -> tuple[tuple[int, str], ...]:
        assert term is not None  # _terms keeps only keywords with a term
        search, latin = term.pattern.search, term.latin
        hits = (
            (i, next((n for n, text, view in fields if search(view if latin else text)), None))
            for i, fields in enumerate(self._fields)
        )
        return tuple((i, field) for i, field in hits if field is not None)

    def _hits(self, keyword: str) -> tuple[tuple[int, str], ...]:
        found = self._found.get(keyword)
        if found is None:
            found = self._scan(_term(keyword))
            if len(self._found) >= _MEMO_LIMIT:
                self._found.clear()
            self._found[keyword] = found
        return found

    def candidates(
        self, keywords: tuple[str, ...], exclude: tuple[str, ...], *, cache: bool = True
    ) -> tuple[Pick, ...]:
        """Papers matching any keyword and no exclude, in selection order, with reasons.

        With `cache=False` nothing about these keywords is remembered, by this digest or the
        module: for keywords a stranger can vary at will (a preview), which would fill both.
        """
        key = (keywords, exclude)
        with self._lock:
            cached = self._candidates.get(key)
            if cached is not None:
                self._candidates.move_to_end(key)
                return cached
        terms_of = _terms if cache else functools.partial(_unique_terms, cache=False)
        hits_of = self._hits if cache else lambda norm: self._scan(_term.__wrapped__(norm))
        reason_of = self._reason if cache else Reason
        excluded = {i for _, norm in terms_of(exclude) for i, _ in hits_of(norm)}
        terms = terms_of(keywords)
        if not terms:
            result = tuple(pick for i, pick in enumerate(self._every) if i not in excluded)
        else:
            reasons: dict[int, list[Reason]] = {}
            for written, norm in terms:
                for i, field in hits_of(norm):
                    if i not in excluded:
                        reasons.setdefault(i, []).append(reason_of(written, field))
            pick_of = self._pick if cache else lambda i, found: Pick(self.papers[i], tuple(found))
            result = tuple(pick_of(i, reasons[i]) for i in sorted(reasons))
        if not cache:
            return result
        with self._lock:
            if len(self._candidates) >= _CACHE_LIMIT:
                self._candidates.popitem(last=False)
            self._candidates[key] = result
        return result

    def _reason(self, keyword: str, field: str) -> Reason:
        reason = self._reasons.get((keyword, field))
        if reason is None:
            if len(self._reasons) >= _MEMO_LIMIT:
                self._reasons.clear()
            reason = self._reasons[(keyword, field)] = Reason(keyword, field)
        return reason

    def _pick(self, index: int, reasons: list[Reason]) -> Pick:
        # The ids identify the reasons: the Pick stored under the key keeps them alive.
        key = (index, *map(id, reasons))
        pick = self._picks.get(key)
        if pick is None:
            if len(self._picks) >= _MEMO_LIMIT:
                self._picks.clear()
            pick = self._picks[key] = Pick(self.papers[index], tuple(reasons))
        return pick

    def select(self, profile: Profile, *, cache: bool = True) -> tuple[Pick, ...]:
        """The profile's picks: candidates with enough votes, capped at max_papers."""
        picks = self.candidates(profile.keywords, profile.exclude, cache=cache)
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


def select_papers(
    digest: Digest | PreparedDigest, profile: Profile, *, cache: bool = True
) -> tuple[Pick, ...]:
    """The papers of `digest` that `profile` selects, by votes (desc) then title, with reasons.

    `cache=False`: remember nothing about the profile's keywords (see `candidates`).
    """
    prepared = digest if isinstance(digest, PreparedDigest) else prepare(digest)
    return prepared.select(profile, cache=cache)


def clear_caches() -> None:
    """Forget compiled keywords and prepared digests (for benchmarks and long-lived tests)."""
    _term.cache_clear()
    _terms.cache_clear()
    _normalized.cache_clear()
    with _PREPARED_LOCK:
        _PREPARED.clear()
