"""`serve --watch`: a digest landing in the folder is ingested, built and sent once, restarts included."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsletter.store import Store
from tests.conftest import FIXTURES
from tests.smtp_servers import RecordingHandler, smtp_server
from tests.web_server import Running, service


def wait_for(condition: Callable[[], bool], *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def subjects(handler: RecordingHandler) -> list[str]:
    return [str(r.message["Subject"]) for r in handler.received]


def passes(web: Running) -> int:
    return len(web.app.state.watcher.passes)


def next_day(folder: Path) -> Path:
    """A digest for 2024-12-14 (the 12-13 fixture under a new date), written as a copier would."""
    text = (FIXTURES / "2024-12-13.md").read_text(encoding="utf-8")
    target = folder / "2024-12-14.md"
    partial = folder / "2024-12-14.md.part"  # not a .md file until complete
    partial.write_text(text.replace("2024-12-13", "2024-12-14"), encoding="utf-8")
    partial.rename(target)
    return target


def test_watch_ingests_builds_and_sends_once(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    old = shutil.copy(FIXTURES / "2024-12-13.md", incoming)
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # long settled
    options = {"watch_dir": incoming, "watch_interval": 0.2}

    def reader(store: Store) -> None:
        if store.subscriber_by_email("reader@example.com") is None:
            store.add_subscriber("reader@example.com")

    with smtp_server() as (controller, handler):
        settings: dict[str, Any] = {"site": False, "digests": False, "smtp_port": controller.port}
        with service(tmp_path, app_options=options, setup=reader, **settings) as web:
            wait_for(lambda: bool(handler.received))
            with web.client() as client:
                feed = client.get("/rss.xml")
            assert feed.status_code == 200
            assert feed.headers["content-type"] == "application/rss+xml; charset=utf-8"

        # A restart polls everything again; the ledger says the day was sent.
        with service(tmp_path, app_options=options, setup=reader, **settings) as web:
            wait_for(lambda: passes(web) > 0)
            first = web.app.state.watcher.passes[0]
            assert first.error is None
            assert first.sent_date is not None and first.sent_date.isoformat() == "2024-12-13"
            assert len(handler.received) == 1
            with web.client() as client:
                before = client.get(f"/p/{web.token(1, 'preferences')}")
            assert "papers from 2024-12-13" in before.text

            next_day(incoming)
            wait_for(lambda: len(handler.received) == 2)
            watcher = web.app.state.watcher
            wait_for(lambda: any(str(p.sent_date) == "2024-12-14" for p in watcher.passes))
            with web.client() as client:
                assert client.get("/2024-12-14.html").status_code == 200
                page = client.get(f"/p/{web.token(1, 'preferences')}")
            assert "papers from 2024-12-14" in page.text  # the preview follows the new day at once
            time.sleep(0.6)  # a few more polls change nothing
            assert len(handler.received) == 2
    assert [r.rcpt_tos for r in handler.received] == [["reader@example.com"]] * 2
    first_subject, second_subject = subjects(handler)
    assert first_subject != second_subject
