"""Where a send's time goes, part by part, for realistic subscribers (no two profiles alike).

- compose: microseconds per message in each step of `Composer.compose` (selection, signed
  links, assembling the pieces, base64 of both bodies, headers and return path), 20k subscribers
  from bench/subscribers.py, medians of 3 passes;
- the end-of-data scan: finding a line that starts with a dot in real composed messages, ours
  (visiting each dot) against `b"\\r\\n." in data`, same messages, same run;
- ledger claims: one commit per message (`claim_delivery`) against a group of 16 in one
  transaction (`claim_deliveries`), same store, same run.

    python bench/bench_parts.py
"""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_scale import SETTINGS, make_db  # noqa: E402
from newsletter.audience.match import select_papers  # noqa: E402
from newsletter.delivery.session import _line_starts_with_dot  # noqa: E402
from newsletter.mail.compose import Composer, personal_for  # noqa: E402
from newsletter.mail.message import checked_address  # noqa: E402
from newsletter.mail.splice import encode  # noqa: E402
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
        text, html = encode(made.text), encode(made.html)
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
        ids = [s.id for s in subscribers]
        runs = [claims(db, tmp, ids) for _ in range(3)]
        grouped, single = (statistics.median(r[k] for r in runs) for k in (0, 1))
        print(
            f"ledger claims, {len(ids):,}: {grouped * 1e6:.1f} µs each in groups of {GROUP}, "
            f"against {single * 1e6:.1f} µs with one commit each ({single / grouped:.1f}x)"
        )


if __name__ == "__main__":
    main()
