"""Site build speed: 1,000 stored digests (25,000 papers), a full build and a rebuild.

Targets: a full build (feeds + 1,001 pages) under 3 s; after ingesting one more digest, a rebuild
under 1 s that rewrites only the files that changed.
Naive: render every page and feed and write every file, as a first draft would.
"""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gen_digests import synthetic_digest, write_digests
from newsletter.build import MANIFEST, BuildReport, build_site, plan_site
from newsletter.config import Settings
from newsletter.ingest import ingest_paths
from newsletter.store import Store

RUNS = 5
DAYS = 1000
START = dt.date(2021, 1, 1)


def naive_build(store: Store, *, settings: Settings, out: Path) -> int:
    """Render everything and write every file; returns how many files were written."""
    plan = plan_site(store, settings=settings, out_dir=out, incremental=False)
    for name, data in plan.files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(plan.files)


def timed_build(db: Path, settings: Settings, out: Path) -> tuple[float, BuildReport]:
    """Seconds a `build_site` takes (store opening excluded), and its report."""
    with Store(db) as store:
        start = time.perf_counter()
        report = build_site(store, settings=settings.replace(db=db), out_dir=out)
        return time.perf_counter() - start, report


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_digests(tmp / "digests", count=DAYS, start=START)
        extra = tmp / "extra" / f"{START + dt.timedelta(days=DAYS)}.md"
        extra.parent.mkdir()
        extra.write_text(synthetic_digest(START + dt.timedelta(days=DAYS)), encoding="utf-8")
        base_db = tmp / "base.db"
        with Store(base_db) as store:
            assert not ingest_paths(store, [tmp / "digests"]).failed
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        settings = Settings().replace(
            db=base_db,
            base_url="https://example.github.io/papers",
            topics={"LLM": "LLM; language model", "에이전트": "agent; 에이전트"},
        )

        full, noop, files = [], [], 0
        for run in range(RUNS):
            seconds, report = timed_build(base_db, settings, tmp / f"full-{run}")
            full.append(seconds)
            files = len(report.written)
            seconds, report = timed_build(base_db, settings, tmp / f"full-{run}")
            noop.append(seconds)
            assert not report.written

        rebuild, naive, written, naive_written = [], [], 0, 0
        for run in range(RUNS):
            db = tmp / f"run-{run}.db"
            shutil.copy(base_db, db)
            site, naive_site = tmp / f"inc-{run}", tmp / f"naive-{run}"
            shutil.copytree(tmp / "full-0", site)
            shutil.copytree(tmp / "full-0", naive_site)
            with Store(db) as store:
                assert ingest_paths(store, [extra]).count("added") == 1
            seconds, report = timed_build(db, settings, site)
            rebuild.append(seconds)
            written = len(report.written)
            with Store(db) as store:
                start = time.perf_counter()
                naive_written = naive_build(store, settings=settings.replace(db=db), out=naive_site)
                naive.append(time.perf_counter() - start)
            for path in naive_site.rglob("*"):  # the same bytes either way
                if path.is_file() and path.name != MANIFEST:
                    assert path.read_bytes() == (site / path.relative_to(naive_site)).read_bytes()

    full_s, rebuild_s, naive_s = (statistics.median(x) for x in (full, rebuild, naive))
    print(f"corpus: {DAYS} digests x 25 papers; feeds cover the newest 30; 2 topic feeds")
    print(f"full build:            {full_s:.2f} s, {files} files            (target < 3 s)")
    print(f"no-op rebuild:         {statistics.median(noop):.2f} s, 0 files written")
    print(f"rebuild after 1 more:  {rebuild_s:.2f} s, {written} files written  (target < 1 s)")
    print(
        f"naive rebuild:         {naive_s:.2f} s, {naive_written} files written"
        f"  -> ours is {naive_s / rebuild_s:.1f}x faster"
    )


if __name__ == "__main__":
    main()
