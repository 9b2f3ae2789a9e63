"""Scale with real subscribers: every profile different, against Postfix's own tools.

For each size (1k, 20k, 100k subscribers; filters from bench/subscribers.py, no two alike):
- compose alone: every subscriber's message built in this process, CPU seconds -> per core,
  the day's rendering and every cache's first fill included (each pass a fresh process, as
  a send is), the median of 3 passes; it says whether the compose path ran compiled (`make compile`);
- send: the real `newsletter send` (a subprocess: ledger claim, compose, SMTP, ledger outcome)
  into Postfix's `smtp-sink`, and in the same run Postfix's `smtp-source -s 16 -d` sending as
  many messages of the same average size into the same sink; messages/s of each and the ratio;
- peak RSS of the `newsletter send` process;
- naive, same run: Jinja + MJML + `EmailMessage` per recipient (`compose_naive`) on a sample.

Needs Debian's postfix for smtp-sink/smtp-source (`make bench` installs it).

    python bench/bench_scale.py                      # 1k, 20k, 100k
    python bench/bench_scale.py --sizes 1000 20000 --runs 3
    python bench/bench_scale.py --sizes 20000 --dkim rsa     # every message DKIM-signed
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import io
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import peak  # noqa: E402
from bench.subscribers import realistic_filters, vocabulary  # noqa: E402
from newsletter import speedups  # noqa: E402
from newsletter.config import Settings  # noqa: E402
from newsletter.delivery.heap import frozen_heap  # noqa: E402
from newsletter.digest.ingest import ingest_paths  # noqa: E402
from newsletter.mail.compose import Composer, compose_naive  # noqa: E402
from newsletter.mail.dkim import generate_key  # noqa: E402
from newsletter.model import Subscriber  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.store.base import dump_filters  # noqa: E402

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
NEWSLETTER = Path(sys.executable).parent / "newsletter"
KEY = secrets.token_urlsafe(32)
NAMES = ("", "김민지", "Alex Chen", "이서연", "", "O'Neil")
SETTINGS = Settings().replace(
    secret_key=KEY,
    base_url="https://papers.example.com",
    from_address="Daily Papers <digest@papers.example.com>",
    envelope_from="bounces@papers.example.com",
)
NAIVE_SAMPLE = 300


def make_db(path: Path, count: int) -> list[Subscriber]:
    """A store with the example digests and `count` realistic subscribers (bulk insert)."""
    with Store(path) as store:
        assert not ingest_paths(store, [ROOT / "examples" / "digests"]).failed
        vocab = vocabulary(store.digests(store.digest_dates()))
        now = store.now_text()
        rows = [
            (f"reader{i}@example.com", NAMES[i % len(NAMES)], *dump_filters(f), now, now)
            for i, f in enumerate(realistic_filters(vocab, count, seed=count))
        ]
        with store.transaction() as conn:
            conn.executemany(
                """INSERT INTO subscribers (email, email_key, name, keywords, exclude, min_votes,
                   max_papers, created_at, updated_at) VALUES (?1, lower(?1), ?2, ?3, ?4, ?5, ?6,
                   ?7, ?8)""",
                rows,
            )
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return list(store.active_subscribers())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sink() -> Iterator[int]:
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
        yield port
    finally:
        process.kill()
        process.wait()


class Pass(NamedTuple):
    """One compose pass: CPU seconds, messages built, their bytes, seconds in the collector."""

    cpu: float
    built: int
    size: int
    gc: float


def compose_alone(db: Path, settings: Settings = SETTINGS, *, frozen: bool = True) -> Pass:
    """Compose every subscriber's message once, the day rendered and every cache filled from
    empty (call it in a fresh process); `frozen`: with the heap frozen, as `deliver` does."""
    with Store(db) as store:
        digest = store.digest(store.latest_date())  # type: ignore[arg-type]
        subscribers = list(store.active_subscribers())
    assert digest is not None
    clock = dt.datetime.now(dt.UTC)
    collecting = [0.0, 0.0]  # start of the current collection, seconds in all

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
        else:
            collecting[1] += time.perf_counter() - collecting[0]

    gc.callbacks.append(timed)
    start = time.process_time()
    composer = Composer(settings=settings, digest=digest, clock=lambda: clock)
    composer.prepare()
    sent = size = 0
    with frozen_heap() if frozen else contextlib.nullcontext():
        for subscriber in subscribers:
            message = composer.compose(subscriber)
            if message is not None:
                sent += 1
                size += len(message.data)
    cpu = time.process_time() - start
    gc.callbacks.remove(timed)
    return Pass(cpu, sent, size, collecting[1])


def compose_cold(db: Path, extra_env: dict[str, str], *, frozen: bool = True) -> Pass:
    """`compose_alone` in a fresh process (its own caches, heap and bytecode cache on, as a
    `newsletter send` has them), with the settings of `extra_env` (DKIM, plain Python)."""
    env = {**os.environ, **extra_env}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [sys.executable, __file__, "--compose-pass", str(db), *([] if frozen else ["--unfrozen"])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return Pass(*json.loads(done.stdout.strip().splitlines()[-1]))


def compose_pass(db: Path, *, frozen: bool) -> None:
    """The child of `compose_cold`: prints its Pass as JSON."""
    settings = SETTINGS
    key_file = os.environ.get("NEWSLETTER_DKIM_KEY_FILE")
    if key_file:
        settings = SETTINGS.replace(
            dkim_selector=os.environ["NEWSLETTER_DKIM_SELECTOR"],
            dkim_domain=os.environ["NEWSLETTER_DKIM_DOMAIN"],
            dkim_key_file=Path(key_file),
        )
    print(json.dumps(compose_alone(db, settings, frozen=frozen)))


def naive_rate(db: Path, subscribers: list[Subscriber]) -> float:
    """Messages/s of Jinja + MJML + EmailMessage per recipient, on a sample."""
    with Store(db) as store:
        digest = store.digest(store.latest_date())  # type: ignore[arg-type]
    assert digest is not None
    clock = dt.datetime.now(dt.UTC)
    start = time.process_time()
    built = 0
    for subscriber in subscribers[:NAIVE_SAMPLE]:
        if compose_naive(
            settings=SETTINGS, digest=digest, subscriber=subscriber, clock=lambda: clock
        ):
            built += 1
    return built / (time.process_time() - start)


def smtp_source(port: int, count: int, size: int) -> float:
    """Seconds for smtp-source to send `count` messages of `size` bytes over 16 sessions."""
    start = time.perf_counter()
    subprocess.run(
        [SMTP_SOURCE, "-s", "16", "-d", "-m", str(count), "-l", str(size),
         "-f", "bounces@papers.example.com", "-t", "reader@example.com", f"127.0.0.1:{port}"],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - start


# The libraries `newsletter send` cannot start without: its event loop, store, command line,
# templates and MJML compiler.
SEND_LIBRARIES = ("asyncio", "sqlite3", "click", "jinja2", "mjml")


def start_up_floor() -> float:
    """Seconds (median of 7) for this Python to start and import SEND_LIBRARIES and nothing of
    ours: what any send written with them pays before its first message."""
    command = [sys.executable, "-c", f"import {', '.join(SEND_LIBRARIES)}"]
    times = []
    for _ in range(7):
        start = time.perf_counter()
        subprocess.run(command, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def send_env(extra_env: dict[str, str]) -> dict[str, str]:
    """The environment a send runs in: the settings as variables, bytecode cache on."""
    env = {
        **os.environ,
        **extra_env,
        "NEWSLETTER_SECRET_KEY": KEY,
        "NEWSLETTER_BASE_URL": SETTINGS.base_url,
        "NEWSLETTER_FROM": SETTINGS.from_address,
        "NEWSLETTER_ENVELOPE_FROM": SETTINGS.envelope_from,
    }
    # An installed CLI starts from cached bytecode; a shell that turns the cache off would
    # add ~30 ms of compiling the package's sources to every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def send_args(db: Path, port: int, processes: int) -> list[str]:
    """`newsletter send`'s arguments: the newest day into the sink, 16 connections."""
    args = ["send", "--db", str(db), "--smtp-host", "127.0.0.1", "--smtp-port", str(port),
            "--smtp-tls", "none", "--concurrency", "16"]  # fmt: skip
    return args + (["--processes", str(processes)] if processes > 1 else [])


def newsletter_send(
    db: Path, port: int, processes: int, extra_env: dict[str, str]
) -> tuple[float, float, float, str]:
    """Seconds, CPU seconds (its workers included), peak RSS (MB) and summary of the real CLI
    sending the newest day."""
    command = [str(NEWSLETTER), *send_args(db, port, processes)]
    # Through bench/peak.py: this process's size would otherwise count as the send's. The
    # time is the one peak.py measured around the send, as smtp-source's is measured around
    # it alone: not the wrapper's own start-up (~30 ms).
    done = subprocess.run(
        peak.wrap(command), env=send_env(extra_env), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    usage = peak.parse(done.stderr)  # its workers included
    return usage.wall, usage.cpu, usage.peak_mb, done.stdout.strip().splitlines()[-1]


class WarmSender:
    """`newsletter send` run again and again inside one long-lived process, the way a running
    service sends (`serve --watch` runs the same send, inside its daily job, in a worker
    thread): the package is imported and the templates compiled by an earlier send. Each send
    opens its store and connections and renders its day from nothing, as a new day's send
    does: the caches keyed by a day's papers and subjects are emptied first. The first send
    warms it up."""

    def __init__(self, extra_env: dict[str, str]) -> None:
        # Not a terminal, so no progress bar; closed by close().
        self.errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--warm-sends"],
            env=send_env(extra_env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )

    def send(self, args: list[str]) -> tuple[float, float, str]:
        """Seconds, CPU seconds and summary of one send with `args`."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(args) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.errors.seek(0)
            raise SystemExit(f"the warm sender stopped:\n{self.errors.read()[-3000:]}")
        wall, cpu, summary = json.loads(line)
        return wall, cpu, summary

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        finally:
            self.process.kill()
            self.errors.close()


def warm_sends() -> None:
    """The child of `WarmSender`: one send per line of arguments (JSON) on stdin."""
    from newsletter import cli  # here: only this child runs the CLI in-process
    from newsletter.mail.message import folded_header
    from newsletter.mail.render import paper_card

    for line in sys.stdin:
        paper_card.cache_clear()  # a new day's papers would not be there
        folded_header.cache_clear()  # nor its subjects
        printed = io.StringIO()
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(printed):
            try:
                code = cli.main(json.loads(line), standalone_mode=False)
            except SystemExit as exc:
                code = exc.code
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert code in (0, None), printed.getvalue()
        summary = printed.getvalue().strip().splitlines()[-1]
        print(json.dumps([wall, cpu, summary]), flush=True)


def sent_all(summary: str, count: int) -> None:
    """Stop unless a send's summary says it sent `count` messages and nothing else happened."""
    if f"sent {count}," not in summary or "deferred 0, failed 0, ambiguous 0" not in summary:
        raise SystemExit(f"the send did not send all {count} messages: {summary}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 20_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--dkim", choices=("rsa", "ed25519"), help="DKIM-sign every message")
    parser.add_argument("--compose-pass", type=Path, help=argparse.SUPPRESS)  # compose_cold's
    parser.add_argument("--unfrozen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warm-sends", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warm_sends:
        warm_sends()
        return
    if args.compose_pass:
        compose_pass(args.compose_pass, frozen=not args.unfrozen)
        return
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
    compiled = "compiled (mypyc)" if speedups.in_use() else "plain Python: run `make compile`"
    print(f"compose path: {compiled}")
    warm: WarmSender | None = None
    try:
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            extra_env: dict[str, str] = {}
            if args.dkim:
                key = tmp / "dkim.pem"
                key.write_bytes(generate_key(args.dkim))
                extra_env = {
                    "NEWSLETTER_DKIM_SELECTOR": "bench",
                    "NEWSLETTER_DKIM_DOMAIN": "papers.example.com",
                    "NEWSLETTER_DKIM_KEY_FILE": str(key),
                }
                print(f"every message DKIM-signed ({args.dkim})")
            for size in args.sizes:
                base = tmp / f"base-{size}.db"
                subscribers = make_db(base, size)
                # Each pass in a fresh process, as a send starts; the median of three.
                passes = sorted(compose_cold(base, extra_env) for _ in range(3))
                cpu, built, total, _ = passes[1]
                average = total // max(built, 1)
                naive = naive_rate(base, subscribers)
                print(
                    f"{size:,} subscribers, {len(set(s.filters for s in subscribers)):,} distinct "
                    f"profiles; {built:,} get mail (the rest match nothing), {average / 1024:.1f} KB each"
                )
                print(
                    f"  compose alone: {built / cpu:,.0f} messages/s per core "
                    f"(naive Jinja+MJML+EmailMessage: {naive:,.0f}/s, {built / cpu / naive:.0f}x)"
                )
                ours, theirs, peaks, cpus = [], [], [], []
                warm_ours, warm_theirs = [], []
                with sink() as port:
                    for run in range(args.runs):
                        db = tmp / f"run-{size}-{run}.db"
                        db.write_bytes(base.read_bytes())
                        seconds, used, peak, summary = newsletter_send(
                            db, port, args.processes, extra_env
                        )
                        sent_all(summary, built)
                        cpus.append(used / built)
                        source = smtp_source(port, built, average)
                        ours.append(built / seconds)
                        theirs.append(built / source)
                        peaks.append(peak)
                        print(
                            f"  run {run + 1}: newsletter send {ours[-1]:,.0f}/s ({seconds:.2f} s, "
                            f"peak {peak:.0f} MB; {summary}); smtp-source -s 16 -d {theirs[-1]:,.0f}/s",
                            flush=True,
                        )
                        if warm is None:  # its first send, not counted: imports, templates
                            warm = WarmSender(extra_env)
                            db.write_bytes(base.read_bytes())
                            sent_all(warm.send(send_args(db, port, args.processes))[2], built)
                        db.write_bytes(base.read_bytes())
                        seconds, _, summary = warm.send(send_args(db, port, args.processes))
                        sent_all(summary, built)
                        source = smtp_source(port, built, average)
                        warm_ours.append(built / seconds)
                        warm_theirs.append(built / source)
                        print(
                            f"         the same send from a running process {warm_ours[-1]:,.0f}/s "
                            f"({seconds:.2f} s; {summary}); smtp-source {warm_theirs[-1]:,.0f}/s",
                            flush=True,
                        )
                        db.unlink()
                mine, source_rate = statistics.median(ours), statistics.median(theirs)
                print(
                    f"  median: newsletter send {mine:,.0f}/s, smtp-source {source_rate:,.0f}/s, "
                    f"ratio {mine / source_rate:.2f}x; peak RSS {max(peaks):.0f} MB"
                )
                warm_mine, warm_source = (
                    statistics.median(warm_ours),
                    statistics.median(warm_theirs),
                )
                print(
                    f"  median from an already-running process (the service's case): {warm_mine:,.0f}/s, "
                    f"smtp-source {warm_source:,.0f}/s, ratio {warm_mine / warm_source:.2f}x"
                )
                per = statistics.median(cpus)
                print(
                    f"  send CPU per message {per * 1e6:.0f} µs, of which composing "
                    f"{cpu / built * 1e6:.0f} µs ({cpu / built / per:.0%}; compose alone's figure)"
                )
                # A cold send pays at least the start-up floor plus what the same send costs
                # from a running process (our own modules' import and nothing else left out).
                floor = start_up_floor()
                best = built / (floor + built / warm_mine)
                print(
                    f"  start-up floor: Python importing only {', '.join(SEND_LIBRARIES)}: "
                    f"{floor * 1000:.0f} ms; with the running-process send, a cold send takes at "
                    f"least {(floor + built / warm_mine) * 1000:.0f} ms: at best {best:,.0f}/s, "
                    f"{best / source_rate:.2f}x smtp-source (0.5x allows "
                    f"{built / (0.5 * source_rate) * 1000:.0f} ms in all)"
                )
                print(json.dumps({"size": size, "send": mine, "source": source_rate,
                                  "compose_per_core": built / cpu, "naive": naive,
                                  "peak_mb": max(peaks), "warm_send": warm_mine,
                                  "warm_source": warm_source}))  # fmt: skip
    finally:
        if warm is not None:
            warm.close()
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
