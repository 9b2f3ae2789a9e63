"""A send that takes over ambiguous claims runs alone: the claims of a send still running are
not ambiguous, and resending them would mail their readers twice."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.smtp_servers import smtp_server
from tests.test_send_cli import SlowHandler, day_with_readers, got, ledger, start_send


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
