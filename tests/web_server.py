"""The service on a real socket for tests: uvicorn in a background thread on a free loopback port."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from newsletter.config import Settings, load_settings
from newsletter.digest.ingest import ingest_paths
from newsletter.store import Store
from newsletter.tokens import MAX_ID, feed_token, subscriber_token
from newsletter.web import create_app
from newsletter.web.server import server_config
from tests.conftest import DIGESTS, PINNED_NOW, TEST_KEY


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(app: Any, *, settings: Settings) -> Iterator[str]:
    """Serve `app` as `newsletter serve` would (limits and timeouts included) until the block
    ends; yields its base URL, e.g. http://127.0.0.1:43121."""
    server = uvicorn.Server(server_config(app, settings=settings))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{settings.serve_host}:{settings.serve_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (so a base URL can be known before the app is created)."""
    return _free_port()


class MovableClock:
    """A clock pinned to a moment that a test can move forward."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def make_site(root: Path) -> Path:
    """A small built site by hand: archive pages, RSS, Atom, JSON Feed and a topic."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "topics").mkdir(exist_ok=True)
    items = "".join(
        f"<item><title>Paper {i}</title><link>https://arxiv.org/abs/2412.{i:05d}</link></item>"
        for i in range(40)
    )
    rss = f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>Daily Papers</title>{items}</channel></rss>\n'
    entries = "".join(f"<entry><title>Paper {i}</title></entry>" for i in range(40))
    atom = f'<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"><title>Daily Papers</title>{entries}</feed>\n'
    feed = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "Daily Papers",
            "items": [{"id": str(i), "title": f"논문 {i}"} for i in range(40)],
        },
        ensure_ascii=False,
    )
    page = "<!doctype html><html lang=ko><meta charset=utf-8><title>Daily Papers</title><body>{}</body></html>"
    files = {
        "index.html": page.format("오늘의 논문 " * 100),
        "2024-12-13.html": page.format("2024-12-13 " * 100),
        "rss.xml": rss,
        "atom.xml": atom,
        "feed.json": feed,
        "digests.xml": rss,
        "digests.atom": atom,
        "topics/llm.xml": rss,
        "topics/llm.atom": atom,
        ".newsletter-build.json": "{}",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def service_settings(tmp_path: Path, *, port: int, smtp_port: int = 25, **changes: Any) -> Settings:
    """Settings for a service on `port` with its database and site under `tmp_path`."""
    return load_settings(
        environ={},
        overrides={
            "db": tmp_path / "service.db",
            "site_dir": tmp_path / "site",
            "base_url": f"http://127.0.0.1:{port}",
            "serve_host": "127.0.0.1",
            "serve_port": port,
            "secret_key": TEST_KEY,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_tls": "none",
            "smtp_timeout": 30,
            **changes,
        },
    )


@dataclass
class Running:
    """A running service and what a test needs to poke at it."""

    url: str
    settings: Settings
    store: Store  # the test's own connection to the service's database
    clock: MovableClock
    app: Any

    @property
    def key(self) -> bytes:
        return self.settings.require_secret_key()

    def token(self, subject: int, purpose: str) -> str:
        """A link token for subscriber `subject` as an email would carry it (for an id the
        store does not hold, made with a made-up address)."""
        found = self.store.subscriber(subject) if subject <= MAX_ID else None
        email = found.email if found else "nobody@example.com"
        return subscriber_token(subject, email=email, purpose=purpose, key=self.key)

    def feed_url(self, subject: int) -> str:
        """The path of subscriber `subject`'s private feed, as emails link it."""
        found = self.store.subscriber(subject)
        assert found is not None
        return f"/feeds/{feed_token(subject, email=found.email, key=self.key)}.xml"

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 10, **options})


@contextmanager
def service(
    tmp_path: Path,
    *,
    site: bool = True,
    digests: bool = True,
    smtp_port: int = 25,
    app_options: dict[str, Any] | None = None,
    setup: Callable[[Store], object] | None = None,
    base_path: str = "",
    **changes: Any,
) -> Iterator[Running]:
    """The real app on a free port, over a database holding the three fixture digests.

    `base_path`: base_url's path (`/papers`), under which the service answers."""
    port = _free_port()
    if base_path:
        changes["base_url"] = f"http://127.0.0.1:{port}{base_path}"
    settings = service_settings(tmp_path, port=port, smtp_port=smtp_port, **changes)
    if site:
        make_site(settings.site_dir)
    clock = MovableClock(PINNED_NOW)
    with Store(settings.db, clock=clock) as store:
        if digests:
            assert not ingest_paths(store, DIGESTS).failed
        if setup is not None:
            setup(store)
        app = create_app(settings=settings, clock=clock, **(app_options or {}))
        with running(app, settings=settings) as url:
            yield Running(url=url, settings=settings, store=store, clock=clock, app=app)


def first_health(process: subprocess.Popen[Any], port: int) -> httpx.Response:
    """The first /healthz answer of a `newsletter serve` subprocess starting on `port`."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        except httpx.TransportError:
            assert process.poll() is None, "serve exited early"
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)


# Raw HTTP: httpx and browsers normalise paths and headers; these send the bytes as given.


def connect(web: Running, *, timeout: float = 5.0) -> socket.socket:
    """A plain TCP connection to the service."""
    host, port = web.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a read timeout fails the test)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def exchange(web: Running, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` exactly as given; the status, headers (lower-cased) and body."""
    with connect(web) as sock:
        sock.sendall(request)
        data = read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def get(target: str, *headers: str, host: str = "127.0.0.1") -> bytes:
    """The bytes of a GET for `target` as written (no normalisation), closing the connection."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def logged_paths(records: list[logging.LogRecord], *, count: int = 1) -> list[str]:
    """The paths of the access log's records, once `count` of them are in (the log line is
    written after the response, so a test may see the response first)."""
    deadline = time.monotonic() + 5
    while True:
        paths = [r.path for r in records if r.name == "newsletter.web" and hasattr(r, "path")]
        if len(paths) >= count or time.monotonic() > deadline:
            return paths
        time.sleep(0.01)
