"""Another process holding the database's write lock: the service keeps answering, no POST is lost.

The lock is taken by a separate Python process (`BEGIN IMMEDIATE`), as a `newsletter send` or
`subscribers import` running next to the service would hold it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from newsletter.errors import StoreBusy
from newsletter.store import Store
from newsletter.store.pool import StorePool
from tests.web_server import Running, service

_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


@contextmanager
def locked(db: Path) -> Iterator[Callable[[], None]]:
    """`db` write-locked by another process until the yielded release() (or the block's end)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    def release() -> None:
        if proc.poll() is None:
            stdin.write("\n")
            stdin.flush()
            proc.wait(timeout=10)

    try:
        assert proc.stdout.readline().strip() == "locked"
        yield release
    finally:
        release()


def _timed_get(client: httpx.Client, url: str) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = client.get(url)
    return response, time.monotonic() - start


def _status(web: Running, subscriber_id: int) -> str:
    found = web.store.subscriber(subscriber_id)
    assert found is not None
    return found.status


def test_pages_answer_and_one_click_waits_for_the_lock(tmp_path: Path) -> None:
    with service(tmp_path, app_options={"busy_timeout": 8.0}) as web:
        reader = web.store.add_subscriber("locked@example.com")
        url = f"/u/{web.token(reader.id, 'unsubscribe')}"
        # Short timeouts: a request stuck behind the lock fails the test instead of waiting.
        with (
            web.client(timeout=3) as client,
            httpx.Client(base_url=web.url, timeout=20) as mailer,
            ThreadPoolExecutor(1) as pool,
            locked(web.settings.db) as release,
        ):
            pending = pool.submit(mailer.post, url)
            time.sleep(0.5)  # the POST is now waiting for the lock in a worker thread
            for path in ("/healthz", "/rss.xml", url):
                response, took = _timed_get(client, path)
                assert response.status_code == 200, path
                assert took < 1.0, (path, took)
            assert "unsubscribe" in response.text.lower()  # the page still offers the button
            assert not pending.done()  # the write really is waiting for the other process
            assert _status(web, reader.id) == "active"
            release()
            posted = pending.result(timeout=10)
        assert posted.status_code == 200
        assert "You are unsubscribed" in posted.text
        assert _status(web, reader.id) == "unsubscribed"


def test_a_lock_past_the_busy_timeout_answers_503_and_changes_nothing(tmp_path: Path) -> None:
    with service(tmp_path, app_options={"busy_timeout": 0.3}) as web:
        reader = web.store.add_subscriber("stuck@example.com")
        url = f"/u/{web.token(reader.id, 'unsubscribe')}"
        with web.client() as client:
            with locked(web.settings.db):
                refused = client.post(url)
                assert client.get("/healthz").status_code == 200
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "10"
            assert refused.headers["cache-control"] == "no-store"
            assert "try again" in refused.text
            assert _status(web, reader.id) == "active"
            # The retry the 503 asked for goes through once the lock is gone.
            assert client.post(url).status_code == 200
        assert _status(web, reader.id) == "unsubscribed"


def test_writes_queued_behind_the_lock_never_hold_up_reads(tmp_path: Path) -> None:
    busy_timeout = 3.0
    with service(tmp_path, app_options={"busy_timeout": busy_timeout}) as web:
        readers = [web.store.add_subscriber(f"queued{n}@example.com") for n in range(20)]
        page = f"/p/{web.token(readers[0].id, 'preferences')}"
        with (
            web.client(timeout=3) as client,
            httpx.Client(base_url=web.url, timeout=30) as mailer,
            ThreadPoolExecutor(len(readers)) as pool,
            locked(web.settings.db),
        ):
            start = time.monotonic()
            pending = [
                pool.submit(mailer.post, f"/u/{web.token(r.id, 'unsubscribe')}") for r in readers
            ]
            time.sleep(0.5)  # more one-clicks wait than the service has threads
            for path in ("/healthz", page, "/rss.xml"):
                response, took = _timed_get(client, path)
                assert response.status_code == 200, path
                assert took < 1.0, (path, took)
            answers = [future.result(timeout=30) for future in pending]
            took = time.monotonic() - start
        # Each answered within the busy timeout, its wait for a turn included; none written.
        assert [a.status_code for a in answers] == [503] * len(readers)
        assert took < busy_timeout + 1.5, took
        assert {_status(web, r.id) for r in readers} == {"active"}


def test_pool_raises_store_busy_and_lends_no_open_transaction(tmp_path: Path) -> None:
    pool = StorePool(tmp_path / "busy.db", size=2, busy_timeout=0.2)
    try:
        with locked(tmp_path / "busy.db"), pytest.raises(StoreBusy):
            pool.run(Store.add_subscriber, "late@example.com")
        assert pool.run(lambda store: store.conn.in_transaction) is False
        assert pool.run(Store.subscriber_by_email, "late@example.com") is None
    finally:
        pool.close()


def test_threads_never_share_a_connection(tmp_path: Path) -> None:
    pool = StorePool(tmp_path / "threads.db", size=4)
    in_use: set[int] = set()
    guard = threading.Lock()
    overlaps = []

    def work(store: Store, n: int) -> int:
        with guard:
            overlaps.append(id(store.conn) in in_use)
            in_use.add(id(store.conn))
        try:
            # A multi-statement write transaction, slow enough for the threads to overlap.
            signup = store.add_signup(f"t{n}@example.com")
            time.sleep(0.01)
            assert store.confirm_signup(signup.id) is not None
            return signup.id
        finally:
            with guard:
                in_use.discard(id(store.conn))

    try:
        with ThreadPoolExecutor(8) as threads:
            ids = list(threads.map(lambda n: pool.run(work, n), range(40)))
        assert len(set(ids)) == 40
        assert overlaps and not any(overlaps)
        assert pool.run(Store.subscriber_by_email, "t39@example.com") is not None
    finally:
        pool.close()
