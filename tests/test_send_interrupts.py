"""A send interrupted or failing at its very end still ends: in-flight messages finish, the
ledger says what went, and the process exits (it used to wait for ever)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.smtp_servers import smtp_server
from tests.test_send_cli import SlowHandler, day_with_readers, got, ledger, start_send


class Arriving(SlowHandler):
    """Counts messages as they arrive, before taking its time over them."""

    arrived = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived += 1
        return await super().handle_DATA(server, session, envelope)


def test_sigterm_after_the_last_message_is_queued_still_ends(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # Fewer readers than two groups: every claim is queued at once, and the interrupt lands
    # while the end of the queue is being marked (the queue full of slow messages).
    db = Path(cli_env["NEWSLETTER_DB"])
    day_with_readers(db, 6, prefix="end")
    handler = Arriving()
    handler.delay = 1.0
    with smtp_server(handler) as (server, _):
        process = start_send(cli_env, tmp_path, server.port)
        deadline = time.monotonic() + 20
        # Four on the wire: the other two and the end markers fill the queue behind them.
        while handler.arrived < 4 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        finally:
            process.kill()  # when it hung: the test fails, without leaving it running
    assert process.returncode == 1, output
    assert "error: interrupted" in output
    assert ledger(db, "claimed") == []  # what the server took is recorded sent
    assert {d.email for d in ledger(db, "sent")} == set(got(handler))


def test_sigterm_does_not_wait_out_a_backoff(cli_env: dict[str, str], tmp_path: Path) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    day_with_readers(db, 4, prefix="busy")
    busy = Arriving(reply=lambda envelope, attempt: "451 4.3.0 try again later")
    busy.delay = 0
    with smtp_server(busy) as (server, _):
        process = start_send(cli_env, tmp_path, server.port, "--backoff", "600")
        deadline = time.monotonic() + 20
        while busy.attempts < 4 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.2)  # every worker now waits out its first 600 s backoff
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        finally:
            process.kill()  # when it waited: the test fails, without leaving it running
    assert time.monotonic() - started < 10
    assert process.returncode == 1, output
    assert "error: interrupted" in output
    deferred = ledger(db, "deferred")
    assert len(deferred) == 4 and {d.attempts for d in deferred} == {1}
    assert {d.last_error for d in deferred} == {"DATA refused: 451 4.3.0 try again later"}


def test_sigterm_does_not_wait_for_a_slow_rate(cli_env: dict[str, str], tmp_path: Path) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    day_with_readers(db, 6, prefix="paced")
    handler = Arriving()
    handler.delay = 0
    with smtp_server(handler) as (server, _):
        # One message every 50 s: the first goes at once, the others wait for their slot.
        process = start_send(cli_env, tmp_path, server.port, "--rate", "0.02")
        deadline = time.monotonic() + 20
        while handler.arrived < 1 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        finally:
            process.kill()
    assert time.monotonic() - started < 10
    assert process.returncode == 1, output
    assert "error: interrupted" in output
    assert ledger(db, "claimed") == []  # the waiting ones were never handed over: released
    assert {d.email for d in ledger(db, "sent")} == set(got(handler))
    assert len(got(handler)) == 1
