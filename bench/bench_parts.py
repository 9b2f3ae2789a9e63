"""Where a send's time goes, part by part, for realistic subscribers (no two profiles alike).

- compose: microseconds per message in each step of `Composer.compose` (selection, signed
  links, assembling the pieces, base64 of both bodies, headers and return path), 20k subscribers
  from bench/subscribers.py, medians of 3 passes;
- the end-of-data scan: finding a line that starts with a dot in real composed messages, ours
  (visiting each dot) against `b"\\r\\n." in data`, same messages, same run;
- ledger claims: one commit per message (`claim_delivery`) against a group of 16 in one
  transaction (`claim_deliveries`), same store, same run;
- fixed cost of a day: rendering the day's pieces once (`DayEmail`), and the real
  `newsletter send` of a store with no subscribers into Postfix's smtp-sink (start-up, store,
  connection), medians of 5;
- cards: how many distinct cards (paper, number, chips) the 20k emails hold, in how many uses;
- the compiled compose path against plain Python (NEWSLETTER_PURE_PYTHON=1): whole compose
  passes in fresh processes, alternating, medians of 3;
- garbage collection in those passes, with the heap frozen while composing (as `deliver`
  does) and without;
- a signed-link tag: HMAC-SHA256 from each key's pads hashed once, against `hmac.digest`;
- the compiled build's check at start-up, in fresh interpreters: by the sources' sizes and
  times (the stamp's listing) against hashing every source (the check before), medians of 5;
- the keywords of a day's first subscribers, each new: Hangul-only and one-word Latin ones
  found without a pattern, against compiling and scanning each one's pattern (the code
  before), same keywords, alternating, medians of 3.

    python bench/bench_parts.py
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_scale import SETTINGS, compose_cold, make_db, newsletter_send, sink  # noqa: E402
from newsletter import speedups, tokens  # noqa: E402
from newsletter.audience.match import (  # noqa: E402
    KEYWORDS,
    PreparedDigest,
    clear_caches,
    normalize,
    select_papers,
)
from newsletter.delivery.session import _line_starts_with_dot  # noqa: E402
from newsletter.mail.compose import Composer, personal_for  # noqa: E402
from newsletter.mail.day import DayEmail  # noqa: E402
from newsletter.mail.message import checked_address  # noqa: E402
from newsletter.mail.splice import encode_lines  # noqa: E402
from newsletter.model import Subscriber  # noqa: E402
from newsletter.store import Store  # noqa: E402

SUBSCRIBERS = 20_000
STEPS = ("select", "signed links", "assemble", "base64", "headers")
GROUP = 16
SAMPLE = 2_000  # composed messages kept for the dot scan


def compose_steps(db: Path, subscribers: list[Subscriber]) -> tuple[dict[str, float], list[bytes]]:
    """Seconds per message in each step of one pass (day rendered beforehand); a sample of the
    messages (keeping them all would time the allocation of fresh memory, not composing)."""
    with Store(db) as store:
        digest = store.digest(store.latest_date())  # type: ignore[arg-type]
    assert digest is not None
    clock = dt.datetime.now(dt.UTC)
    composer = Composer(settings=SETTINGS, digest=digest, clock=lambda: clock)
    day = composer._day_email()
    assert day is not None, "the packaged templates split into pieces"
    spent = dict.fromkeys(STEPS, 0.0)
    messages: list[bytes] = []
    count = 0
    now = time.perf_counter
    for subscriber in subscribers:
        start = now()
        picks = select_papers(composer._prepared, subscriber.filters)
        if not picks:
            spent["select"] += now() - start
            continue
        a = now()
        address = checked_address(subscriber.email)
        personal = personal_for(subscriber, settings=SETTINGS, key=composer._key)
        b = now()
        made = day.assemble(picks, filters=subscriber.filters, personal=personal)
        c = now()
        text, html = encode_lines(made.text), encode_lines(made.html)
        d = now()
        message = composer._message(
            subscriber,
            address=address,
            personal=personal,
            subject=made.subject,
            boundary=composer._boundary,
            text=text,
            html=html,
        )
        e = now()
        if count == 0:  # the steps timed here are `compose`'s own, in its order
            whole = composer.compose(subscriber)
            assert whole is not None and message.data == whole.data
        for step, seconds in zip(STEPS, (a - start, b - a, c - b, d - c, e - d), strict=True):
            spent[step] += seconds
        count += 1
        if len(messages) < SAMPLE:
            messages.append(message.data)
    return {step: seconds / count for step, seconds in spent.items()}, messages


def dot_scan(messages: list[bytes]) -> tuple[float, float]:
    """Seconds per message: ours, and `b"\\r\\n." in data` (checked to agree)."""
    found = [_line_starts_with_dot(m) for m in messages]
    assert found == [m.startswith(b".") or b"\r\n." in m for m in messages]
    start = time.perf_counter()
    for m in messages:
        _line_starts_with_dot(m)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    for m in messages:
        _ = m.startswith(b".") or b"\r\n." in m
    naive = time.perf_counter() - start
    return ours / len(messages), naive / len(messages)


def claims(db: Path, tmp: Path, ids: list[int]) -> tuple[float, float]:
    """Seconds per claim: in groups of GROUP, and one commit each (fresh copies of the store)."""
    day = dt.date(2030, 1, 1)
    timings = []
    for grouped in (True, False):
        copy = tmp / f"claims-{grouped}.db"
        shutil.copy(db, copy)
        with Store(copy) as store:
            start = time.perf_counter()
            if grouped:
                for i in range(0, len(ids), GROUP):
                    store.claim_deliveries(day, [(s, f"{s}@m") for s in ids[i : i + GROUP]])
            else:
                for s in ids:
                    store.claim_delivery(day, s, message_id=f"{s}@m")
            timings.append((time.perf_counter() - start) / len(ids))
            assert store.delivery_counts(day)["claimed"] == len(ids)
    return timings[0], timings[1]


def day_render(db: Path) -> float:
    """Seconds to render the newest day's pieces once (median of 5, fresh each time)."""
    with Store(db) as store:
        digest = store.digest(store.latest_date())  # type: ignore[arg-type]
    assert digest is not None
    clock = dt.datetime.now(dt.UTC)
    papers = Composer(settings=SETTINGS, digest=digest, clock=lambda: clock)._prepared.papers
    times = []
    for _ in range(5):
        start = time.perf_counter()
        DayEmail(settings=SETTINGS, digest=digest, papers=papers)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def empty_send(tmp: Path) -> float:
    """Wall seconds of the real `newsletter send` with no subscribers (median of 5)."""
    db = tmp / "empty.db"
    make_db(db, 0)
    with sink() as port:
        return statistics.median(newsletter_send(db, port, 1, {})[0] for _ in range(5))


# A fresh interpreter's first check of the compiled build, in seconds; `{hash}`: hash the
# sources as if their sizes or times had changed (hashlib's import included, as it was).
CHECK_BUILD = (
    "import time\n"
    "from newsletter import speedups\n"
    "if {hash}:\n"
    "    speedups.listing = lambda: ''\n"
    "start = time.perf_counter()\n"
    "assert speedups.current()\n"
    "print(time.perf_counter() - start)\n"
)


def build_check() -> tuple[float, float]:
    """Seconds of the compiled build's check in a fresh interpreter: by the listing, and by
    hashing every source; alternating, medians of 5."""
    by_listing: list[float] = []
    by_hash: list[float] = []
    for _ in range(5):
        for times, hashed in ((by_listing, False), (by_hash, True)):
            code = CHECK_BUILD.format(hash=hashed)
            done = subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
            )
            times.append(float(done.stdout))
    return statistics.median(by_listing), statistics.median(by_hash)


def distinct_cards(db: Path, subscribers: list[Subscriber]) -> tuple[int, int]:
    """(distinct cards, cards in all) in the emails: a card is a paper, its number, its chips."""
    with Store(db) as store:
        digest = store.digest(store.latest_date())  # type: ignore[arg-type]
    assert digest is not None
    cap = SETTINGS.max_papers_per_email
    seen: set[tuple[str, int, tuple[object, ...]]] = set()
    uses = 0
    composer = Composer(settings=SETTINGS, digest=digest, clock=lambda: dt.datetime.now(dt.UTC))
    for subscriber in subscribers:
        picks = select_papers(composer._prepared, subscriber.filters)[:cap]
        uses += len(picks)
        seen.update((p.paper.arxiv_id, n, p.reasons) for n, p in enumerate(picks, start=1))
    return len(seen), uses


def compiled_and_plain(db: Path) -> tuple[list[float], list[float]]:
    """Messages/s of fresh-process compose passes, compiled and in plain Python, alternating."""
    compiled: list[float] = []
    plain: list[float] = []
    for _ in range(3):
        for rates, env in ((compiled, {}), (plain, {speedups.PURE: "1"})):
            done = compose_cold(db, env)
            rates.append(done.built / done.cpu)
    return compiled, plain


def collector(db: Path) -> tuple[list[float], list[float]]:
    """Seconds in the garbage collector over fresh-process compose passes, with the heap frozen
    (as `deliver` composes) and without, alternating."""
    frozen: list[float] = []
    unfrozen: list[float] = []
    for _ in range(3):
        frozen.append(compose_cold(db, {}).gc)
        unfrozen.append(compose_cold(db, {}, frozen=False).gc)
    return frozen, unfrozen


def tag_cost() -> tuple[float, float]:
    """Seconds per signed-link tag: ours (each key's HMAC pads hashed once) and hmac.digest."""
    key = SETTINGS.require_secret_key()
    assert tokens._tag(key, "feed", "12345") == hmac.digest(key, b"feed\x0012345", "sha256")[:16]
    count = 100_000
    ours = min(timeit.repeat(lambda: tokens._tag(key, "feed", "12345"), number=count, repeat=5))
    naive = min(
        timeit.repeat(
            lambda: hmac.digest(key, b"feed\x0012345", "sha256")[:16], number=count, repeat=5
        )
    )
    return ours / count, naive / count


def first_keywords(db: Path, subscribers: list[Subscriber]) -> tuple[float, float]:
    """Seconds to find the keywords of the first SAMPLE subscribers of a fresh day (each new
    keyword once, as selection does): found directly where they can be, against every
    keyword through its compiled pattern (the code before); caches emptied first."""
    with Store(db) as store:
        digest = store.digest(store.latest_date())  # type: ignore[arg-type]
    assert digest is not None
    written = [k for s in subscribers[:SAMPLE] for k in (*s.filters.keywords, *s.filters.exclude)]

    def timed(*, patterns: bool) -> float:
        clear_caches()
        re.purge()  # the re module's own cache would keep the patterns of the last pass
        prepared = PreparedDigest(digest)
        seen: set[str] = set()
        start = time.process_time()
        for keyword in written:
            if keyword in seen:
                continue
            seen.add(keyword)
            norm = normalize(keyword)
            if not norm or prepared._absent(norm):
                continue
            if patterns or prepared._found_directly(norm) is None:
                term = KEYWORDS.term(keyword)
                if term is not None:
                    prepared._hits(term)
        return time.process_time() - start

    runs = [(timed(patterns=False), timed(patterns=True)) for _ in range(3)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        db = tmp / "base.db"
        subscribers = make_db(db, SUBSCRIBERS)
        passes = [compose_steps(db, subscribers) for _ in range(3)]
        messages = passes[-1][1]
        print(
            f"compose, {SUBSCRIBERS:,} realistic subscribers, "
            "µs per message sent (median of 3 passes):"
        )
        total = 0.0
        for step in STEPS:
            median = statistics.median(p[0][step] for p in passes) * 1e6
            total += median
            print(f"  {step:13s} {median:6.1f}")
        print(f"  {'all':13s} {total:6.1f}  ({1e6 / total:,.0f} messages/s per core)")
        scans = [dot_scan(messages) for _ in range(3)]
        ours, naive = (statistics.median(s[k] for s in scans) for k in (0, 1))
        print(
            f"line-start dot scan, {len(messages):,} composed messages: {ours * 1e6:.1f} µs each, "
            f'against {naive * 1e6:.1f} µs for b"\\r\\n." in data ({naive / ours:.1f}x)'
        )
        cards, uses = distinct_cards(db, subscribers)
        print(
            f"cards: {cards:,} distinct (paper, number, chips) in {uses:,} uses, selections "
            f"capped at {SETTINGS.max_papers_per_email} "
            f"({uses / cards:.1f} uses each)"
        )
        print(
            f"fixed cost: the day's pieces render in {day_render(db) * 1e3:.0f} ms; "
            f"`newsletter send` with no subscribers takes {empty_send(tmp):.2f} s (medians of 5)"
        )
        if speedups.current():
            listed, hashed = build_check()
            print(
                f"the compiled build's check at start-up: {listed * 1e3:.1f} ms by the sources' "
                f"sizes and times, {hashed * 1e3:.1f} ms hashing every source (medians of 5)"
            )
        loaded = "compiled" if speedups.in_use() else "plain Python (run `make compile`)"
        compiled, plain = compiled_and_plain(db)
        fast, slow = statistics.median(compiled), statistics.median(plain)
        print(
            f"compose passes in fresh processes, {SUBSCRIBERS:,} subscribers (this process: "
            f"{loaded}): compiled {fast:,.0f}/s, plain Python {slow:,.0f}/s "
            f"({fast / slow:.1f}x; medians of 3, alternating)"
        )
        frozen, unfrozen = collector(db)
        print(
            f"garbage collection in those passes: {statistics.median(frozen) * 1e3:.0f} ms with "
            f"the heap frozen while composing, {statistics.median(unfrozen) * 1e3:.0f} ms without"
            " (medians of 3)"
        )
        ours_tag, naive_tag = tag_cost()
        print(
            f"signed-link tag: {ours_tag * 1e6:.2f} µs from each key's pads, against "
            f"{naive_tag * 1e6:.2f} µs with hmac.digest ({naive_tag / ours_tag:.1f}x)"
        )
        direct, patterns = first_keywords(db, subscribers)
        print(
            f"keywords of the first {SAMPLE:,} subscribers of a day: {direct * 1e3:.1f} ms "
            f"found directly where they can be, {patterns * 1e3:.1f} ms through every "
            f"keyword's pattern ({patterns / direct:.1f}x; medians of 3, alternating)"
        )
        ids = [s.id for s in subscribers]
        runs = [claims(db, tmp, ids) for _ in range(3)]
        grouped, single = (statistics.median(r[k] for r in runs) for k in (0, 1))
        print(
            f"ledger claims, {len(ids):,}: {grouped * 1e6:.1f} µs each in groups of {GROUP}, "
            f"against {single * 1e6:.1f} µs with one commit each ({single / grouped:.1f}x)"
        )


if __name__ == "__main__":
    main()
