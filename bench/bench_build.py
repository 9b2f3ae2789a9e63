"""Site build speed: 1,000 stored digests (25,000 papers), a full build and a rebuild.

Targets: a full build (feeds + 1,001 pages) under 3 s; after ingesting one more digest, a rebuild
under 1 s that rewrites only the files that changed.
Naive: render every page and feed and write every file, as a first draft would.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gen_digests import synthetic_digest, write_digests
from newsletter.config import Settings
from newsletter.digest.ingest import ingest_paths
from newsletter.publish.build import MANIFEST, BuildReport, build_site, gzip_siblings, plan_site
from newsletter.store import Store

RUNS = 5
DAYS = 1000
START = dt.date(2021, 1, 1)


def naive_build(store: Store, *, settings: Settings, out: Path) -> int:
    """Render everything and write every file; returns how many files were written."""
    plan = plan_site(store, settings=settings, out_dir=out, incremental=False)
    files = {**plan.files, **gzip_siblings(plan.files)}  # the .gz siblings `serve` sends
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(files)


def timed_build(db: Path, settings: Settings, out: Path) -> tuple[float, float, BuildReport]:
    """Wall and CPU seconds a `build_site` takes (store opening excluded), and its report."""
    with Store(db) as store:
        start, cpu = time.perf_counter(), time.process_time()
        report = build_site(store, settings=settings.replace(db=db), out_dir=out)
        return time.perf_counter() - start, time.process_time() - cpu, report


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

        full: list[tuple[float, float]] = []
        noop: list[tuple[float, float]] = []
        files = 0
        for run in range(RUNS):
            wall, cpu, report = timed_build(base_db, settings, tmp / f"full-{run}")
            full.append((wall, cpu))
            files = len(report.written)
            wall, cpu, report = timed_build(base_db, settings, tmp / f"full-{run}")
            noop.append((wall, cpu))
            assert not report.written

        rebuild: list[tuple[float, float]] = []
        naive: list[tuple[float, float]] = []
        written = naive_written = 0
        for run in range(RUNS):
            db = tmp / f"run-{run}.db"
            shutil.copy(base_db, db)
            site, naive_site = tmp / f"inc-{run}", tmp / f"naive-{run}"
            shutil.copytree(tmp / "full-0", site)
            shutil.copytree(tmp / "full-0", naive_site)
            with Store(db) as store:
                assert ingest_paths(store, [extra]).count("added") == 1
            wall, cpu, report = timed_build(db, settings, site)
            rebuild.append((wall, cpu))
            written = len(report.written)
            with Store(db) as store:
                start, cpu_start = time.perf_counter(), time.process_time()
                naive_written = naive_build(store, settings=settings.replace(db=db), out=naive_site)
                naive.append((time.perf_counter() - start, time.process_time() - cpu_start))
            for path in naive_site.rglob("*"):  # the same bytes either way
                if path.is_file() and path.name != MANIFEST:
                    assert path.read_bytes() == (site / path.relative_to(naive_site)).read_bytes()

    def median(runs: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)

    def shown(runs: list[tuple[float, float]]) -> str:
        wall, cpu = median(runs)
        return f"{wall:.2f} s (CPU {cpu:.2f} s)"

    print(f"corpus: {DAYS} digests x 25 papers; feeds cover the newest 30; 2 topic feeds")
    print(f"medians of {RUNS} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"full build:            {shown(full)}, {files} files          (target < 3 s)")
    print(f"no-op rebuild:         {shown(noop)}, 0 files written")
    print(f"rebuild after 1 more:  {shown(rebuild)}, {written} files written  (target < 1 s)")
    ratio = median(naive)[0] / median(rebuild)[0]
    print(
        f"naive rebuild:         {shown(naive)}, {naive_written} files written"
        f"  -> ours is {ratio:.1f}x faster"
    )


if __name__ == "__main__":
    main()
