"""What the subscriber version trigger (migration m010) costs a large `subscribers import`.

Every write to a subscriber counts up its `version` through an AFTER UPDATE trigger, so a
send can tell a subscriber changed since it read them (store/schema.py). That is one more
row update inside each updated row's UPDATE. Measured here: `Store.import_subscribers` of
N rows that each change an existing subscriber (new keywords, all different, from
bench/subscribers.py), into copies of one store, with the trigger as shipped against the same
copy with the trigger dropped (the store before m010), alternating, medians of 3; and a
first import of N new subscribers (no UPDATE, so no trigger) for scale, and the same first
import into a store that holds 1,000 erased addresses (`subscribers erase`), every new
address then hashed and looked up so that none of them is added back.

    python bench/bench_import.py                 # 20k and 100k
    python bench/bench_import.py --sizes 20000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.subscribers import realistic_filters, vocabulary  # noqa: E402
from newsletter.digest.ingest import ingest_paths  # noqa: E402
from newsletter.model import SubscriberRow  # noqa: E402
from newsletter.store import Store  # noqa: E402

ERASED = 1_000  # addresses erased before the first import, in its second timing


def rows(vocab: list[str], count: int, *, seed: int) -> list[SubscriberRow]:
    """`count` CSV rows, reader0@… upwards, each with its own filters (`seed` picks them)."""
    return [
        SubscriberRow(row=n + 2, email=f"reader{n}@example.com", name="", filters=f)
        for n, f in enumerate(realistic_filters(vocab, count, seed=seed))
    ]


def timed_import(db: Path, listed: list[SubscriberRow]) -> tuple[float, int]:
    """Seconds for one import of `listed` into `db` (opening the store not counted) and
    how many rows it updated."""
    with Store(db) as store:
        start = time.perf_counter()
        report = store.import_subscribers(listed)
        seconds = time.perf_counter() - start
    return seconds, len(report.updated)


def without_trigger(db: Path) -> None:
    with Store(db) as store:
        store.conn.execute("DROP TRIGGER subscribers_version")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[20_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for size in args.sizes:
            base = tmp / f"base-{size}.db"
            with Store(base) as store:
                assert not ingest_paths(store, [ROOT / "examples" / "digests"]).failed
                vocab = vocabulary(store.digests(store.digest_dates()))
            first = rows(vocab, size, seed=1)
            changed = rows(vocab, size, seed=2)  # the same addresses, other filters
            empty = tmp / f"empty-{size}.db"
            empty.write_bytes(base.read_bytes())
            with Store(empty) as store:
                for row in first[:ERASED]:
                    store.erase_address(row.email)
            fresh, _ = timed_import(base, first)  # all new: inserts only
            with Store(empty) as store:
                start = time.perf_counter()
                left_out = store.import_subscribers(first).erased
                checked = time.perf_counter() - start
            assert len(left_out) == ERASED, len(left_out)
            with Store(base) as store:
                store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shipped: list[float] = []
            before: list[float] = []
            for run in range(args.runs):
                for trigger in (True, False):
                    db = tmp / f"run-{size}-{run}-{trigger}.db"
                    db.write_bytes(base.read_bytes())
                    if not trigger:
                        without_trigger(db)
                    seconds, updated = timed_import(db, changed)
                    if updated != size:
                        raise SystemExit(f"the import updated {updated} of {size} rows")
                    with Store(db) as store:
                        versions = store.conn.execute(
                            "SELECT min(version), max(version) FROM subscribers"
                        ).fetchone()
                    # Each updated row counted once with the trigger, never without it.
                    assert tuple(versions) == ((1, 1) if trigger else (0, 0)), versions
                    (shipped if trigger else before).append(seconds)
                    db.unlink()
            with_t, without_t = statistics.median(shipped), statistics.median(before)
            print(
                f"{size:,} subscribers: first import (all new) {fresh:.2f} s "
                f"({size / fresh:,.0f} rows/s; {checked:.2f} s with {ERASED:,} erased "
                f"addresses to leave out); import changing every one: "
                f"{with_t:.2f} s with the version trigger, {without_t:.2f} s without "
                f"({with_t / without_t:.2f}x; {(with_t - without_t) / size * 1e6:.1f} µs a row); "
                f"medians of {args.runs}"
            )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
