"""A send that takes over ambiguous claims runs alone: the claims of a send still running are
not ambiguous, and resending them would mail their readers twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.delivery.runlock import _held, another_send_running, edition_lock, edition_lock_path
from newsletter.store import Store
from tests.smtp_servers import RecordingHandler, smtp_server
from tests.test_send_cli import (
    SlowHandler,
    day_with_readers,
    got,
    ledger,
    smtp_args,
    start_send,
)


def test_resending_ambiguous_claims_waits_for_the_running_send(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    day_with_readers(db, 60, prefix="lock")

    def send(port: int, *extra: str) -> subprocess.Popen[str]:
        return start_send(cli_env, tmp_path, port, *extra)

    handler = SlowHandler()
    handler.delay = 0.05
    with smtp_server(handler) as (server, _):
        first = send(server.port)
        try:
            while len(handler.received) < 5 and first.poll() is None:
                time.sleep(0.005)
            # Mid-send: its claims look like a dead run's. Resending them is refused.
            resend = send(server.port, "--resend-ambiguous")
            output, _ = resend.communicate(timeout=30)
            assert resend.returncode == 1, output
            assert "another send of this database is running" in output
            split = send(server.port, "--resend-ambiguous", "--processes", "2")
            output, _ = split.communicate(timeout=30)  # a split send's parent holds the lock
            assert split.returncode == 1, output
            assert "another send of this database is running" in output
            assert first.poll() is None  # (it really was still sending)
            first_output, _ = first.communicate(timeout=60)
        finally:
            first.kill()
        assert first.returncode == 0, first_output
        after = send(server.port, "--resend-ambiguous")  # alone now: it may run
        later, _ = after.communicate(timeout=30)
    assert after.returncode == 0, later
    counts = got(handler)
    assert len(counts) == 60 and set(counts.values()) == {1}  # nobody twice
    assert ledger(db, "claimed") == []


@dataclass
class HoldingHandler(RecordingHandler):
    """Holds the message to one address until `release` is set."""

    held: str = ""
    only: bytes = b""  # and only a message holding these bytes (e.g. its Message-ID's date)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.held in envelope.rcpt_tos and self.only in envelope.content:
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


def beside_a_held_send(
    cli_env: dict[str, str],
    tmp_path: Path,
    handler: HoldingHandler,
    *,
    held: tuple[str, ...],
    second: tuple[str, ...],
) -> tuple[tuple[int, str], tuple[int, str], int]:
    """A send (`held` options) held by the server on one message while a second send
    (`second`) runs to its end; then the first is let go. The exit code and output of each,
    and the rows left claimed when the second had ended."""
    db = Path(cli_env["NEWSLETTER_DB"])
    with smtp_server(handler) as (server, _):
        first = start_send(cli_env, tmp_path, server.port, *held)
        try:
            assert handler.holding.wait(timeout=30), "the held send never got going"
            other = start_send(cli_env, tmp_path, server.port, *second)
            output, _ = other.communicate(timeout=60)
            claimed = len(ledger(db, "claimed"))
            handler.release.set()
            first_output, _ = first.communicate(timeout=60)
        finally:
            handler.release.set()
            first.kill()
    return (first.returncode, first_output), (other.returncode, output), claimed


@pytest.mark.parametrize("split", [(), ("--processes", "2")], ids=["one process", "split"])
def test_a_send_ending_beside_another_calls_its_claims_in_flight_not_ambiguous(
    cli_env: dict[str, str], tmp_path: Path, split: tuple[str, ...]
) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    everyone = day_with_readers(db, 30, prefix="both")
    handler = HoldingHandler(held="both000@example.com")  # the first reader: the first sent
    # The first send holds its claims (one on the wire); a second send runs to its end.
    (first_code, first_output), (code, output), in_flight = beside_a_held_send(
        cli_env, tmp_path, handler, held=("--concurrency", "1"), second=split
    )
    assert in_flight >= 1
    assert code == 0, output
    assert output.splitlines()[-1].endswith(
        f"ambiguous 0 ({in_flight} claimed by another send still running)"
    )
    assert "--resend-ambiguous" not in output
    # The send that ended last saw no other: what it left claimed would be ambiguous; none is.
    assert first_code == 0, first_output
    assert ", ambiguous 0" in first_output.splitlines()[-1], first_output
    assert got(handler) == dict.fromkeys(everyone, 1)
    assert ledger(db, "claimed") == []
    assert list(db.with_name(db.name + ".sending.d").iterdir()) == []  # the last one tidied


def test_a_send_of_another_day_running_does_not_hide_a_dead_runs_claims(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    day_with_readers(db, 10, prefix="dead")
    with Store(db) as store:  # a run that died mid-send left one reader's claim
        (dead,) = [s for s in store.active_subscribers() if s.email == "dead009@example.com"]
        assert store.claim_delivery(dt.date(2024, 12, 13), dead.id, message_id="<x@x>")
    handler = HoldingHandler(held="dead000@example.com", only=b"digest.2024-10-16.")
    (other_code, other_output), (code, output), _ = beside_a_held_send(
        cli_env,
        tmp_path,
        handler,
        held=("--date", "2024-10-16"),
        second=("--date", "2024-12-13"),
    )
    # The other day's claims are not counted here, so its send says nothing of this one's.
    assert code == 1, output
    assert output.splitlines()[0].endswith(", ambiguous 1"), output
    assert other_code == 0, other_output


def test_a_late_probe_never_removes_the_lock_file_of_a_send_that_started_since(
    tmp_path: Path,
) -> None:
    # Two probes opened the same file; the first removed it, then a send made a new one.
    db, day = tmp_path / "news.db", dt.date(2024, 12, 13)
    path = edition_lock_path(db, kind="daily", date=day)
    path.parent.mkdir()
    path.touch()
    late = os.open(path, os.O_RDWR)
    try:
        assert another_send_running(db, kind="daily", date=day) is False  # the first probe
        assert not path.exists()
        with edition_lock(db, kind="daily", date=day):  # a send starts: a new file
            assert _held(late, path) is False  # the late probe: nobody holds the old file...
            assert path.exists()  # ...and the running send's file stays
            assert another_send_running(db, kind="daily", date=day) is True
    finally:
        os.close(late)


def test_a_send_whose_edition_lock_cannot_be_made_stops_before_claiming(
    runner: CliRunner, cli_env: dict[str, str]
) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    day_with_readers(db, 3, prefix="nolock")
    db.with_name(db.name + ".sending.d").write_text("not a folder")
    with smtp_server(RecordingHandler()) as (server, handler):
        result = runner.invoke(main, ["send", *smtp_args(server.port)], env=cli_env)
    assert result.exit_code == 1
    folder = db.with_name(db.name + ".sending.d")
    assert result.output == f"error: {folder}: cannot make the send's lock: File exists\n"
    assert handler.received == [] and ledger(db) == []
