"""Private feeds at scale: `build` with 0 to 100,000 realistic subscribers, and `serve`
answering /feeds/<token>.xml.

60 synthetic digests (bench/gen_digests.py), feeds over all 60 days, subscribers from
bench/subscribers.py (all different). Each build runs in a child process, which reports its
wall time and peak RSS (getrusage). Targets: build time with N subscribers <= 3x the time with
none; peak RSS < 400 MB.
Naive: what build did before, a private feed file per subscriber (select, render the RSS with
feedgen, write), timed on a slice of subscribers in the same run.
Serving: `newsletter serve` as shipped over the 20,000-subscriber database; warm private-feed
GETs per second (raw keep-alive connections, each polling its own subscriber's feed), and the
latency of cold ones (first request after start; a subscriber not asked for before).
Naive for the warm GETs, same run: the same server with its gzip cache turned off
(`PackedFeeds` keeping nothing), so every request compresses the feed again, as before the cache.

Usage: python bench/bench_private_feeds.py [--runs 3] [--seconds 4] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_serve import exchange, free_port, get, start, stop  # noqa: E402
from bench.gen_digests import write_digests  # noqa: E402
from bench.subscribers import realistic_filters, vocabulary  # noqa: E402
from newsletter.config import Settings  # noqa: E402
from newsletter.digest.ingest import ingest_paths  # noqa: E402
from newsletter.model import SubscriberRow  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.tokens import feed_token  # noqa: E402

KEY = secrets.token_urlsafe(32)
DAYS = 60
COUNTS = (0, 1_000, 20_000, 100_000)
NAIVE_SLICE = 100
UNCACHED = "--uncached-serve"  # run `newsletter serve ARGS...` with its gzip cache off

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from newsletter.config import load_settings
    from newsletter.publish.build import build_site
    from newsletter.store import Store
    db, out, naive = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    settings = load_settings(environ={}, overrides={
        "db": db, "site_dir": out, "base_url": "https://papers.example.org", "feed_days": 60,
        "topics": {"LLM": "LLM; language model", "Agents": "agent; 에이전트"},
        "secret_key": sys.argv[4]})
    started = time.perf_counter()
    with Store(db) as store:
        if naive:
            from bench.bench_private_feeds import naive_private_feeds
            done = naive_private_feeds(store, settings=settings, out=out, limit=naive)
        else:
            done = len(build_site(store, settings=settings).written)
    wall = time.perf_counter() - started
    from bench.peak import own_peak_mb
    print(json.dumps({"wall": wall, "rss_mb": own_peak_mb(), "files": done}))
    """
)


def naive_private_feeds(store: Store, *, settings: Settings, out: Path, limit: int) -> int:
    """The old way: render and write one private feed file per subscriber (first `limit`)."""
    from newsletter.audience.match import PreparedDigest
    from newsletter.publish.feeds import FeedInfo, first_ranks, paper_feeds, paper_items

    window = store.digests(store.digest_dates(limit=settings.feed_days))
    prepared = [PreparedDigest(d) for d in window]
    first_seen = store.first_seen()
    ids = {p.arxiv_id for d in window for p in d.papers}
    first_below = first_ranks(ids, first_seen=first_seen, loaded=window, load=store.digests)
    folder = out / "feeds"
    folder.mkdir(parents=True, exist_ok=True)
    key = settings.require_secret_key()
    written = 0
    for subscriber in store.active_subscribers():
        if written >= limit:
            break
        items = paper_items(
            prepared,
            first_seen=first_seen,
            first_below=first_below,
            base_url=settings.base_url,
            filters=subscriber.filters,
        )
        name = f"{feed_token(subscriber.id, email=subscriber.email, key=key)}.xml"
        info = FeedInfo("t", "d", settings.base_url, "urn:x", window[0].date, "a")
        body = paper_feeds(items, info=info, urls={"rss": f"{settings.base_url}/feeds/{name}"})
        (folder / name).write_bytes(body["rss"])
        written += 1
    return written


def child_build(db: Path, out: Path, *, naive: int = 0) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), str(out), str(naive), KEY],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    found: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def make_db(base: Path, db: Path, count: int) -> list[tuple[int, str]]:
    """A copy of the digests database with `count` realistic subscribers; their ids and
    addresses (what their feed tokens sign)."""
    db.write_bytes(base.read_bytes())
    with Store(db) as store:
        vocab = vocabulary(store.digests(store.digest_dates()))
        rows = [
            SubscriberRow(row=n + 2, email=f"s{n}@example.com", name="", filters=f)
            for n, f in enumerate(realistic_filters(vocab, count, seed=7))
        ]
        store.import_subscribers(rows)
        return [(s.id, s.email) for s in store.active_subscribers()]


async def warm_load(port: int, paths: list[str], *, seconds: float) -> int:
    """GETs answered in `seconds`, one keep-alive connection per path, each polling its path;
    the clock starts once every connection has fetched its feed once (not counted)."""
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in paths]
    try:
        for (reader, writer), path in zip(streams, paths, strict=True):
            status, _ = await exchange(reader, writer, get(path))  # warm this subscriber first
            assert status == 200, status
        done = 0
        deadline = time.perf_counter() + seconds

        async def one(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
        ) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                status, _ = await exchange(reader, writer, get(path))
                assert status == 200, status
                done += 1

        await asyncio.gather(*(one(r, w, p) for (r, w), p in zip(streams, paths, strict=True)))
        return done
    finally:
        for _, writer in streams:
            writer.close()


async def one_request(port: int, path: str) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    status, _ = await exchange(reader, writer, get(path))
    elapsed = time.perf_counter() - started
    writer.close()
    assert status == 200, status
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = tmp / "base.db"
        with Store(base) as store:
            assert not ingest_paths(store, write_digests(tmp / "digests", count=DAYS)).failed
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        builds: dict[int, list[dict[str, float]]] = {}
        ids: dict[int, list[tuple[int, str]]] = {}
        for count in COUNTS:
            db = tmp / f"subs-{count}.db"
            ids[count] = make_db(base, db, count)
            builds[count] = [
                child_build(db, tmp / f"site-{count}-{run}") for run in range(args.runs)
            ]
        naive = [
            child_build(tmp / "subs-1000.db", tmp / f"naive-{run}", naive=NAIVE_SLICE)
            for run in range(args.runs)
        ]

        print(
            f"{DAYS} digests x 25 papers, feeds over all {DAYS} days; medians of {args.runs} runs"
        )
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        none = statistics.median(b["wall"] for b in builds[0])
        for count in COUNTS:
            wall = statistics.median(b["wall"] for b in builds[count])
            rss = max(b["rss_mb"] for b in builds[count])
            print(
                f"build, {count:>7,} subscribers: {wall:5.2f} s ({wall / none:.2f}x none), "
                f"peak RSS {rss:.0f} MB, {builds[count][0]['files']:.0f} files"
                "   (target <= 3x, < 400 MB)"
            )
        per = statistics.median(n["wall"] for n in naive) / NAIVE_SLICE
        print(
            f"naive: a feed file per subscriber, {per * 1000:.0f} ms each "
            f"(peak RSS {max(n['rss_mb'] for n in naive):.0f} MB for {NAIVE_SLICE}) "
            f"-> {per * 20_000 / 60:.0f} min for 20,000, {per * 100_000 / 60:.0f} min for 100,000"
        )

        # serve over the 20,000-subscriber database and its site
        count = 20_000
        port = free_port()
        env = {
            **os.environ,
            "NEWSLETTER_SECRET_KEY": KEY,
            "NEWSLETTER_FEED_DAYS": str(DAYS),
            "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
        }
        site = tmp / f"site-{count}-0"
        newsletter = str(Path(sys.executable).with_name("newsletter"))
        command = [newsletter, "serve", "--db", str(tmp / f"subs-{count}.db")]
        command += ["--site", str(site), "--port", str(port)]
        key = KEY.encode()
        paths = [f"/feeds/{feed_token(i, email=e, key=key)}.xml" for i, e in ids[count]]
        uncached = [sys.executable, __file__, UNCACHED, *command[1:]]
        firsts: list[float] = []
        colds: list[float] = []
        rates: list[float] = []
        naive_rates: list[float] = []
        for run in range(args.runs):
            offset = run * 1000
            chosen = paths[offset + 100 : offset + 100 + args.connections]
            process = start(command, port, env)
            try:
                firsts.append(asyncio.run(one_request(port, paths[offset])))
                colds.extend(
                    asyncio.run(one_request(port, p)) for p in paths[offset + 1 : offset + 21]
                )
                done = asyncio.run(warm_load(port, chosen, seconds=args.seconds))
                rates.append(done / args.seconds)
            finally:
                stop(process)
            process = start(uncached, port, env)
            try:
                done = asyncio.run(warm_load(port, chosen, seconds=args.seconds))
                naive_rates.append(done / args.seconds)
            finally:
                stop(process)
        rate, naive_rate = statistics.median(rates), statistics.median(naive_rates)
        print(
            f"serve, {count:,} subscribers: warm private-feed GETs {rate:,.0f}"
            f" req/s ({args.connections} keep-alive connections, gzip); naive, compressing on"
            f" every request: {naive_rate:,.0f} req/s ({rate / naive_rate:.1f}x)"
        )
        print(
            f"  cold: first request after start {statistics.median(firsts) * 1000:.0f} ms; "
            f"a subscriber not asked before, median {statistics.median(colds) * 1000:.0f} ms, "
            f"max {max(colds) * 1000:.0f} ms"
        )


def uncached_serve(args: list[str]) -> None:
    """`newsletter serve` whose private feeds keep no gzipped body: each GET compresses."""
    from newsletter import cli
    from newsletter.web import private_feeds

    private_feeds.PackedFeeds.__init__.__defaults__ = (0,)  # limit: 0 bytes kept
    assert private_feeds.PackedFeeds().limit == 0  # as the service makes it (no arguments)
    cli.main(args)


if __name__ == "__main__":
    if sys.argv[1:2] == [UNCACHED]:
        uncached_serve(sys.argv[2:])
    else:
        main()
