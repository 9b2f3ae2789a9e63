"""A day's send split across processes (`newsletter.parallel`): workers forked once the parent
has rendered the day, or spawned to render it themselves; real SMTP and the real store.
The CLI's `--processes` is tested with the other send commands (tests/test_send_cli.py)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from newsletter import daily, parallel
from newsletter.config import Settings
from newsletter.delivery.outbox import CountingSender
from newsletter.store import Store
from tests.smtp_servers import RecordingHandler, smtp_server
from tests.test_send_cli import NEWEST, db, got, readers

__all__ = ["db"]  # the fixture: the CLI's database with the fixture digests and readers


FORKED_SEND = """
import datetime as dt, sys
from pathlib import Path
from newsletter import daily, parallel
from newsletter.config import Settings

rendered = []
render = daily.day_composer

def counted(**kwargs):
    rendered.append(1)  # a forked worker inherits this list with the parent's one call in it
    if len(rendered) > 1:
        raise AssertionError("the day was rendered again")
    return render(**kwargs)

daily.day_composer = counted
assert parallel._can_fork()
settings = Settings().replace(
    db=Path(sys.argv[1]), secret_key=sys.argv[2], smtp_host="127.0.0.1",
    smtp_port=int(sys.argv[3]), smtp_tls="none", concurrency=4,
)
report = parallel.send_day_in_processes(
    settings=settings, date=dt.date.fromisoformat(sys.argv[4]), processes=3
)
print(report.sent, len(rendered))
"""


def test_forked_workers_send_with_the_day_their_parent_rendered(
    cli_env: dict[str, str], db: Path
) -> None:
    # In a process of its own (no threads, so the workers are forked): the day is rendered
    # once, in the parent; a worker rendering it again would report an error instead.
    with smtp_server(RecordingHandler()) as (server, handler):
        done = subprocess.run(
            [sys.executable, "-c", FORKED_SEND, str(db), cli_env["NEWSLETTER_SECRET_KEY"],
             str(server.port), NEWEST],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == "8 1\n"
        assert got(handler) == {email: 1 for email in readers(db)}


def test_workers_are_spawned_while_another_thread_runs() -> None:
    # A thread may hold a lock at the fork that a forked worker would wait for forever.
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert not parallel._can_fork()
    finally:
        release.set()
        thread.join()


def test_spawned_workers_render_the_day_themselves_and_mail_everyone_once(
    cli_env: dict[str, str], db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where workers cannot be forked (macOS, Windows) they are spawned bare and render the
    # day themselves; the forked path is the test above and the CLI test of
    # --processes (Linux).
    monkeypatch.setattr(parallel, "_can_fork", lambda: False)
    with smtp_server(RecordingHandler()) as (server, handler):
        settings = Settings().replace(
            db=db,
            secret_key=cli_env["NEWSLETTER_SECRET_KEY"],
            smtp_host="127.0.0.1",
            smtp_port=server.port,
            smtp_tls="none",
            concurrency=4,
        )
        report = parallel.send_day_in_processes(
            settings=settings, date=dt.date.fromisoformat(NEWEST), processes=2
        )
        assert (report.sent, report.skipped) == (8, 1)
        assert got(handler) == {email: 1 for email in readers(db)}


async def test_a_send_given_the_days_composer_renders_nothing_again(
    cli_env: dict[str, str], db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a forked worker does: send_day with the composer its parent prepared.
    settings = Settings().replace(db=db, secret_key=cli_env["NEWSLETTER_SECRET_KEY"])
    with Store(db) as store:
        composer = daily.day_composer(store=store, settings=settings, date=None)

        def render_again(**_: object) -> None:
            raise AssertionError("the day was rendered again")

        monkeypatch.setattr(daily, "day_composer", render_again)
        sender = CountingSender()
        report = await daily.send_day(
            store=store, settings=settings, sender=sender, composer=composer
        )
    assert (report.date, report.sent, sender.count) == (composer.digest.date, 8, 8)
    with Store(db) as store, pytest.raises(ValueError, match="2024-10-16"):
        await daily.send_day(
            store=store,
            settings=settings,
            sender=sender,
            composer=composer,
            date=dt.date(2024, 10, 16),
        )


def test_a_worker_whose_parent_is_already_gone_leaves_quietly() -> None:
    # The parent's pid as the worker was told it, and the parent it has now, differ: the
    # worker exits at once, without a word or a traceback.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from newsletter.parallel import _stop_with; "
            "_stop_with(os.getppid() + 1); print('went on')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
