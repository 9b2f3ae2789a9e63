"""The service under load on loopback: feed requests per second, with and without a matching
ETag, and one-click unsubscribe latency while feed readers hammer the server.

Ours: `newsletter serve` exactly as shipped (one uvicorn worker, JSON access log on) over a site
built by `newsletter build` from the three example digests and 500 subscribers.
Naive: the same site through Starlette's StaticFiles (stat + open + read per request; an mtime
ETag) wrapped in GZipMiddleware (compresses every response again), on the same uvicorn.
The load client is raw asyncio HTTP/1.1 with keep-alive (httpx would be the bottleneck).

Usage: python bench/bench_serve.py [--seconds 4] [--runs 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.config import load_settings  # noqa: E402
from newsletter.digest.ingest import ingest_paths  # noqa: E402
from newsletter.model import Filters  # noqa: E402
from newsletter.publish.build import build_site  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.tokens import subscriber_token  # noqa: E402

KEY = secrets.token_urlsafe(32)  # the service refuses weaker keys
FEED = "/rss.xml"
SUBSCRIBERS = 500
_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
_CHUNKED = re.compile(rb"(?i)\r\ntransfer-encoding:\s*chunked")
_ETAG = re.compile(rb'(?i)\r\netag:\s*("[^"]*")')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(path: str, *, etag: bytes | None = None) -> bytes:
    extra = b"If-None-Match: " + etag + b"\r\n" if etag else b""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n".encode()
        + extra
        + b"\r\n"
    )


def one_click(token: str) -> bytes:
    body = b"List-Unsubscribe=One-Click"
    return (
        f"POST /u/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request on a kept-alive connection; (status, head)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = _LENGTH.search(head)
    if length:
        await reader.readexactly(int(length.group(1)))
    elif _CHUNKED.search(head):  # Starlette's GZipMiddleware streams files chunked
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return int(head[9:12]), head


@dataclass
class Load:
    """Requests answered by a set of connections until a deadline."""

    count: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def hammer(port: int, request: bytes, *, connections: int, seconds: float) -> Load:
    load = Load()
    stop = time.perf_counter() + seconds

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                status, _ = await exchange(reader, writer, request)
                load.count += 1
                load.statuses[status] = load.statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return load


async def etag_of(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    _, head = await exchange(reader, writer, get(path))
    writer.close()
    found = _ETAG.search(head)
    assert found, head
    return found.group(1)


async def unsubscribe_latency(
    port: int, tokens: list[str], *, seconds: float, background: bytes | None, connections: int
) -> list[float]:
    """One-click POSTs one after another (each a new subscriber) while `background` load runs."""
    latencies: list[float] = []

    async def clicks() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop and tokens:
            start = time.perf_counter()
            status, _ = await exchange(reader, writer, one_click(tokens.pop()))
            latencies.append(time.perf_counter() - start)
            assert status == 200, status
            await asyncio.sleep(0.01)  # a mail provider's pace, not a flood
        writer.close()

    jobs: list[Coroutine[object, object, object]] = [clicks()]
    if background is not None:
        jobs.append(hammer(port, background, connections=connections, seconds=seconds))
    await asyncio.gather(*jobs)
    return latencies


NAIVE_APP = textwrap.dedent(
    """
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles
    app = Starlette(routes=[Mount("/", StaticFiles(directory=sys.argv[1], html=True))],
                    middleware=[Middleware(GZipMiddleware)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
    """
)


def start(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {' '.join(command)}") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    seconds: float = args.seconds
    runs: int = args.runs
    conns: int = args.connections

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours_port, naive_port = free_port(), free_port()
        settings = load_settings(
            environ={},
            overrides={
                "db": folder / "bench.db",
                "site_dir": folder / "site",
                "secret_key": KEY,
                "base_url": f"http://127.0.0.1:{ours_port}",
            },
        )
        with Store(settings.db) as store:
            ingest_paths(store, [ROOT / "examples" / "digests"])
            ids = [
                store.add_subscriber(
                    f"reader{i}@example.com", filters=Filters(keywords=("LLM",))
                ).id
                for i in range(SUBSCRIBERS)
            ]
            build_site(store, settings=settings)
        feed_bytes = (settings.site_dir / FEED.lstrip("/")).stat().st_size
        tokens = [
            subscriber_token(
                i, email=f"reader{n}@example.com", purpose="unsubscribe", key=KEY.encode()
            )
            for n, i in enumerate(ids)
        ]

        env = {
            **os.environ,
            "NEWSLETTER_SECRET_KEY": KEY,
            "NEWSLETTER_BASE_URL": settings.base_url,
        }
        env.pop("NEWSLETTER_CONFIG", None)
        newsletter = str(Path(sys.executable).with_name("newsletter"))
        ours_cmd = [newsletter, "serve", "--port", str(ours_port), "--db", str(settings.db)]
        ours_cmd += ["--site", str(settings.site_dir)]
        naive_cmd = [sys.executable, "-c", NAIVE_APP, str(settings.site_dir), str(naive_port)]

        figures: dict[str, dict[str, float]] = {}
        for name, command, port in (
            ("ours", ours_cmd, ours_port),
            ("naive", naive_cmd, naive_port),
        ):
            process = start(command, port, env)
            try:
                etag = asyncio.run(etag_of(port, FEED))
                results: dict[str, float] = {}
                for label, request, expected in (
                    ("full", get(FEED), 200),
                    ("304", get(FEED, etag=etag), 304),
                ):

                    def measure(
                        request: bytes = request, expected: int = expected, port: int = port
                    ) -> float:
                        load = asyncio.run(
                            hammer(port, request, connections=conns, seconds=seconds)
                        )
                        assert set(load.statuses) == {expected}, load.statuses
                        return load.count / seconds

                    results[label] = median_of(runs, measure)
                figures[name] = results
                if name == "ours":
                    quiet, busy = [], []
                    for _ in range(runs):
                        quiet += asyncio.run(
                            unsubscribe_latency(
                                port, tokens, seconds=seconds / 2, background=None, connections=0
                            )
                        )
                        busy += asyncio.run(
                            unsubscribe_latency(
                                port,
                                tokens,
                                seconds=seconds,
                                background=get(FEED, etag=etag),
                                connections=conns,
                            )
                        )
            finally:
                stop(process)

    def pct(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000

    ours, naive = figures["ours"], figures["naive"]
    print(
        f"feed {FEED}: {feed_bytes:,} bytes; {conns} keep-alive connections; {seconds:g} s x {runs} runs"
    )
    print(
        f"full GET (gzip):      ours {ours['full']:7.0f} req/s   naive {naive['full']:7.0f} req/s"
        f"   -> {ours['full'] / naive['full']:.1f}x"
    )
    print(
        f"GET + matching ETag:  ours {ours['304']:7.0f} req/s   naive {naive['304']:7.0f} req/s"
        f"   -> {ours['304'] / naive['304']:.1f}x  (all 304)"
    )
    print(
        f"one-click unsubscribe, idle:          median {statistics.median(quiet) * 1000:.1f} ms, "
        f"p95 {pct(quiet, 0.95):.1f} ms ({len(quiet)} POSTs)"
    )
    print(
        f"one-click unsubscribe, under 304 load: median {statistics.median(busy) * 1000:.1f} ms, "
        f"p95 {pct(busy, 0.95):.1f} ms ({len(busy)} POSTs)"
    )


if __name__ == "__main__":
    main()
