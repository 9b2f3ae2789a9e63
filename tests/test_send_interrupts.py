"""A send interrupted or failing at its very end still ends: in-flight messages finish, the
ledger says what went, and the process exits (it used to wait for ever)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.smtp_servers import smtp_server
from tests.test_send_cli import (
    SlowHandler,
    day_with_readers,
    got,
    ledger,
    running,
    split_send_under_way,
    start_send,
)


class Arriving(SlowHandler):
    """Counts messages as they arrive, before taking its time over them."""

    arrived = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived += 1
        return await super().handle_DATA(server, session, envelope)


def signal_once(
    process: subprocess.Popen[str],
    ready: Callable[[], bool],
    *,
    settle: float = 0.0,
    signum: int = signal.SIGTERM,
) -> tuple[str, float]:
    """Send `signum` to the send once `ready()` (and `settle` seconds more); its output and how
    many seconds it took to end. A send that does not end in 30 s fails the test and is killed."""
    deadline = time.monotonic() + 20
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(settle)
    started = time.monotonic()
    process.send_signal(signum)
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()  # when it hung: the test fails, without leaving it running
    return output, time.monotonic() - started


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
        # Four on the wire: the other two and the end markers fill the queue behind them.
        output, _ = signal_once(process, lambda: handler.arrived >= 4)
    assert process.returncode == 143, output  # 128 + SIGTERM
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
        # Settled: every worker now waits out its first 600 s backoff.
        output, took = signal_once(process, lambda: busy.attempts >= 4, settle=0.2)
    assert took < 10
    assert process.returncode == 143, output  # 128 + SIGTERM
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
        output, took = signal_once(process, lambda: handler.arrived >= 1, settle=0.3)
    assert took < 10
    assert process.returncode == 143, output  # 128 + SIGTERM
    assert "error: interrupted" in output
    assert ledger(db, "claimed") == []  # the waiting ones were never handed over: released
    assert {d.email for d in ledger(db, "sent")} == set(got(handler))
    assert len(got(handler)) == 1


def test_ctrl_c_stops_a_send_with_the_shells_exit_code(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    day_with_readers(db, 40, prefix="ctrl")
    handler = Arriving()
    handler.delay = 0.05
    with smtp_server(handler) as (server, _):
        process = start_send(cli_env, tmp_path, server.port)
        output, took = signal_once(process, lambda: handler.arrived >= 4, signum=signal.SIGINT)
    assert took < 10
    assert process.returncode == 130, output  # 128 + SIGINT, as a shell reports Ctrl-C
    assert output.splitlines()[-1] == (
        "error: interrupted: messages in flight were finished; run again to send the rest"
    )
    assert ledger(db, "claimed") == []
    assert {d.email for d in ledger(db, "sent")} == set(got(handler))
    assert len(got(handler)) < 40


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_split_send_stopped_by_a_signal_exits_with_its_code(
    cli_env: dict[str, str], signum: int, code: int
) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    day_with_readers(db, 0, prefix="")  # the digests; the readers come next
    with split_send_under_way(cli_env, db, readers=192) as (process, workers, handler):
        process.send_signal(signum)  # the parent only: it tells its workers
        _, err = process.communicate(timeout=30)
        arrived = len(handler.received)
    assert process.returncode == code, err
    assert err.splitlines()[-1] == (
        "error: interrupted: messages in flight were finished; run again to send the rest"
    )
    assert not any(running(pid) for pid in workers)
    assert arrived < 150
    assert [r for r in ledger(db) if r.status == "claimed"] == []
    assert {r.email for r in ledger(db) if r.status == "sent"} == set(got(handler))


def test_sigterm_during_work_after_the_last_await_still_stops_and_restores_the_handler() -> None:
    # The daily job's search index runs synchronously after its last await: a SIGTERM then
    # found the task already done and was lost, and asyncio left SIGTERM at its default.
    from newsletter.cli.send import _run
    from newsletter.errors import Interrupted

    def before(signum: int, frame: object) -> None:
        raise AssertionError("the run's own handler should have taken it")

    async def work() -> str:
        await asyncio.sleep(0)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        time.sleep(1.0)  # synchronous: the loop cannot run
        return "done"

    previous = signal.signal(signal.SIGTERM, before)
    try:
        with pytest.raises(Interrupted) as caught:
            _run(work)
        assert caught.value.exit_code == 143
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, previous)
