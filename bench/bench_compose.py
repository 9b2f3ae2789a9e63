"""Personalised daily emails built per second: 10,000 subscribers over 200 distinct selections.

Target: >= 5,000 messages/s on one core. Digest: the largest example (2024-12-13, 27 papers).
Subscribers take one of 200 profiles whose selections all differ (keywords, min_votes and
max_papers drawn from the digest's topics), interleaved by id as a real list would be, with
Korean and Latin names.

Fast: a fresh `Composer` per run, so each figure includes rendering (Jinja + MJML) and
laying out each of the 200 selections once; then every subscriber is personalised (three
HMAC tokens, escaping, base64 seams). Also shown: the warm rate, personalisation alone.
Naive: `compose_naive` per recipient (select, Jinja + MJML, EmailMessage), timed on a
500-subscriber slice and expressed as a rate. Medians of several runs; both in this run.
Rates are per CPU second of this process (one core; other work on a busy machine does not
count against it), with wall-clock rates alongside.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.audience.match import PreparedDigest, select_papers
from newsletter.config import Settings
from newsletter.digest.parse import parse_digest
from newsletter.mail.compose import Composer, compose_naive
from newsletter.model import Digest, Filters, Subscriber

ROOT = Path(__file__).resolve().parent.parent
DIGEST = ROOT / "examples" / "digests" / "2024-12-13.md"
SUBSCRIBERS = 10_000
SELECTIONS = 200
RUNS = 5
NAIVE_SLICE = 500
NAIVE_RUNS = 3
TOPICS = (
    "LLM", "language model", "diffusion", "video", "멀티모달", "multimodal", "agent", "에이전트",
    "benchmark", "벤치마크", "speech", "audio", "reasoning", "추론", "image", "이미지",
    "translation", "synthetic data", "합성 데이터", "transformer", "LoRA", "GUI", "3D",
    "retrieval", "강화학습", "reinforcement learning", "evaluation", "efficient", "memory",
    "dataset", "데이터셋", "vision", "generation", "생성",
)  # fmt: skip
NAMES = ("김민지", "박지수", "Alex Chen", "이현우", "Sara Jones", "최서연", "", "María García")
SETTINGS = Settings().replace(
    base_url="https://papers.example.com",
    secret_key=secrets.token_urlsafe(32),
    max_papers_per_email=20,
)


def clock() -> dt.datetime:
    return dt.datetime(2024, 12, 13, 9, 0, tzinfo=dt.UTC)


def profiles(digest: Digest, count: int) -> list[Filters]:
    """`count` profiles whose selections (papers and reasons) all differ and are non-empty."""
    rng = random.Random(5)
    prepared = PreparedDigest(digest)
    seen: set[tuple[tuple[str, tuple[str, ...]], ...]] = set()
    chosen: list[Filters] = []
    for _ in itertools.count():
        size = rng.choice((0, 1, 1, 2, 2, 3))
        profile = Filters(
            keywords=tuple(rng.sample(TOPICS, size)),
            exclude=tuple(rng.sample(TOPICS, 1)) if rng.random() < 0.1 else (),
            min_votes=rng.choice((0, 0, 0, 2, 5, 10)),
            max_papers=rng.choice((None, None, None, 3, 5, 10)),
        )
        picks = select_papers(prepared, profile)
        key = tuple((p.paper.arxiv_id, tuple(r.keyword for r in p.reasons)) for p in picks)
        if picks and key not in seen:
            seen.add(key)
            chosen.append(profile)
            if len(chosen) == count:
                return chosen
    raise AssertionError("unreachable")


def subscribers(chosen: list[Filters], count: int) -> list[Subscriber]:
    return [
        Subscriber(
            id=i,
            email=f"reader{i}@example.com",
            name=f"{NAMES[i % len(NAMES)]}{i}" if NAMES[i % len(NAMES)] else "",
            filters=chosen[i % len(chosen)],
        )
        for i in range(1, count + 1)
    ]


class Timer:
    """CPU seconds of this process and wall seconds, from start to stop."""

    def __enter__(self) -> Timer:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.cpu
        self.wall = time.perf_counter() - self.wall


def fast_run(digest: Digest, people: list[Subscriber]) -> tuple[Timer, Timer, int]:
    """Timers cold and warm, and bytes: a fresh composer over everyone, then again."""
    composer = Composer(settings=SETTINGS, digest=digest, clock=clock)
    size = 0
    with Timer() as cold:
        for person in people:
            message = composer.compose(person)
            assert message is not None
            size += len(message.data)
    with Timer() as warm:
        for person in people:
            composer.compose(person)
    return cold, warm, size


def naive_run(digest: Digest, people: list[Subscriber]) -> Timer:
    prepared = PreparedDigest(digest)  # selection is not what this baseline measures
    with Timer() as timer:
        for person in people:
            assert compose_naive(settings=SETTINGS, digest=prepared, subscriber=person, clock=clock)
    return timer


def rate(count: int, timers: list[Timer]) -> tuple[float, float]:
    """Median messages per CPU second and per wall second."""
    cpu = statistics.median(t.cpu for t in timers)
    wall = statistics.median(t.wall for t in timers)
    return count / cpu, count / wall


def main() -> None:
    text = DIGEST.read_text(encoding="utf-8")
    digest = parse_digest(text, source=DIGEST.name).digest
    chosen = profiles(digest, SELECTIONS)
    people = subscribers(chosen, SUBSCRIBERS)
    print(
        f"{SUBSCRIBERS:,} subscribers over {len(chosen)} distinct selections; "
        f"digest {digest.date} ({len(digest.papers)} papers)"
    )
    fast = [fast_run(digest, people) for _ in range(RUNS)]
    naive = [naive_run(digest, people[:NAIVE_SLICE]) for _ in range(NAIVE_RUNS)]
    cold_cpu, cold_wall = rate(SUBSCRIBERS, [f[0] for f in fast])
    warm_cpu, warm_wall = rate(SUBSCRIBERS, [f[1] for f in fast])
    naive_cpu, naive_wall = rate(NAIVE_SLICE, naive)
    print(f"messages/s, median of {RUNS} (naive: {NAIVE_RUNS} x {NAIVE_SLICE}) | per CPU s | wall")
    print(f"fast, incl. rendering {len(chosen)} selections  | {cold_cpu:9,.0f} | {cold_wall:7,.0f}")
    print(f"fast, personalisation only (warm)    | {warm_cpu:9,.0f} | {warm_wall:7,.0f}")
    print(f"naive: Jinja + MJML + EmailMessage   | {naive_cpu:9,.0f} | {naive_wall:7,.0f}")
    print(
        f"ratio fast / naive: {cold_cpu / naive_cpu:.0f}x (CPU), {cold_wall / naive_wall:.0f}x "
        f"(wall); naive would take {SUBSCRIBERS / naive_cpu:.0f} CPU s for {SUBSCRIBERS:,}; "
        f"target >= 5,000 messages/s"
    )
    print(f"average message: {fast[0][2] / SUBSCRIBERS / 1000:.1f} KB")


if __name__ == "__main__":
    main()
