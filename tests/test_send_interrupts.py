"""A send interrupted or failing at its very end still ends: in-flight messages finish, the
ledger says what went, and the process exits (it used to wait for ever)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from newsletter.digest.ingest import ingest_paths
from newsletter.store import Store
from tests.conftest import DIGESTS
from tests.smtp_servers import smtp_server
from tests.test_send_cli import NEWSLETTER, SlowHandler, got, ledger, smtp_args


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
    with Store(db) as store:
        assert not ingest_paths(store, DIGESTS).failed
        for i in range(6):
            store.add_subscriber(f"end{i}@example.com")
    env = {**os.environ, **cli_env}
    handler = Arriving()
    handler.delay = 1.0
    with smtp_server(handler) as (server, _):
        process = subprocess.Popen(
            [str(NEWSLETTER), "send", *smtp_args(server.port), "--concurrency", "4"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
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
