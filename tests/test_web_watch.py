"""`serve --watch`: a digest landing in the folder is ingested, built and sent once, restarts included."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.delivery.outbox import CountingSender
from newsletter.digest.ingest import ingest_paths
from newsletter.publish import build as publish_build
from newsletter.store import Store
from newsletter.store.pool import StorePool
from newsletter.web.logs import JsonFormatter
from newsletter.web.watch import DigestWatcher
from tests.conftest import FIXTURES, PINNED_NOW
from tests.smtp_servers import RecordingHandler, free_port, smtp_server
from tests.web_server import Running, service, service_settings


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


# --- a pass that fails: logged once, reported by /healthz, retried, never the end of the watcher ---

POISON = dt.date(2024, 12, 12)


def day_file(folder: Path, day: str, *, age: float = 3600) -> Path:
    """The 12-13 fixture under another date, settled `age` seconds ago."""
    text = (FIXTURES / "2024-12-13.md").read_text(encoding="utf-8")
    path = folder / f"{day}.md"
    path.write_text(text.replace("2024-12-13", day), encoding="utf-8")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def reader(store: Store) -> None:
    store.add_subscriber("reader@example.com")


def health(web: Running) -> tuple[int, dict[str, Any]]:
    with web.client() as client:
        response = client.get("/healthz")
    return response.status_code, response.json()


def direct_watcher(
    tmp_path: Path, incoming: Path, *, interval: float
) -> tuple[DigestWatcher, list[CountingSender]]:
    """A watcher driven by the test (run_once), one reader, counting senders it can inspect."""
    settings = service_settings(tmp_path, port=1)
    with Store(settings.db) as store:
        reader(store)
    senders: list[CountingSender] = []

    def counting() -> CountingSender:
        senders.append(CountingSender())
        return senders[-1]

    watcher = DigestWatcher(
        settings=settings,
        folder=incoming,
        sender_factory=counting,
        interval=interval,
        retry_after=60,
        clock=lambda: PINNED_NOW,
    )
    return watcher, senders


def test_a_pass_that_raises_is_logged_reported_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    day_file(incoming, "2024-12-13")
    failing = threading.Event()
    failing.set()
    save = Store.save_digests

    def flaky(self: Store, digests: Any) -> Any:
        # Not a NewsletterError, not an OSError: what a bug anywhere below the watcher raises.
        if failing.is_set():
            raise RuntimeError("disk gremlin")
        return save(self, digests)

    monkeypatch.setattr(Store, "save_digests", flaky)
    caplog.set_level(logging.INFO, logger="newsletter.web")
    options = {"watch_dir": incoming, "watch_interval": 0.2}
    with (
        smtp_server() as (controller, handler),
        service(
            tmp_path,
            app_options=options,
            setup=reader,
            site=False,
            digests=False,
            smtp_port=controller.port,
        ) as web,
    ):
        watcher = web.app.state.watcher
        wait_for(lambda: any(p.error for p in watcher.passes))
        status, body = health(web)
        assert status == 200  # the feeds and unsubscribe links still work: see the README
        assert body["ok"] is False
        assert body["watch"] == {
            "ok": False,
            "error": "RuntimeError: disk gremlin",
            "at": PINNED_NOW.isoformat(),
        }
        assert handler.received == []

        failing.clear()  # the next retry goes through
        wait_for(lambda: len(handler.received) == 1)
        next_day(incoming)  # and the watcher still takes new digests
        wait_for(lambda: len(handler.received) == 2)
        wait_for(lambda: health(web)[1]["ok"] is True)
        assert health(web) == (
            200,
            {
                "ok": True,
                "db": "ok",
                "latest_digest": "2024-12-14",
                "site": True,
                "watch": {"ok": True, "error": None, "at": None},
            },
        )
    assert [r.rcpt_tos for r in handler.received] == [["reader@example.com"]] * 2
    assert len(set(subjects(handler))) == 2
    failures = [r for r in caplog.records if r.getMessage() == "watch.failed"]
    assert failures, "the failure was not logged"
    for record in failures:
        assert record.exc_info is None  # one line, no traceback
        line = JsonFormatter().format(record)
        assert "\n" not in line and json.loads(line)["error"] == "RuntimeError: disk gremlin"


def test_a_digest_that_always_fails_does_not_hold_back_the_next_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    day_file(incoming, "2024-12-12")  # stored, it would overflow an integer column
    day_file(incoming, "2024-12-13")
    save = Store.save_digests

    def poisoned(self: Store, digests: Any) -> Any:
        digests = list(digests)
        if any(d.date == POISON for d, _ in digests):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return save(self, digests)

    monkeypatch.setattr(Store, "save_digests", poisoned)
    options = {"watch_dir": incoming, "watch_interval": 0.2}
    with (
        smtp_server() as (controller, handler),
        service(
            tmp_path,
            app_options=options,
            setup=reader,
            site=False,
            digests=False,
            smtp_port=controller.port,
        ) as web,
    ):
        wait_for(lambda: len(handler.received) == 1)  # 12-13, retried without 12-12
        next_day(incoming)
        wait_for(lambda: len(handler.received) == 2)
        status, body = health(web)
        assert status == 200 and body["ok"] is False  # 12-12 is still failing
        assert body["watch"]["error"].startswith("OverflowError: Python int too large")
        assert body["latest_digest"] == "2024-12-14"
    assert [r.rcpt_tos for r in handler.received] == [["reader@example.com"]] * 2


def test_failed_files_are_retried_alone_and_later_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    poison = day_file(incoming, "2024-12-12")
    day_file(incoming, "2024-12-13")
    save = Store.save_digests
    batches: list[list[str]] = []

    def poisoned(self: Store, digests: Any) -> Any:
        digests = list(digests)
        batches.append(sorted(str(d.date) for d, _ in digests))
        if any(d.date == POISON for d, _ in digests):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return save(self, digests)

    monkeypatch.setattr(Store, "save_digests", poisoned)
    watcher, senders = direct_watcher(tmp_path, incoming, interval=1.0)  # retries in 2 s, 4 s…
    first = watcher.run_once()
    assert first is not None and first.error is not None
    assert first.error.startswith("OverflowError: Python int too large")
    assert watcher.run_once() is None  # backed off: not retried at the next poll
    deadline = time.monotonic() + 30
    while not senders:
        assert time.monotonic() < deadline, "12-13 was never sent"
        time.sleep(0.1)
        watcher.run_once()
    assert senders[0].count == 1 and watcher.passes[-1].sent_date == dt.date(2024, 12, 13)
    # After the pass that failed with both, each file was tried on its own.
    assert batches[0] == ["2024-12-12", "2024-12-13"]
    assert all(len(b) == 1 for b in batches[1:])
    assert batches.count(["2024-12-12"]) == 1
    assert watcher.health()["ok"] is False  # 12-12 is still waiting for its retry
    retried = len(batches)
    for _ in range(5):
        assert watcher.run_once() is None  # its next try is 4 s away
    assert len(batches) == retried

    # Fixing the file (it changes) takes it at once, and the watcher is healthy again.
    monkeypatch.setattr(Store, "save_digests", save)
    poison.write_text(poison.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    os.utime(poison, (time.time() - 3600, time.time() - 3600))
    fixed = watcher.run_once()
    assert fixed is not None and fixed.error is None
    assert fixed.ingested == {str(poison): "added"}
    assert watcher.health() == {"ok": True, "error": None, "at": None}


def test_a_build_that_fails_once_is_retried_with_the_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    day_file(incoming, "2024-12-13")
    build = publish_build.build_site
    calls: list[int] = []

    def broken_once(store: Store, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("template blew up")
        return build(store, **kwargs)

    monkeypatch.setattr(publish_build, "build_site", broken_once)  # daily imports it per run
    watcher, senders = direct_watcher(tmp_path, incoming, interval=0.5)
    settings = watcher.settings
    first = watcher.run_once()
    assert first is not None and first.error == "RuntimeError: template blew up"
    assert first.ingested == {str(incoming / "2024-12-13.md"): "added"}  # stored all the same
    assert watcher.health()["error"] == "RuntimeError: template blew up"
    deadline = time.monotonic() + 30
    while not senders:
        assert time.monotonic() < deadline, "the build was never retried"
        time.sleep(0.1)
        watcher.run_once()
    last = watcher.passes[-1]
    assert (last.built, last.error, senders[0].count) == (True, None, 1)
    assert (settings.site_dir / "2024-12-13.html").is_file()
    assert watcher.health() == {"ok": True, "error": None, "at": None}


def test_a_failing_search_index_is_logged_and_the_mail_still_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    day_file(incoming, "2024-12-13")
    watcher, senders = direct_watcher(tmp_path, incoming, interval=0.2)
    # A file where Pagefind must write its new index makes the real pagefind fail.
    watcher.settings.site_dir.mkdir(parents=True, exist_ok=True)
    (watcher.settings.site_dir / ".pagefind.new").write_text("in the way")
    with caplog.at_level(logging.INFO):
        result = watcher.run_once()
    assert result is not None and result.error is None
    assert result.sent_date is not None and sum(s.count for s in senders) == 1
    failed = [r for r in caplog.records if r.getMessage() == "watch.search_failed"]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    line = json.loads(JsonFormatter().format(failed[0]))
    assert line["error"].startswith("pagefind failed")


def test_a_send_that_could_not_run_is_a_failed_pass(tmp_path: Path) -> None:
    # Nobody listens on the SMTP port: the daily job's send stops before claiming anything.
    # It raises nothing, but the pass failed: /healthz must say so, and it is retried.
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    day_file(incoming, "2024-12-13")
    options = {"watch_dir": incoming, "watch_interval": 0.2}
    with service(
        tmp_path,
        app_options=options,
        setup=reader,
        site=False,
        digests=False,
        smtp_port=free_port(),
    ) as web:
        watcher = web.app.state.watcher
        wait_for(lambda: any(p.error for p in watcher.passes))
        status, body = health(web)
    assert status == 200 and body["ok"] is False
    assert body["watch"]["ok"] is False
    assert body["watch"]["error"].startswith("the send stopped: ")
    assert "connect" in body["watch"]["error"]


def test_a_watched_folder_that_goes_away_is_reported_until_it_is_back(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher, _ = direct_watcher(tmp_path, incoming, interval=0.2)
    watcher.run_once()
    assert watcher.health()["ok"] is True
    incoming.rmdir()
    watcher.run_once()
    assert watcher.health() == {
        "ok": False,
        "error": f"{incoming}: the watched folder does not exist",
        "at": None,
    }
    incoming.mkdir()
    day_file(incoming, "2024-12-13")
    watcher.run_once()
    assert watcher.health()["ok"] is True
    assert watcher.passes[-1].ingested == {str(incoming / "2024-12-13.md"): "added"}


def test_serve_refuses_a_watch_folder_that_does_not_exist(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--watch", str(tmp_path / "nowhere")], env={"NEWSLETTER_DB": "x.db"}
    )
    assert result.exit_code == 2
    assert f"Directory '{tmp_path / 'nowhere'}' does not exist." in result.output


async def test_a_poll_that_raises_shows_in_healthz_until_a_poll_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher, _ = direct_watcher(tmp_path, incoming, interval=0.05)
    outcomes = iter([RuntimeError("boom"), None])
    healths: list[dict[str, object]] = []

    def run_once() -> None:  # a fault past run_once's own handling, then a quiet poll
        healths.append(watcher.health())
        outcome = next(outcomes, None)
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(watcher, "run_once", run_once)
    watcher.start()
    try:
        while len(healths) < 3:
            await asyncio.sleep(0.01)
    finally:
        await watcher.stop()
    assert healths[0]["ok"] is True
    assert (healths[1]["ok"], healths[1]["error"]) == (False, "RuntimeError: boom")
    assert healths[2]["ok"] is True


def test_a_digest_that_does_not_parse_is_logged_with_why_and_shown_until_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher, _ = direct_watcher(tmp_path, incoming, interval=0.05)
    broken = incoming / "2024-12-14.md"
    broken.write_text("## Daily Papers (2024-13-45)\n", encoding="utf-8")
    os.utime(broken, (time.time() - 3600, time.time() - 3600))
    with caplog.at_level(logging.INFO):
        watcher.run_once()
    why = f"{broken}:1: bad date '2024-13-45' (expected YYYY-MM-DD)"
    assert watcher.passes[-1].ingested == {str(broken): "failed"}
    # Its day is neither published nor sent: whoever alerts on `ok` must hear of it.
    assert watcher.health() == {"ok": False, "error": why, "at": None}
    (logged,) = [r for r in caplog.records if r.getMessage() == "watch.rejected"]
    line = json.loads(JsonFormatter().format(logged))
    assert (line["file"], line["error"]) == (str(broken), why)
    day_file(incoming, "2024-12-14")  # fixed: the same name, a digest that parses
    watcher.run_once()
    assert watcher.passes[-1].ingested == {str(broken): "added"}
    assert watcher.health()["ok"] is True
    broken.write_text("nothing here\n", encoding="utf-8")
    os.utime(broken, (time.time() - 60, time.time() - 60))
    watcher.run_once()
    assert watcher.health()["ok"] is False
    broken.unlink()  # taken away: nothing left to fix
    watcher.run_once()
    assert watcher.health()["ok"] is True


def test_the_watcher_works_on_no_database_swapped_in_under_the_service(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher, senders = direct_watcher(tmp_path, incoming, interval=0.05)
    db = watcher.settings.db
    pool = StorePool(db)  # the service's: it knows the file it opened
    watcher.check_file = pool.check_file
    try:
        copy = tmp_path / "restored.db"
        copy.write_bytes(db.read_bytes())
        copy.replace(db)  # an older backup restored while the service runs
        day_file(incoming, "2024-12-13")
        result = watcher.run_once()
    finally:
        pool.close()
    assert result is not None and result.ingested == {}  # nothing read into the other file
    health = watcher.health()
    assert health["ok"] is False
    assert "the database file was removed or replaced while the service ran" in str(health["error"])
    assert senders == []  # and nothing sent from it
    with Store(db) as store:
        assert store.digest_dates() == []


def test_a_digest_whose_name_is_not_utf8_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher, _ = direct_watcher(tmp_path, incoming, interval=0.05)
    odd = Path(os.fsdecode(bytes(incoming) + b"/\xff-2024-12-13.md"))
    odd.write_text((FIXTURES / "2024-12-13.md").read_text(encoding="utf-8"), encoding="utf-8")
    os.utime(odd, (time.time() - 3600, time.time() - 3600))
    with caplog.at_level(logging.INFO):
        for _ in range(4):
            watcher.run_once()
    rejected = [r for r in caplog.records if r.getMessage() == "watch.rejected"]
    assert len(rejected) == 1  # not on every poll
    line = json.loads(JsonFormatter().format(rejected[0]))
    assert line["file"] == f"{incoming}/\\xff-2024-12-13.md"
    assert watcher.health()["ok"] is False


def test_the_watcher_sends_the_weekly_edition_too(tmp_path: Path) -> None:
    # serve --watch ran only the daily send: weekly readers who deployed that way got nothing.
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher, senders = direct_watcher(tmp_path, incoming, interval=0.05)
    watcher.settings = watcher.settings.replace(weekly_day="friday")  # PINNED_NOW is a Friday
    with Store(watcher.settings.db) as store:
        store.add_subscriber("weekly@example.com", cadence="weekly")
    day_file(incoming, "2024-12-04")  # in the last full week, 2024-W49
    day_file(incoming, "2024-12-13")  # today's
    result = watcher.run_once()
    assert result is not None and result.error is None
    assert result.weekly == "2024-W49: sent 1, skipped 0, deferred 0, failed 0, ambiguous 0"
    with Store(watcher.settings.db) as store:
        weekly = list(store.deliveries(dt.date(2024, 12, 2), kind="weekly"))
    assert [(d.email, d.status) for d in weekly] == [("weekly@example.com", "sent")]
    assert sum(sender.count for sender in senders) == 2  # the reader's daily, the weekly one


class SlowSender(CountingSender):
    """Takes 50 ms over each message, as a relay does."""

    async def send(self, message: Any) -> None:
        await asyncio.sleep(0.05)
        await super().send(message)


async def test_stopping_the_service_stops_a_send_under_way(tmp_path: Path) -> None:
    # It used to run to the end (40 s in a review) with the web side already down.
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher, _ = direct_watcher(tmp_path, incoming, interval=0.05)
    senders: list[SlowSender] = []

    def slow() -> SlowSender:
        senders.append(SlowSender())
        return senders[-1]

    watcher.sender_factory = slow
    with Store(watcher.settings.db) as store:
        for n in range(200):
            store.add_subscriber(f"reader{n}@example.org")
    day_file(incoming, "2024-12-13")
    watcher.start()
    try:
        while not senders or senders[0].count < 10:
            await asyncio.sleep(0.01)
    finally:
        started = time.monotonic()
        await watcher.stop()
    # The pass ends once its messages in flight are done: the count stops growing.
    last, steady = -1, 0
    while steady < 10:
        assert time.monotonic() - started < 5, "the send went on after stop"
        count = senders[0].count
        last, steady = count, steady + 1 if count == last else 0
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # its last outcomes are committed as the pass ends
    with Store(watcher.settings.db) as store:
        counts = store.delivery_counts(dt.date(2024, 12, 13))
    assert counts["claimed"] == 0  # nothing left ambiguous
    assert counts["sent"] == senders[0].count < 150


def test_a_day_another_process_ingested_first_is_still_built_and_sent(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher, _ = direct_watcher(tmp_path, incoming, interval=0.05)
    day_file(incoming, "2024-12-13")
    first = watcher.run_once()
    assert first is not None and first.sent_date == dt.date(2024, 12, 13)
    newer = day_file(incoming, "2024-12-14", age=3600)
    with Store(watcher.settings.db) as store:  # `newsletter ingest` got to it first
        assert not ingest_paths(store, [newer]).failed
    second = watcher.run_once()
    assert second is not None
    assert second.ingested == {str(newer): "unchanged"}
    # It used to stop there ("unchanged": nothing to do), the day never built nor sent.
    assert (second.built, second.sent_date) == (True, dt.date(2024, 12, 14))
