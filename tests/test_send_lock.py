"""A send that takes over ambiguous claims runs alone: the claims of a send still running are
not ambiguous, and resending them would mail their readers twice."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from newsletter.digest.ingest import ingest_paths
from newsletter.store import Store
from tests.conftest import DIGESTS
from tests.smtp_servers import smtp_server
from tests.test_send_cli import NEWSLETTER, SlowHandler, got, ledger, smtp_args


def test_resending_ambiguous_claims_waits_for_the_running_send(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    db = Path(cli_env["NEWSLETTER_DB"])
    with Store(db) as store:
        assert not ingest_paths(store, DIGESTS).failed
        for i in range(60):
            store.add_subscriber(f"lock{i:02d}@example.com")
    env = {**os.environ, **cli_env}

    def send(port: int, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(NEWSLETTER), "send", *smtp_args(port), "--concurrency", "4", *extra],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

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
