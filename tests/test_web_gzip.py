"""Large files over real HTTP: gzip siblings sent as written, a stale one ignored, and a
multi-megabyte feed never holding up other requests."""

from __future__ import annotations

import gzip
import statistics
import threading
import time
from pathlib import Path

import httpx

from tests.web_server import service


def raw_get(client: httpx.Client, path: str) -> tuple[httpx.Headers, bytes]:
    """Headers and the body as sent (httpx would otherwise decode the gzip)."""
    with client.stream("GET", path, headers={"accept-encoding": "gzip"}) as response:
        assert response.status_code == 200, path
        return response.headers, b"".join(response.iter_raw())


def big_feed(items: int) -> bytes:
    entries = "".join(
        f"<item><title>Paper {i}</title><link>https://arxiv.org/abs/2412.{i:05d}</link>"
        f"<description>{'요약 ' * 40}{i}</description></item>"
        for i in range(items)
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>{entries}</channel></rss>\n'.encode()


def test_a_matching_sibling_is_sent_and_a_stale_one_ignored(tmp_path: Path) -> None:
    with service(tmp_path) as web, web.client() as client:
        site = web.settings.site_dir
        body = big_feed(300)
        (site / "rss.xml").write_bytes(body)
        sibling = gzip.compress(body, compresslevel=1, mtime=0)  # unlike what serve would make
        (site / "rss.xml.gz").write_bytes(sibling)
        headers, sent = raw_get(client, "/rss.xml")
        assert headers["content-encoding"] == "gzip" and sent == sibling
        # A sibling of other bytes (an older build's) is never sent for this file.
        (site / "atom.xml").write_bytes(body.replace(b"Paper", b"Paper!"))
        (site / "atom.xml.gz").write_bytes(sibling)
        headers, sent = raw_get(client, "/atom.xml")
        assert sent != sibling and gzip.decompress(sent) == (site / "atom.xml").read_bytes()


def test_a_six_megabyte_feed_is_served_while_healthz_stays_fast(tmp_path: Path) -> None:
    with service(tmp_path) as web, web.client() as client:
        body = big_feed(18_000)
        assert len(body) > 6_000_000
        (web.settings.site_dir / "rss.xml").write_bytes(body)  # no sibling: serve compresses once
        stop = threading.Event()
        fetched: list[int] = []

        def poll() -> None:
            with web.client() as reader:
                while not stop.is_set():
                    response = reader.get("/rss.xml", headers={"accept-encoding": "gzip"})
                    assert response.headers["content-encoding"] == "gzip"
                    fetched.append(len(response.content))

        readers = [threading.Thread(target=poll) for _ in range(4)]
        for thread in readers:
            thread.start()
        latencies = []
        try:
            for _ in range(30):
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.02)
        finally:
            stop.set()
            for thread in readers:
                thread.join(timeout=30)
    assert fetched and set(fetched) == {len(body)}
    # Bounds far above a quiet machine's few milliseconds; reading and compressing 6 MB on
    # the event loop at every request took about a second per /healthz.
    assert statistics.median(latencies) < 0.25, latencies
    assert max(latencies) < 2.0, latencies
