"""Parse and ingest speed: 1,000 synthetic digests (25 papers each), ours vs a naive ingest.

Targets: parse >= 20 MB/s; parse + ingest of all 1,000 in under 5 s.
Naive: sqlite-utils upsert of one row at a time, each in its own commit (as a first draft would).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlite_utils

from bench.gen_digests import write_digests
from newsletter.digest.ingest import ingest_paths
from newsletter.digest.parse import parse_digest
from newsletter.store import Store

RUNS = 3
NAIVE_FILES = 50  # the naive way is slow; time a slice and scale up


def naive_ingest(db_path: Path, paths: list[Path]) -> None:
    db = sqlite_utils.Database(db_path)
    for path in paths:
        digest = parse_digest(path.read_text(encoding="utf-8"), source=str(path)).digest
        db.table("digests").upsert(
            {"date": digest.date.isoformat(), "source": str(path)}, pk="date"
        )
        for i, p in enumerate(digest.papers):
            db.table("papers").upsert(
                {
                    "arxiv_id": p.arxiv_id,
                    "title": p.title,
                    "authors": json.dumps(p.authors),
                    "sections": json.dumps([[s.name, s.text] for s in p.sections]),
                },
                pk="arxiv_id",
            )
            db.table("digest_papers").upsert(
                {
                    "date": digest.date.isoformat(),
                    "arxiv_id": p.arxiv_id,
                    "position": i,
                    "votes": p.votes,
                },
                pk=("date", "arxiv_id"),
            )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "digests"
        paths = write_digests(folder, count=1000)
        texts = [(p.read_text(encoding="utf-8"), str(p)) for p in paths]
        megabytes = sum(len(t.encode()) for t, _ in texts) / 1e6

        parse_times = []
        for _ in range(RUNS + 2):
            start = time.perf_counter()
            for text, source in texts:
                parse_digest(text, source=source)
            parse_times.append(time.perf_counter() - start)
        parse_s = statistics.median(parse_times)

        ingest_times, reingest_times = [], []
        for run in range(RUNS):
            db_path = Path(tmp) / f"ours-{run}.db"
            start = time.perf_counter()
            with Store(db_path) as store:
                report = ingest_paths(store, [folder])
            ingest_times.append(time.perf_counter() - start)
            assert not report.failed and report.count("added") == 1000
            start = time.perf_counter()
            with Store(db_path) as store:
                again = ingest_paths(store, [folder])
            reingest_times.append(time.perf_counter() - start)
            assert again.count("unchanged") == 1000
        ingest_s = statistics.median(ingest_times)

        naive_times = []
        for run in range(RUNS):
            start = time.perf_counter()
            naive_ingest(Path(tmp) / f"naive-{run}.db", paths[:NAIVE_FILES])
            naive_times.append((time.perf_counter() - start) * len(paths) / NAIVE_FILES)
        naive_s = statistics.median(naive_times)

    print(f"corpus: 1000 digests x 25 papers, {megabytes:.1f} MB")
    print(
        f"parse alone:            {parse_s:.2f} s  = {megabytes / parse_s:.0f} MB/s   (target >= 20 MB/s)"
    )
    print(f"parse + ingest (ours):  {ingest_s:.2f} s for 1000 digests             (target < 5 s)")
    print(f"re-ingest unchanged:    {statistics.median(reingest_times):.2f} s")
    print(
        f"naive row-at-a-time:    {naive_s:.2f} s (scaled from {NAIVE_FILES} files)  -> ours is {naive_s / ingest_s:.1f}x faster"
    )


if __name__ == "__main__":
    main()
