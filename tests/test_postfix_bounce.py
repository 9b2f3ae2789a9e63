"""The whole bounce loop through a real MTA: `newsletter send` hands the day's email to a real
Postfix (Debian `postfix`, a second instance on loopback), which bounces the unknown user with
its own DSN to our VERP address (or, with VERP off, to the one bounce address, where our signed
Message-ID in the returned message says whose it was); `newsletter bounces process` reads that
Maildir."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.digest.ingest import ingest_paths
from newsletter.store import Store

from .conftest import DIGESTS, TEST_KEY
from .postfix_server import DOMAIN, postfix_server


@pytest.mark.parametrize("verp", [True, False], ids=["verp", "one-address"])
def test_a_real_postfix_bounce_marks_the_subscriber_bounced_once(
    tmp_path: Path, verp: bool
) -> None:
    db = tmp_path / "pf.db"
    with Store(db) as store:
        assert not ingest_paths(store, DIGESTS).failed
        day = store.digest_for(None).date
        store.add_subscriber(f"reader@{DOMAIN}")
        store.add_subscriber(f"nobody-here@{DOMAIN}")
    env = {
        "NEWSLETTER_DB": str(db),
        "NEWSLETTER_SECRET_KEY": TEST_KEY,
        "NEWSLETTER_ENVELOPE_FROM": f"bounces@{DOMAIN}",
        "NEWSLETTER_FROM": f"Daily Papers <digest@{DOMAIN}>",
        "NEWSLETTER_VERP": "true" if verp else "false",
    }
    runner = CliRunner()
    with postfix_server(users=("bounces", "reader")) as postfix:
        smtp = ["--smtp-host", "127.0.0.1", "--smtp-port", str(postfix.port), "--smtp-tls", "none"]
        sent = runner.invoke(main, ["send", *smtp], env=env)
        # Postfix takes both at SMTP time: the bounce comes later, as a DSN.
        assert sent.exit_code == 0, sent.output
        assert "sent 2," in sent.output and "failed 0" in sent.output
        (delivered,) = postfix.wait_for_mail("reader")
        (report,) = postfix.wait_for_mail("bounces")
        dsn = email.message_from_bytes(report, policy=email.policy.default)
        assert dsn.get_content_type() == "multipart/report"
        if verp:
            assert dsn["Delivered-To"].startswith("bounces+2-")  # our VERP address, user 2
        else:
            assert dsn["Delivered-To"] == f"bounces@{DOMAIN}"
        assert f"<nobody-here@{DOMAIN}>" in report.decode("utf-8", "replace")
        assert b"List-Id: " in delivered
        maildir = postfix.root / "mail" / "bounces"
        processed = runner.invoke(main, ["bounces", "process", str(maildir), "--json"], env=env)
        assert processed.exit_code == 0, processed.output
        counts = json.loads(processed.stdout)
        assert (counts["read"], counts["hard"], counts["bounced"]) == (1, 1, 1)
        again = runner.invoke(main, ["bounces", "process", str(maildir), "--json"], env=env)
        assert json.loads(again.stdout)["read"] == 0
    with Store(db) as store:
        assert {s.email: s.status for s in store.subscribers()} == {
            f"reader@{DOMAIN}": "active",
            f"nobody-here@{DOMAIN}": "bounced",
        }
        (record,) = store.bounces(2)
        sent_id = {d.subscriber_id: d.message_id for d in store.deliveries(day)}[2]
    # Found by what we signed, not the address: the day and our Message-ID come with it.
    assert (record.kind, record.status, record.day) == ("hard", "5.1.1", day)
    assert sent_id is not None and record.message_id == sent_id
    assert "unknown user" in record.diagnostic
