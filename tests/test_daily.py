"""`run_daily`, the one daily job behind `run`, `serve --watch` and the demo: real files, SQLite, SMTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.daily import DailyReport, run_daily
from newsletter.delivery.outbox import CountingSender
from newsletter.delivery.pipeline import Sender
from newsletter.delivery.smtp import smtp_sender
from newsletter.digest.ingest import IngestReport
from newsletter.errors import StoreError
from newsletter.publish.build import BuildReport
from newsletter.store import Store
from tests.conftest import DIGESTS, FIXTURES, PINNED_NOW, TEST_KEY
from tests.smtp_servers import RecordingHandler, smtp_server

NEWEST = "2024-12-13"


def make_settings(tmp_path: Path, *, smtp_port: int = 25) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "db": tmp_path / "daily.db",
            "site_dir": tmp_path / "site",
            "secret_key": TEST_KEY,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_tls": "none",
        },
    )


class ClosingSender(CountingSender):
    """Counts messages and remembers whether it was closed (a real sender, not a mock)."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.closed = False
        events.append("sender made")

    async def aclose(self) -> None:
        self.closed = True
        self.events.append("sender closed")


@pytest.fixture
def digests(tmp_path: Path) -> Path:
    folder = tmp_path / "digests"
    folder.mkdir()
    for path in DIGESTS:
        shutil.copy(path, folder)
    return folder


@pytest.fixture
def readers(tmp_path: Path) -> Store:
    store = Store(tmp_path / "daily.db", clock=lambda: PINNED_NOW)
    for i in range(3):
        store.add_subscriber(f"reader{i}@example.com")
    return store


async def test_ingests_builds_and_sends_the_newest_day_once(
    tmp_path: Path, digests: Path, readers: Store
) -> None:
    with readers as store, smtp_server(RecordingHandler()) as (server, handler):
        settings = make_settings(tmp_path, smtp_port=server.port)

        async def run() -> DailyReport:
            return await run_daily(
                store,
                settings=settings,
                digests=[digests],
                sender_factory=lambda: smtp_sender(settings),
            )

        first = await run()
        again = await run()
    assert first.ingest.summary() == "ingested 3 files: 3 added, 0 updated, 0 unchanged, 0 failed"
    assert first.build is not None and "index.html" in first.build.written
    assert (tmp_path / "site" / f"{NEWEST}.html").is_file()
    assert first.delivery is not None and str(first.delivery.date) == NEWEST
    assert (first.delivery.sent, first.ok, first.exit_code) == (3, True, 0)
    assert sorted(r for m in handler.received for r in m.rcpt_tos) == [
        "reader0@example.com",
        "reader1@example.com",
        "reader2@example.com",
    ]
    # The second run changes nothing and the ledger keeps anyone from getting it twice.
    assert again.ingest.count("unchanged") == 3
    assert again.build is not None and again.build.written == ()
    assert again.delivery is not None
    assert (again.delivery.sent, again.delivery.already_sent, again.exit_code) == (0, 3, 0)
    assert len(handler.received) == 3


async def test_steps_are_reported_as_they_happen_and_the_sender_is_closed(
    tmp_path: Path, digests: Path, readers: Store
) -> None:
    events: list[str] = []
    senders: list[ClosingSender] = []

    def make() -> Sender:
        senders.append(ClosingSender(events))
        return senders[-1]

    def ingested(report: IngestReport) -> None:
        events.append(f"ingested {len(report.files)}")

    def built(report: BuildReport) -> None:
        events.append(f"built {report.out_dir.name}")

    with readers as store:
        report = await run_daily(
            store,
            settings=make_settings(tmp_path),
            digests=[digests],
            sender_factory=make,
            on_ingested=ingested,
            on_built=built,
        )
    assert events == ["ingested 3", "built site", "sender made", "sender closed"]
    assert report.delivery is not None and report.delivery.sent == senders[0].count == 3


async def test_a_bad_file_is_reported_and_the_good_ones_still_go_out(
    tmp_path: Path, digests: Path, readers: Store
) -> None:
    (digests / "broken.md").write_text("# not a digest\n", encoding="utf-8")
    sender = ClosingSender([])
    with readers as store:
        report = await run_daily(
            store,
            settings=make_settings(tmp_path),
            digests=[digests],
            sender_factory=lambda: sender,
        )
    assert [f.path for f in report.ingest.failed] == [str(digests / "broken.md")]
    assert report.ingest.count("added") == 3
    assert report.delivery is not None and report.delivery.sent == 3
    assert (report.ok, report.exit_code) == (False, 1)


async def test_only_if_changed_leaves_an_unchanged_folder_alone(
    tmp_path: Path, digests: Path, readers: Store
) -> None:
    events: list[str] = []
    settings = make_settings(tmp_path)
    with readers as store:
        first = await run_daily(
            store,
            settings=settings,
            digests=[digests],
            sender_factory=lambda: ClosingSender(events),
            only_if_changed=True,
        )
        again = await run_daily(
            store,
            settings=settings,
            digests=[digests],
            sender_factory=lambda: ClosingSender(events),
            only_if_changed=True,
        )
    assert first.build is not None and first.delivery is not None
    assert again.ingest.count("unchanged") == 3
    assert (again.build, again.delivery) == (None, None)
    assert events == ["sender made", "sender closed"]  # no sender for the second run


async def test_send_false_builds_without_making_a_sender(
    tmp_path: Path, digests: Path, readers: Store
) -> None:
    def no_sender() -> Sender:
        raise AssertionError("no sender may be made")

    with readers as store:
        report = await run_daily(
            store,
            settings=make_settings(tmp_path),
            digests=[digests],
            sender_factory=no_sender,
            send=False,
        )
    assert report.build is not None and report.delivery is None
    assert (tmp_path / "site" / "index.html").is_file()


async def test_nothing_stored_is_the_stores_error_and_opens_no_sender(tmp_path: Path) -> None:
    events: list[str] = []
    empty = tmp_path / "empty"
    empty.mkdir()
    with (
        Store(tmp_path / "daily.db") as store,
        pytest.raises(StoreError, match="no digests stored yet"),
    ):
        await run_daily(
            store,
            settings=make_settings(tmp_path),
            digests=[empty],
            sender_factory=lambda: ClosingSender(events),
        )
    assert events == []


async def test_a_dry_run_records_nothing(tmp_path: Path, readers: Store) -> None:
    sender = ClosingSender([])
    with readers as store:
        report = await run_daily(
            store,
            settings=make_settings(tmp_path),
            digests=[FIXTURES / f"{NEWEST}.md"],
            sender_factory=lambda: sender,
            record=False,
        )
        assert report.delivery is not None
        counts = store.delivery_counts(report.delivery.date)
    assert report.delivery.dry_run and sender.count == 3
    assert counts["sent"] == counts["claimed"] == 0
    assert report.exit_code == 0


async def test_a_failing_search_index_is_reported_and_the_mail_still_goes(
    tmp_path: Path, digests: Path, readers: Store
) -> None:
    # A file where Pagefind must write its new index makes the real pagefind fail.
    site = tmp_path / "site"
    site.mkdir()
    (site / ".pagefind.new").write_text("in the way")
    with readers as store:
        sender = CountingSender()
        report = await run_daily(
            store,
            settings=make_settings(tmp_path),
            digests=[digests],
            sender_factory=lambda: sender,
        )
    assert report.search_error is not None and report.search_error.startswith("pagefind failed")
    # The cause (the file in the way: "File exists" or "Not a directory", as pagefind meets
    # it), not the note about backtraces that ends pagefind's output.
    assert (
        "kind: AlreadyExists" in report.search_error or "kind: NotADirectory" in report.search_error
    )
    assert "RUST_BACKTRACE" not in report.search_error
    assert "pip install" not in report.search_error  # pagefind is installed
    assert report.delivery is not None and report.delivery.sent == sender.count == 3
    assert (site / f"{NEWEST}.html").is_file() and not (site / "pagefind").exists()
    assert report.exit_code == 0


async def test_the_search_index_is_rebuilt_after_the_mail_went(
    tmp_path: Path, digests: Path, readers: Store
) -> None:
    index = tmp_path / "site" / "pagefind" / "pagefind.js"

    class Watching(CountingSender):
        """Notes, as it closes after the send, whether the index was there already."""

        index_at_close: bool | None = None

        async def aclose(self) -> None:
            self.index_at_close = index.is_file()

    sender = Watching()
    with readers as store:
        report = await run_daily(
            store,
            settings=make_settings(tmp_path),
            digests=[digests],
            sender_factory=lambda: sender,
        )
    assert report.delivery is not None and report.delivery.sent == 3
    assert sender.index_at_close is False  # the mail went before Pagefind ran
    assert report.search_error is None and index.is_file()


async def test_a_run_that_fails_after_its_build_leaves_the_index_to_the_next_run(
    tmp_path: Path, readers: Store
) -> None:
    older, newest = DIGESTS[:-1], DIGESTS[-1]
    site = tmp_path / "site"
    index = site / "pagefind"
    settings = make_settings(tmp_path)
    with readers as store:
        await run_daily(
            store, settings=settings, digests=list(older), sender_factory=CountingSender, send=False
        )
        assert index.is_dir() and not (site / ".pagefind.pending").exists()

        def broken() -> Sender:
            raise RuntimeError("the relay settings are wrong")

        # The newest day is built, then the run fails before its mail (and its index).
        with pytest.raises(RuntimeError):
            await run_daily(store, settings=settings, digests=[newest], sender_factory=broken)
        assert (site / f"{newest.stem}.html").is_file()
        assert (site / ".pagefind.pending").is_file()
        before = index.stat().st_ino

        # The next run builds nothing new, and still makes the index the last one skipped.
        report = await run_daily(
            store, settings=settings, digests=[newest], sender_factory=CountingSender
        )
    assert report.build is not None and report.build.written == ()
    assert report.search_error is None
    assert index.stat().st_ino != before  # a new index was put in place
    assert not (site / ".pagefind.pending").exists()


async def test_the_search_index_is_built_beside_the_pages(
    tmp_path: Path, digests: Path, readers: Store
) -> None:
    with readers as store:
        report = await run_daily(
            store,
            settings=make_settings(tmp_path),
            digests=[digests],
            sender_factory=CountingSender,
            send=False,
        )
    assert report.search_error is None
    assert (tmp_path / "site" / "pagefind" / "pagefind.js").is_file()
