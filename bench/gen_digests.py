"""Synthetic digests shaped like the real ones (same structure, similar text lengths)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

REAL = Path(__file__).resolve().parent.parent / "examples" / "digests"
_WORDS_EN = [
    "LLM",
    "RAG",
    "diffusion",
    "agent",
    "benchmark",
    "reasoning",
    "multimodal",
    "vision",
    "transformer",
    "video",
    "alignment",
    "retrieval",
    "tokenizer",
    "scaling",
    "reinforcement",
    "learning",
    "robotics",
    "speech",
    "3D",
    "Gaussian",
    "splatting",
    "mixture-of-experts",
    "in-context",
    "learning",
    "preference",
    "optimization",
    "dataset",
    "evaluation",
]
_WORDS_KO = [
    "모델",
    "학습",
    "데이터",
    "성능",
    "방법",
    "제안",
    "멀티모달",
    "강화학습",
    "추론",
    "생성",
    "평가",
    "벤치마크",
    "효율적",
    "대형",
    "언어",
    "이미지",
    "비디오",
    "검색",
    "증강",
    "정렬",
    "에이전트",
    "실험",
    "결과",
    "기존",
    "연구",
    "새로운",
    "접근법을",
    "통해",
    "보여줍니다",
]


def _sentence(rng: random.Random, length: int) -> str:
    words: list[str] = []
    size = 0
    while size < length:
        word = rng.choice(_WORDS_KO) if rng.random() < 0.7 else rng.choice(_WORDS_EN)
        words.append(word)
        size += len(word) + 1
    return " ".join(words) + "."


def synthetic_digest(date: dt.date, *, papers: int = 25, seed: int = 0) -> str:
    """A digest for `date` with `papers` entries; deterministic for a given seed."""
    rng = random.Random(seed * 100_003 + date.toordinal())
    lines = [f"## Daily Papers ({date.isoformat()})", ""]
    base = (date.toordinal() % 9000) + 1000
    for i in range(papers):
        arxiv_id = f"{base % 10000:04d}.{(date.toordinal() * 37 + i) % 100000:05d}"
        title = " ".join(rng.choice(_WORDS_EN).capitalize() for _ in range(rng.randint(5, 12)))
        votes = "-" if rng.random() < 0.05 else str(rng.randint(0, 120))
        authors = ", ".join(
            f"Author{rng.randint(1, 9999)} Name{rng.randint(1, 999)}"
            for _ in range(rng.randint(2, 12))
        )
        label = "***" if rng.random() < 0.3 else "**"
        lines += [
            f"### [{title}](https://arxiv.org/abs/{arxiv_id})",
            "",
            f"![](https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{arxiv_id}.png)",
            "",
            f"Vote: {votes}",
            "",
            f"Authors: {authors}",
            "",
            f"- {label}What's New{label}: {_sentence(rng, 230)}",
            f"- {label}Technical Details{label}: {_sentence(rng, 300)}",
            f"- {label}Performance Highlights{label}: {_sentence(rng, 200)}",
            "",
        ]
    return "\n".join(lines)


def write_digests(
    folder: Path, *, count: int, start: dt.date = dt.date(2021, 1, 1), papers: int = 25
) -> list[Path]:
    """Write `count` consecutive daily digests into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        date = start + dt.timedelta(days=n)
        path = folder / f"{date.isoformat()}.md"
        path.write_text(synthetic_digest(date, papers=papers), encoding="utf-8")
        paths.append(path)
    return paths
