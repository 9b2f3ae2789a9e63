"""Korean words as a search index needs them (pure).

Korean attaches particles to words (`모델을`, `강화학습이`, `RAG를`), and Pagefind matches whole
words or their beginnings, so each paper page is also indexed with

- each Hangul word without its trailing particles (`모델을` -> `모델`),
- each English term glued to Korean (`RAG를` -> `RAG`),
- each pair of neighbouring Hangul words written together (`강화 학습` -> `강화학습`).
"""

from __future__ import annotations

import functools
import itertools
import re

# Longest first, so `에서는` is taken before `는`; a stem keeps at least two syllables.
PARTICLES = sorted(
    [
        "에서는",
        "에서도",
        "으로는",
        "으로도",
        "에게서",
        "이라는",
        "이라고",
        "에서",
        "에게",
        "으로",
        "까지",
        "부터",
        "라는",
        "이며",
        "이고",
        "에는",
        "에도",
        "와의",
        "과의",
        "로서",
        "로써",
        "보다",
        "처럼",
        "만큼",
        "하여",
        "하는",
        "하고",
        "했다",
        "한다",
        "된",
        "을",
        "를",
        "이",
        "가",
        "은",
        "는",
        "의",
        "에",
        "로",
        "와",
        "과",
        "도",
        "만",
        "들",
        "적",
        "한",
    ],
    key=len,
    reverse=True,
)
_HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]+")
_TOKEN = re.compile(r"[\w\-]+")
_ENGLISH = re.compile(r"[A-Za-z][A-Za-z0-9\-]*")
_MIN_STEM = 2
_PARTICLE_SET = frozenset(PARTICLES)
_SIZES = sorted({len(p) for p in PARTICLES}, reverse=True)


@functools.lru_cache(maxsize=65536)  # the same words recur across thousands of papers
def strip_particles(word: str) -> str:
    """A Hangul word without its trailing particles: `모델들을` -> `모델`."""
    for _ in range(2):  # a plural and a case particle: 모델-들-을
        for size in _SIZES:  # longest first, so `에서는` is taken before `는`
            if len(word) - size >= _MIN_STEM and word[-size:] in _PARTICLE_SET:
                word = word[:-size]
                break
        else:
            break
    return word


def extra_terms(text: str) -> list[str]:
    """The words to index besides `text` itself, each once, in order of appearance."""
    found: dict[str, None] = {}
    stems: list[str] = []
    for token in _TOKEN.findall(text):
        hangul = _HANGUL_WORD.fullmatch(token)
        if hangul:
            stem = strip_particles(token)
            stems.append(stem)
            if stem != token:
                found[stem] = None
            continue
        stems.append("")  # a non-Hangul word breaks a pair
        if _HANGUL_WORD.search(token):
            for english in _ENGLISH.findall(token):
                found[english] = None
            for part in _HANGUL_WORD.findall(token):
                stem = strip_particles(part)
                if len(stem) >= _MIN_STEM and stem not in PARTICLES:
                    found[stem] = None
    for first, second in itertools.pairwise(stems):
        if first and second:
            found[first + second] = None
    return list(found)
