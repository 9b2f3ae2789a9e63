"""Which papers of a digest a subscriber reads: keyword, exclude, vote and cap rules (pure).

Text and keywords are normalised the same way (`normalize`). A keyword holding Hangul (or
another CJK script, which does not separate words with spaces) matches as a substring, so
Korean particles do not hide it, and ignores spacing between syllables ("멀티 모달"). Any
other keyword matches only between letter/digit boundaries (a CJK character is one), allows
an `s`/`es` plural on its last word and whitespace or hyphens between its words. Keywords are data: every piece is escaped, and the patterns hold no nested repetition.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from ..model import Digest, Filters, Paper

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
_WORDS = re.compile(f"{_WORD}+")  # a run of letters and digits: a Latin view's tokens
_SEPARATORS = re.compile(r"[ -]+")
_GAP = "\x01"  # joins the squeezed fields of a digest (a keyword holding it is never ruled out)


def _squeeze(text: str) -> str:
    """`text` without spaces and hyphens."""
    return text.replace(" ", "").replace("-", "")


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

    norm: str  # the keyword normalised
    pattern: re.Pattern[str]
    latin: bool  # True: search `_latin_view(text)`; False: the normalised text itself


def _compile(norm: str) -> _Term | None:
    """The compiled search for one normalised keyword (None when it holds nothing to find)."""
    if not norm:
        return None
    words = [w for w in _SEPARATORS.split(norm) if w]
    if not words:  # only hyphens and spaces: find them literally
        return _Term(norm, re.compile(re.escape(norm)), latin=False)
    if _HAS_CJK.search(norm):
        # Korean spacing varies ("멀티모달", "멀티 모달"): spaces and hyphens are optional
        # between its words and between two Hangul syllables, in keyword and text alike.
        return _Term(norm, re.compile("[ -]*".join(_spacing_free(w) for w in words)), latin=False)
    body = "[ -]+".join(re.escape(w) for w in words)
    if _IS_WORD.fullmatch(words[0][0]):
        body = f"(?<!{_WORD}){body}"
    if _IS_WORD.fullmatch(words[-1][-1]):
        body = f"{body}(?:e?s)?(?!{_WORD})"
    return _Term(norm, re.compile(body), latin=True)


_ENTRY_OVERHEAD = 200  # bytes of dict entry, _Term object and bookkeeping per keyword (about)


class KeywordCache:
    """Compiled keywords by their text as written, bounded by count and by approximate bytes.

    Least recently used first out. Bytes count the keyword, its normalised form and the
    compiled pattern (a 100-syllable Hangul keyword compiles to about 7 KB), so long keywords
    evict sooner instead of growing memory without bound.
    """

    def __init__(self, *, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[_Term | None, int]] = OrderedDict()
        self._lock = threading.Lock()  # the service may select from several threads

    def __len__(self) -> int:
        return len(self._entries)

    def term(self, keyword: str) -> _Term | None:
        """The compiled search for `keyword` as a subscriber wrote it (None: nothing to find)."""
        with self._lock:
            entry = self._entries.get(keyword)
            if entry is not None:
                self._entries.move_to_end(keyword)
                return entry[0]
        term = _compile(normalize(keyword))
        size = _ENTRY_OVERHEAD + sys.getsizeof(keyword)
        if term is not None:
            size += sys.getsizeof(term.norm) + sys.getsizeof(term.pattern.pattern)
            size += sys.getsizeof(term.pattern)  # the pattern's compiled code included
        with self._lock:
            previous = self._entries.pop(keyword, None)
            if previous is not None:  # another thread compiled it meanwhile
                self.bytes -= previous[1]
            self._entries[keyword] = (term, size)
            self.bytes += size
            while len(self._entries) > self.max_items or (
                self.bytes > self.max_bytes and len(self._entries) > 1
            ):
                self.bytes -= self._entries.popitem(last=False)[1][1]
        return term

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0


# The one cache of compiled keywords, shared by every digest: plenty for a vocabulary of
# tens of thousands of keywords, and a memory bound for long ones.
KEYWORDS = KeywordCache(max_items=65_536, max_bytes=32 * 2**20)


def keyword_matches(keyword: str, text: str) -> bool:
    """Whether `keyword` occurs in `text` under the matching rules (both normalised here)."""
    term = KEYWORDS.term(keyword)
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
    """A selected paper and the reasons; no reasons when the filters have no keywords."""

    paper: Paper
    reasons: tuple[Reason, ...] = ()


# Distinct keyword/exclude sets remembered per digest: enough for the popular ones; a bound,
# because a cache of every set of a million subscribers would cost memory and GC time.
_CACHE_LIMIT = 8192
_MEMO_LIMIT = 200_000  # keywords, reasons and picks remembered per digest before starting over


def paper_order(paper: Paper) -> tuple[bool, int, str, str]:
    """The one order papers are shown in, in email, feeds and pages alike (a sort key).

    Most votes first; unknown votes ("Vote: -") after every known count, zero included; then
    the normalised title, then the arXiv id, so equal titles still sort the same every time.
    """
    return (
        paper.votes is None,
        -(paper.votes or 0),
        normalize(paper.display_title),
        paper.arxiv_id,
    )


def by_votes(papers: Iterable[Paper]) -> list[Paper]:
    """Papers in `paper_order`."""
    return sorted(papers, key=paper_order)


class PreparedDigest:
    """A digest with its papers' text normalised once, in `paper_order`."""

    __slots__ = (
        "_bare",
        "_candidates",
        "_every",
        "_fields",
        "_found",
        "_keywords",
        "_lock",
        "_picks",
        "_reasons",
        "_squeezed",
        "_tokens",
        "_whole",
        "digest",
        "papers",
    )

    def __init__(self, digest: Digest) -> None:
        self.digest = digest
        self.papers: tuple[Paper, ...] = tuple(by_votes(digest.papers))
        texts = (
            (
                (TITLE, normalize(p.display_title)),
                *((s.name, normalize(s.text)) for s in p.sections),
            )
            for p in self.papers
        )
        # per paper: (field name, normalised text, its Latin view) for title and sections
        self._fields: tuple[tuple[tuple[str, str, str], ...], ...] = tuple(
            tuple((name, text, _latin_view(text)) for name, text in fields) for fields in texts
        )
        # per paper, each field's text without spaces and hyphens (Hangul keywords look here)
        self._bare: tuple[tuple[str, ...], ...] = tuple(
            tuple(_squeeze(text) for _, text, _ in fields) for fields in self._fields
        )
        # per paper, those joined: a keyword not in it is in none of the paper's fields
        self._whole = tuple(_GAP.join(fields) for fields in self._bare)
        # token of a Latin view -> (paper index, field index) of each field holding it, in
        # order (one-word Latin keywords look here); made on first use
        self._tokens: dict[str, list[tuple[int, int]]] | None = None
        self._every = tuple(Pick(p) for p in self.papers)
        # Every field's text without spaces and hyphens: a keyword whose words, run together,
        # are not in it cannot match anywhere (its pattern only allows spaces and hyphens
        # between them), so most of a large vocabulary is ruled out without compiling it.
        self._squeezed = _GAP.join(self._whole)
        # keyword as written -> (normalised, its hits); ("", ()): blank, nothing to find
        self._keywords: dict[str, tuple[str, tuple[tuple[int, str], ...]]] = {}
        # normalised keyword -> (paper index, first field it is found in) for each paper hit
        self._found: dict[str, tuple[tuple[int, str], ...]] = {}
        # One Reason per (keyword, field) and one Pick per (paper, reasons), shared by every
        # selection that gives them: fewer objects to build and for the GC to trace.
        self._reasons: dict[tuple[str, str], Reason] = {}
        self._picks: dict[tuple[int | str, ...], Pick] = {}
        # (keywords, exclude) -> the picks before votes and cap, in selection order (LRU)
        self._candidates: OrderedDict[tuple[tuple[str, ...], tuple[str, ...]], tuple[Pick, ...]]
        self._candidates = OrderedDict()
        self._lock = threading.Lock()  # the service may select from several threads

    def _scan(self, term: _Term) -> tuple[tuple[int, str], ...]:
        """(paper index, first field `term` is found in) for each paper it is found in."""
        search, latin = term.pattern.search, term.latin
        hits = (
            (i, next((n for n, text, view in fields if search(view if latin else text)), None))
            for i, fields in enumerate(self._fields)
        )
        return tuple((i, field) for i, field in hits if field is not None)

    def _hits(self, term: _Term) -> tuple[tuple[int, str], ...]:
        found = self._found.get(term.norm)
        if found is None:
            found = self._scan(term)
            if len(self._found) >= _MEMO_LIMIT:
                self._found.clear()
            self._found[term.norm] = found
        return found

    def _found_directly(self, norm: str) -> tuple[tuple[int, str], ...] | None:
        """The hits of the commonest keywords without compiling a pattern, or None for the rest.

        A keyword of Hangul (or other CJK) only: its pattern allows spaces and hyphens between
        every two characters, so it is found exactly where a field without spaces and hyphens
        holds it without them. One Latin word: its pattern wants a letter or digit boundary
        each side and allows an s/es plural, so it is found exactly where a field's Latin view
        has the word, or it plus s or es, as a whole token.
        """
        words = _SEPARATORS.split(norm)
        joined = "".join(words)
        if not joined:
            return None
        if _CJK_RUNS.fullmatch(joined):
            hits = []
            for i, whole in enumerate(self._whole):
                if joined in whole:
                    f = next(f for f, bare in enumerate(self._bare[i]) if joined in bare)
                    hits.append((i, self._fields[i][f][0]))
            return tuple(hits)
        if (
            len(words) - words.count("") == 1
            and _WORDS.fullmatch(joined)
            and not _HAS_CJK.search(joined)
        ):
            first: dict[int, int] = {}  # paper index -> its first field holding a form
            tokens = self._token_index()
            for form in (joined, joined + "s", joined + "es"):
                for i, f in tokens.get(form, ()):
                    if f < first.get(i, f + 1):
                        first[i] = f
            return tuple((i, self._fields[i][first[i]][0]) for i in sorted(first))
        return None

    def _token_index(self) -> dict[str, list[tuple[int, int]]]:
        tokens = self._tokens
        if tokens is None:
            tokens = {}
            for i, fields in enumerate(self._fields):
                for f, (_, _, view) in enumerate(fields):
                    for token in set(_WORDS.findall(view)):
                        tokens.setdefault(token, []).append((i, f))
            self._tokens = tokens
        return tokens

    def _absent(self, norm: str) -> bool:
        """True when the normalised keyword cannot occur in any field (no pattern needed)."""
        words = "".join(_SEPARATORS.split(norm))
        # NUL stands for a Hangul run in the view Latin keywords are searched in: keep those.
        return bool(words) and not {_GAP, "\x00"} & set(words) and words not in self._squeezed

    def _keyword(self, written: str, *, cache: bool) -> tuple[str, tuple[tuple[int, str], ...]]:
        """(the keyword normalised, (paper index, first field) of each hit); ("", ()): blank."""
        if cache:
            # One lookup: another thread may clear the memo between a test and a read.
            known = self._keywords.get(written)
            if known is not None:
                return known
        norm = normalize(written)
        found: tuple[str, tuple[tuple[int, str], ...]] = ("", ())
        if not norm:
            pass
        elif self._absent(norm):
            found = (norm, ())
        elif (direct := self._found_directly(norm)) is not None:
            found = (norm, direct)
        elif not cache:
            term = _compile(norm)
            found = found if term is None else (norm, self._scan(term))
        else:
            term = KEYWORDS.term(written)
            found = found if term is None else (term.norm, self._hits(term))
        if cache:
            if len(self._keywords) >= _MEMO_LIMIT:
                self._keywords.clear()
            self._keywords[written] = found
        return found

    def _terms(
        self, keywords: tuple[str, ...], *, cache: bool
    ) -> list[tuple[str, tuple[tuple[int, str], ...]]]:
        """(as written, its hits) per keyword; blanks and normalised duplicates dropped."""
        seen: set[str] = set()
        terms = []
        for keyword in keywords:
            norm, hits = self._keyword(keyword, cache=cache)
            if norm and norm not in seen:
                seen.add(norm)
                terms.append((keyword, hits))
        return terms

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
        excluded = {i for _, hits in self._terms(exclude, cache=cache) for i, _ in hits}
        terms = self._terms(keywords, cache=cache)
        if not terms:
            result = tuple(pick for i, pick in enumerate(self._every) if i not in excluded)
        else:
            reasons: dict[int, list[Reason]] = {}
            for written, hits in terms:
                for i, field in hits:
                    if i not in excluded:
                        reason = self._reason(written, field) if cache else Reason(written, field)
                        reasons.setdefault(i, []).append(reason)
            if not cache:
                return tuple(Pick(self.papers[i], tuple(reasons[i])) for i in sorted(reasons))
            result = tuple(self._pick(i, reasons[i]) for i in sorted(reasons))
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
        # Within one digest the keywords that hit a paper decide the fields, so they are the key.
        key: tuple[int | str, ...] = (index, *(reason.keyword for reason in reasons))
        pick = self._picks.get(key)
        if pick is None:
            if len(self._picks) >= _MEMO_LIMIT:
                self._picks.clear()
            pick = self._picks[key] = Pick(self.papers[index], tuple(reasons))
        return pick

    def select(self, filters: Filters, *, cache: bool = True) -> tuple[Pick, ...]:
        """The picks of `filters`: candidates with enough votes, capped at max_papers."""
        picks = self.candidates(filters.keywords, filters.exclude, cache=cache)
        count = len(picks)
        if filters.min_votes > 0:
            # Candidates are ordered by votes, so those with enough form a prefix.
            count = next(
                (n for n, pick in enumerate(picks) if (pick.paper.votes or 0) < filters.min_votes),
                count,
            )
        if filters.max_papers is not None:
            count = min(count, max(filters.max_papers, 0))
        return picks if count == len(picks) else picks[:count]


def select_papers(
    digest: Digest | PreparedDigest, filters: Filters, *, cache: bool = True
) -> tuple[Pick, ...]:
    """The papers of `digest` that `filters` select, in `paper_order`, with reasons.

    A Digest is normalised on every call (milliseconds): to select for many filter sets, hold
    a PreparedDigest and pass that. `cache=False`: remember nothing about these keywords.
    """
    prepared = digest if isinstance(digest, PreparedDigest) else PreparedDigest(digest)
    return prepared.select(filters, cache=cache)


def clear_caches() -> None:
    """Forget compiled keywords (for benchmarks and long-lived tests)."""
    KEYWORDS.clear()
