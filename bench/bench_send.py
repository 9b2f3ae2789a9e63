"""Send speed and memory: 20,000 personalised ~30 KB messages to a local SMTP sink.

Targets: >= 1,000 messages/s end to end (ledger claim + compose + SMTP + ledger outcome) and
>= 5x the naive loop; peak memory flat in the number of subscribers (1M under 300 MB).

Sink: Postfix's `smtp-sink` (Debian package postfix) when installed, else an aiosmtpd sink.
Naive: for each subscriber, in order, build the message with `EmailMessage` and send it on one
aiosmtplib connection; no ledger. Measured in the same run, on the same subscribers and sink.
Memory: a child process per size streams N subscribers through the ledger and the composer to a
sender that only counts, and reports its peak RSS.

    python bench/bench_send.py                 # everything (1M takes a few minutes)
    python bench/bench_send.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosmtplib

from bench.peak import own_peak_mb
from newsletter.audience.match import PreparedDigest, select_papers
from newsletter.config import Settings
from newsletter.delivery.local_server import running_local_server
from newsletter.delivery.outbox import CountingSender
from newsletter.delivery.pipeline import deliver
from newsletter.delivery.smtp import SMTPSender
from newsletter.digest.ingest import ingest_paths
from newsletter.mail.compose import Composer
from newsletter.mail.render import Personal, render_email
from newsletter.model import Subscriber
from newsletter.store import Store

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 20_000
RUNS = 3
NAIVE_MESSAGES = 2_000  # the naive loop is timed on a slice; its rate is what is compared
SMTP_SINK = "/usr/sbin/smtp-sink"
# Filters giving selections of 2-3 papers: ~30 KB messages with the packaged template.
PROFILES: list[tuple[list[str], int | None]] = [
    (["video"], None),
    (["agent"], None),
    (["reasoning"], None),
    (["dataset"], None),
    (["efficient"], None),
    (["training"], None),
    (["language"], 3),
    (["image"], 3),
    ([], 2),
    ([], 3),
]
SETTINGS = Settings().replace(
    secret_key=secrets.token_urlsafe(32),  # the service refuses weaker keys
    base_url="https://papers.example.com",
    from_address="Daily Papers <digest@papers.example.com>",
    envelope_from="bounces@papers.example.com",
)


def make_db(path: Path, subscribers: int, *, profiles: int = len(PROFILES)) -> None:
    """A store with the example digests and `subscribers` active subscribers (bulk insert)."""
    with Store(path) as store:
        assert not ingest_paths(store, [ROOT / "examples" / "digests"]).failed
        now = store.now_text()
        rows = []
        for i in range(subscribers):
            keywords, cap = PROFILES[i % len(PROFILES)]
            variant = (i // len(PROFILES)) % max(1, profiles // len(PROFILES))
            rows.append(
                (
                    f"reader{i}@example.com",
                    f"Reader {i}",
                    json.dumps(keywords),
                    # Distinct but harmless filters, so there are `profiles` different selections.
                    json.dumps([f"zz-exclude-{variant}"] if variant else []),
                    cap,
                    now,
                    now,
                )
            )
            if len(rows) == 50_000 or i == subscribers - 1:
                with store.transaction() as conn:
                    conn.executemany(
                        """INSERT INTO subscribers (email, email_key, name, keywords, exclude,
                           max_papers, created_at, updated_at)
                           VALUES (?1, lower(?1), ?2, ?3, ?4, ?5, ?6, ?7)""",
                        rows,
                    )
                rows = []
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sink() -> Iterator[tuple[str, int]]:
    """A local SMTP sink: ("smtp-sink" | "aiosmtpd", port)."""
    if os.path.exists(SMTP_SINK):
        port = free_port()
        user = ["-u", "root"] if os.geteuid() == 0 else []
        process = subprocess.Popen([SMTP_SINK, *user, f"127.0.0.1:{port}", "1000"])
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield "smtp-sink", port
        finally:
            process.kill()
            process.wait()
    else:
        with running_local_server(None) as mailbox:
            yield "aiosmtpd", mailbox.port


def composer_for(store: Store) -> Composer:
    date = store.latest_date()
    assert date is not None
    digest = store.digest(date)
    assert digest is not None
    return Composer(settings=SETTINGS, digest=digest, clock=lambda: dt.datetime.now(dt.UTC))


async def pipeline(db: Path, port: int) -> tuple[float, int, int]:
    """The real path: ledger + Composer + SMTPSender pool. Returns (seconds, sent, bytes)."""
    with Store(db) as store:
        composer = composer_for(store)
        date = composer.digest.date
        sizes = 0

        def compose(subscriber: Subscriber) -> object:
            nonlocal sizes
            message = composer.compose(subscriber)
            sizes += len(message.data) if message else 0
            return message

        sender = SMTPSender(
            host="127.0.0.1",
            port=port,
            tls="none",
            pool_size=SETTINGS.concurrency,
            messages_per_connection=SETTINGS.messages_per_connection,
        )
        start = time.perf_counter()
        report = await deliver(
            date=date,
            store=store,
            compose=compose,  # type: ignore[arg-type]
            sender=sender,
            concurrency=SETTINGS.concurrency,
        )
        await sender.aclose()
        seconds = time.perf_counter() - start
        assert report.ok and report.sent == MESSAGES, report.summary()
        return seconds, report.sent, sizes


async def naive(db: Path, port: int, count: int) -> float:
    """Per subscriber: render their selection, build an EmailMessage, send on one connection."""
    with Store(db) as store:
        composer = composer_for(store)
        digest = composer.digest
        prepared = PreparedDigest(digest)  # normalised once for every subscriber
        subscribers = [s for _, s in zip(range(count), store.active_subscribers(), strict=False)]
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    start = time.perf_counter()
    await client.connect()

    for subscriber in subscribers:
        profile = subscriber.filters
        picks = select_papers(prepared, profile)
        base = SETTINGS.base_url
        rendered = render_email(
            settings=SETTINGS,
            digest=digest,
            picks=picks,
            filters=profile,
            personal=Personal(
                greeting=f"Hi {subscriber.name}",
                email=subscriber.email,
                unsubscribe_url=f"{base}/u/{subscriber.id}",
                preferences_url=f"{base}/p/{subscriber.id}",
                feed_url=f"{base}/feeds/{subscriber.id}.xml",
            ),
            template_dir=None,
        )
        message = EmailMessage()
        message["From"] = SETTINGS.from_address
        message["To"] = subscriber.email
        message["Subject"] = rendered.subject
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        await client.sendmail(
            SETTINGS.envelope_from, [subscriber.email], message.as_bytes(policy=SMTP_POLICY)
        )
    await client.quit()
    return time.perf_counter() - start


async def naive_prebuilt(db: Path, port: int, count: int) -> float:
    """A kinder naive loop: bodies rendered once per selection, EmailMessage per recipient."""
    with Store(db) as store:
        composer = composer_for(store)
        subscribers = [s for _, s in zip(range(count), store.active_subscribers(), strict=False)]
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    start = time.perf_counter()
    await client.connect()
    for subscriber in subscribers:
        rendered = composer.rendered_for(subscriber)
        assert rendered is not None
        message = EmailMessage()
        message["From"] = SETTINGS.from_address
        message["To"] = subscriber.email
        message["Subject"] = rendered.subject
        message.set_content(f"Hi {subscriber.name}\n" + rendered.text)
        message.add_alternative(f"<p>Hi {subscriber.name}</p>" + rendered.html, subtype="html")
        await client.sendmail(
            SETTINGS.envelope_from, [subscriber.email], message.as_bytes(policy=SMTP_POLICY)
        )
    await client.quit()
    return time.perf_counter() - start


def memory_child(db: Path) -> None:
    """Stream every subscriber through ledger + composer to a counting sender; print peak RSS."""

    async def run() -> tuple[int, float]:
        with Store(db) as store:
            composer = composer_for(store)
            counter = CountingSender()
            start = time.perf_counter()
            report = await deliver(
                date=composer.digest.date,
                store=store,
                compose=composer.compose,
                sender=counter,
                concurrency=SETTINGS.concurrency,
            )
            assert report.ok, report.summary()
            return report.sent, time.perf_counter() - start

    sent, seconds = asyncio.run(run())
    print(json.dumps({"sent": sent, "seconds": seconds, "peak_mb": own_peak_mb()}))


def memory(tmp: Path, sizes: list[int], *, realistic: bool) -> None:
    """Peak RSS per size: 200 selections, or (`realistic`) every subscriber's own filters."""
    from bench.bench_scale import make_db as make_realistic_db  # bench/subscribers.py profiles

    kind = "realistic subscribers, no two alike" if realistic else "200 selections"
    print(f"memory: ledger + compose, counting sender, peak RSS of a fresh process ({kind})")
    for size in sizes:
        db = tmp / f"memory-{size}.db"
        if realistic:
            make_realistic_db(db, size)
        else:
            make_db(db, size, profiles=200)
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(db)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        data = json.loads(out)
        print(
            f"  {size:>9,} subscribers: peak {data['peak_mb']:.0f} MB, "
            f"{data['sent']:,} messages in {data['seconds']:.1f} s "
            f"({data['sent'] / data['seconds']:,.0f}/s)",
            flush=True,
        )
        db.unlink()
        for extra in ("-wal", "-shm"):
            Path(f"{db}{extra}").unlink(missing_ok=True)


def throughput(tmp: Path) -> None:
    base = tmp / "base.db"
    make_db(base, MESSAGES)
    rates, naive_rates, kinder_rates, size = [], [], [], 0
    with sink() as (kind, port):
        print(f"sink: {kind} on 127.0.0.1:{port}; {MESSAGES:,} messages per run, {RUNS} runs")
        for run in range(RUNS):
            db = tmp / f"run-{run}.db"
            shutil.copy(base, db)
            seconds, sent, total = asyncio.run(pipeline(db, port))
            size = total // sent
            rates.append(sent / seconds)
            naive_rates.append(NAIVE_MESSAGES / asyncio.run(naive(base, port, NAIVE_MESSAGES)))
            kinder_rates.append(
                NAIVE_MESSAGES / asyncio.run(naive_prebuilt(base, port, NAIVE_MESSAGES))
            )
            print(
                f"  run {run + 1}: pipeline {rates[-1]:,.0f}/s ({seconds:.1f} s), "
                f"naive {naive_rates[-1]:,.0f}/s, naive with cached rendering {kinder_rates[-1]:,.0f}/s",
                flush=True,
            )
    rate, slow, kinder = (statistics.median(x) for x in (rates, naive_rates, kinder_rates))
    print(f"average message: {size / 1024:.1f} KB")
    print(
        f"pipeline (ledger + compose + SMTP, concurrency {SETTINGS.concurrency}): {rate:,.0f} messages/s"
    )
    print(f"naive loop (render + EmailMessage per message, one connection): {slow:,.0f} messages/s")
    print(f"naive loop with rendering cached per selection: {kinder:,.0f} messages/s")
    print(f"ratio: {rate / slow:.1f}x naive, {rate / kinder:.1f}x the cached naive loop")
    print(f"load average now: {os.getloadavg()[0]:.1f} (2 cores; other jobs share the machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if not args.skip_throughput:
            throughput(tmp)
        if args.sizes:
            memory(tmp, args.sizes, realistic=False)
            memory(tmp, args.sizes, realistic=True)


if __name__ == "__main__":
    main()
