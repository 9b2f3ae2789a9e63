"""`newsletter bounces process`: real DSNs, ARF reports, auto-replies and old-style bounces, built
with `email.message` around real digest emails, in a real Maildir, mbox and .eml folder."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import json
import mailbox
import os
import re
import subprocess
import sys
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.bounces.parse import Report, diagnostic_text, read_report
from newsletter.bounces.process import apply_report, apply_reports, quoted_addresses
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.digest.ingest import ingest_paths
from newsletter.mail.compose import Composer
from newsletter.mail.outgoing import OutgoingMessage
from newsletter.store import Store
from newsletter.store.bounces import BounceRecord

from .conftest import DIGESTS, PINNED_NOW, TEST_KEY
from .test_store_faults import as_unprivileged

SETTINGS = Settings().replace(secret_key=TEST_KEY)
KEY = TEST_KEY.encode()


def clock() -> dt.datetime:
    return PINNED_NOW


@pytest.fixture
def sent(tmp_path: Path) -> dict[str, OutgoingMessage]:
    """Three subscribers in tmp_path/b.db and the digest email each was sent."""
    with Store(tmp_path / "b.db", clock=clock) as store:
        assert not ingest_paths(store, DIGESTS).failed
        people = [store.add_subscriber(f"{n}@example.org") for n in ("gone", "full", "angry")]
        composer = Composer(settings=SETTINGS, digest=store.digest_for(None), clock=clock)
        messages = {p.email.split("@")[0]: composer.compose(p) for p in people}
    assert all(messages.values())
    return {k: v for k, v in messages.items() if v is not None}


def dsn(
    returned: OutgoingMessage | None,
    *,
    to: str,
    recipient: str,
    status: str = "5.1.1",
    action: str = "failed",
    message_id: str = "<dsn1@mx.example.org>",
) -> bytes:
    """An RFC 3464 delivery status notification about `recipient`, returning its headers."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.org"
    report["To"] = to
    report["Delivered-To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = message_id
    report["Auto-Submitted"] = "auto-replied"
    report.attach(MIMEText("Your message could not be delivered.\n"))
    status_part = MIMEBase("message", "delivery-status")
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = "dns; mx.example.org"
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Diagnostic-Code"] = f"smtp; 550 {status} <{recipient}>: User unknown"
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    if returned is not None:
        head = returned.data.partition(b"\r\n\r\n")[0].decode() + "\r\n"
        report.attach(MIMEText(head, "rfc822-headers"))
    return report.as_bytes()


def arf(original: OutgoingMessage, *, recipient: str) -> bytes:
    """An RFC 5965 abuse report from a mailbox provider, carrying our original message."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "fbl@provider.example"
    report["To"] = "abuse@localhost"
    report["Subject"] = "Abuse report"
    report["Message-ID"] = "<arf1@provider.example>"
    report.attach(MIMEText("This is an email abuse report.\n"))
    feedback = MIMEBase("message", "feedback-report")
    feedback.set_payload(
        f"Feedback-Type: abuse\nUser-Agent: provider-fbl/1.0\nVersion: 1\n"
        f"Original-Rcpt-To: {recipient}\n"
    )
    report.attach(feedback)
    inner = MIMEBase("message", "rfc822")
    inner.set_payload([email.message_from_bytes(original.data)])
    report.attach(inner)
    return report.as_bytes()


def auto_reply(to: str) -> bytes:
    reply = MIMEText("I am away until Monday.\n")
    reply["From"] = "gone@example.org"
    reply["To"] = to
    reply["Subject"] = "Out of office: Daily Papers 2024-12-13"
    reply["Auto-Submitted"] = "auto-replied"
    reply["Message-ID"] = "<away@example.org>"
    return reply.as_bytes()


def maildir_with(path: Path, *messages: bytes) -> mailbox.Maildir:
    box = mailbox.Maildir(path, create=True)
    for data in messages:
        box.add(data)
    return box


def run(tmp_path: Path, source: Path, *extra: str, verp: bool = True) -> tuple[int, str, str]:
    env = {
        "NEWSLETTER_DB": str(tmp_path / "b.db"),
        "NEWSLETTER_SECRET_KEY": TEST_KEY,
        "NEWSLETTER_VERP": "true" if verp else "false",
    }
    result = CliRunner().invoke(main, ["bounces", "process", str(source), *extra], env=env)
    return result.exit_code, result.stdout, result.stderr


def statuses(tmp_path: Path) -> dict[str, str]:
    with Store(tmp_path / "b.db") as store:
        return {s.email.split("@")[0]: s.status for s in store.subscribers()}


def test_a_hard_bounce_to_the_verp_address_bounces_that_subscriber_once(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    gone = sent["gone"]
    # The remote names another address (forwarding) and returns no headers: only the VERP
    # token says whose it was.
    box = maildir_with(tmp_path / "Maildir", dsn(None, to=gone.envelope_from, recipient="x@y.org"))
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json")
    assert code == 0
    counts = json.loads(out)
    assert (counts["read"], counts["hard"], counts["bounced"], counts["unknown"]) == (1, 1, 1, 0)
    assert statuses(tmp_path) == {"gone": "bounced", "full": "active", "angry": "active"}
    (key,) = box.keys()
    assert box.get_message(key).get_flags() == "S" and box.get_message(key).get_subdir() == "cur"
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json")  # a seen message is not read
    assert (code, json.loads(out)["read"], json.loads(out)["already"]) == (0, 0, 0)
    with Store(tmp_path / "b.db") as store:
        (record,) = store.bounces(1)
    assert (record.kind, record.status, record.day) == ("hard", "5.1.1", dt.date(2024, 12, 13))
    assert record.message_id is None
    assert "User unknown" in record.diagnostic
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json")
    assert json.loads(out)["read"] == 0  # flagged: not read again


def test_soft_bounces_bounce_after_the_limit_and_files_never_count_twice(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    full = sent["full"]

    def soft(n: int) -> bytes:
        return dsn(
            full,
            to=full.envelope_from,
            recipient=full.recipient,
            status="4.2.2",
            message_id=f"<soft{n}@mx.example.org>",
        )

    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    for n in (1, 2):
        box.add(soft(n))
    box.flush()
    code, out, _ = run(tmp_path, tmp_path / "bounces.mbox")
    assert code == 0
    assert out.strip().endswith("0 subscribers bounced, 0 unsubscribed")
    assert "2 soft" in out
    assert statuses(tmp_path)["full"] == "active"
    code, out, _ = run(tmp_path, tmp_path / "bounces.mbox", "--json")
    assert (json.loads(out)["soft"], json.loads(out)["already"]) == (0, 2)
    box.add(soft(3))
    box.flush()
    code, out, _ = run(tmp_path, tmp_path / "bounces.mbox", "--json")
    assert (json.loads(out)["soft"], json.loads(out)["bounced"]) == (1, 1)
    assert statuses(tmp_path)["full"] == "bounced"


def test_a_complaint_unsubscribes_and_delays_and_auto_replies_change_nothing(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    folder = tmp_path / "eml"
    folder.mkdir()
    angry, gone = sent["angry"], sent["gone"]
    (folder / "1.eml").write_bytes(arf(angry, recipient=angry.recipient))
    (folder / "2.eml").write_bytes(
        dsn(
            gone,
            to=gone.envelope_from,
            recipient=gone.recipient,
            status="4.4.1",
            action="delayed",
            message_id="<late@mx.example.org>",
        )
    )
    (folder / "3.eml").write_bytes(auto_reply(gone.envelope_from))
    (folder / "4.eml").write_bytes(b"From: a@b.example\r\nSubject: hello\r\n\r\nJust a letter.\r\n")
    code, out, _ = run(tmp_path, folder, "--json")
    counts = json.loads(out)
    assert code == 0
    assert (counts["complaints"], counts["unsubscribed"], counts["ignored"], counts["unknown"]) == (
        1,
        1,
        2,
        1,
    )
    assert statuses(tmp_path) == {"gone": "active", "full": "active", "angry": "unsubscribed"}
    with Store(tmp_path / "b.db") as store:
        (record,) = store.bounces(3)
    assert (record.kind, record.diagnostic, record.message_id) == (
        "complaint",
        "abuse",
        angry.message_id,
    )
    code, out, _ = run(tmp_path, folder, "--json")
    assert (json.loads(out)["already"], json.loads(out)["unknown"]) == (3, 1)


def test_without_verp_our_message_id_then_the_recipient_names_the_subscriber(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    gone, full = sent["gone"], sent["full"]
    by_id = dsn(gone, to="bounces@localhost", recipient="forwarded@elsewhere.example")
    by_address = dsn(
        None, to="bounces@localhost", recipient=full.recipient, message_id="<dsn2@mx.example.org>"
    )
    maildir_with(tmp_path / "Maildir", by_id, by_address)
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json", verp=False)
    assert (code, json.loads(out)["bounced"]) == (0, 2)
    assert statuses(tmp_path) == {"gone": "bounced", "full": "bounced", "angry": "active"}


def test_with_verp_only_what_we_signed_names_a_subscriber(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    # Anyone can mail the bounce box. Our signed Message-ID in the returned headers names
    # its subscriber; a report naming only an address, or a Message-ID of ours rewritten to
    # another id, or one without the tag, names no one.
    gone, full, angry = sent["gone"], sent["full"], sent["angry"]
    signed = dsn(gone, to="bounces@localhost", recipient="forwarded@elsewhere.example")
    by_address = dsn(
        None, to="bounces@localhost", recipient=full.recipient, message_id="<dsn2@mx.example.org>"
    )
    gone_id = f"<{gone.message_id}>".encode()
    (head, tag) = gone.message_id.split("@")[0].rsplit(".", 1)
    moved = f"<{head[: -len(str(gone.subscriber_id))]}{angry.subscriber_id}.{tag}@localhost>"
    untagged = f"<{head[: -len(str(gone.subscriber_id))]}{angry.subscriber_id}@localhost>"
    assert gone_id in gone.data and moved.encode() != gone_id
    forged = [
        dsn(
            dataclasses.replace(gone, data=gone.data.replace(gone_id, fake.encode())),
            to="bounces@localhost",
            recipient="x@y.example",
            message_id=f"<dsn-forged{n}@mx.example.org>",
        )
        for n, fake in enumerate((moved, untagged))
    ]
    maildir_with(tmp_path / "Maildir", signed, by_address, *forged)
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json")
    counts = json.loads(out)
    assert (code, counts["hard"], counts["bounced"]) == (0, 4, 1)
    # The tag moved to another id checks for no one; the untagged id proves nothing.
    assert (counts["unproven"], counts["not_ours"]) == (2, 1)
    assert statuses(tmp_path) == {"gone": "bounced", "full": "active", "angry": "active"}
    with Store(tmp_path / "b.db") as store:
        (record,) = store.bounces(gone.subscriber_id)
    assert record.message_id == gone.message_id and record.day == dt.date(2024, 12, 13)


def test_the_summary_says_when_an_address_alone_was_not_believed(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    full = sent["full"]
    maildir_with(tmp_path / "Maildir", dsn(None, to="bounces@localhost", recipient=full.recipient))
    code, out, _ = run(tmp_path, tmp_path / "Maildir")
    assert code == 0
    assert out.strip().endswith(
        "0 subscribers bounced, 0 unsubscribed; 1 naming a subscriber by nothing we signed "
        "(applied to no one)"
    )


@pytest.mark.parametrize("verp", [True, False])
def test_an_untagged_message_id_names_no_one_even_a_subscriber_of_that_time(
    tmp_path: Path, sent: dict[str, OutgoingMessage], verp: bool
) -> None:
    # Emails sent before Message-IDs were signed carried digest.DAY.ID@domain, which anyone
    # can write for any id (counting up, any date): a complaint naming someone by such an id
    # alone is believed in no mode, even about a subscriber who existed then.
    angry = sent["angry"]
    old_id = angry.message_id.rsplit(".", 1)[0] + "@localhost"
    data = angry.data.replace(f"<{angry.message_id}>".encode(), f"<{old_id}>".encode())
    assert data != angry.data
    with Store(tmp_path / "b.db") as store:
        store.conn.execute(
            "UPDATE subscribers SET legacy_links = 1 WHERE id = ?", (angry.subscriber_id,)
        )
    folder = tmp_path / "eml"
    folder.mkdir()
    (folder / "1.eml").write_bytes(
        arf(dataclasses.replace(angry, data=data), recipient="redacted@provider.example")
    )
    code, out, _ = run(tmp_path, folder, "--json", verp=verp)
    counts = json.loads(out)
    assert (code, counts["complaints"], counts["unproven"], counts["unsubscribed"]) == (0, 1, 1, 0)
    assert statuses(tmp_path)["angry"] == "active"


def test_a_valid_token_is_recorded_with_its_own_message_id_only(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    # The DSN went to gone's VERP address but returns headers of full's email.
    gone, full = sent["gone"], sent["full"]
    maildir_with(tmp_path / "Maildir", dsn(full, to=gone.envelope_from, recipient="x@y.example"))
    assert json.loads(run(tmp_path, tmp_path / "Maildir", "--json")[1])["bounced"] == 1
    assert statuses(tmp_path) == {"gone": "bounced", "full": "active", "angry": "active"}
    with Store(tmp_path / "b.db") as store:
        (record,) = store.bounces(gone.subscriber_id)
    assert record.message_id is None


def test_a_report_quoting_an_erased_address_anywhere_keeps_nothing_of_it(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    # After angry is erased: a DSN about the mailbox their address forwarded to, and one
    # about a current subscriber, both quoting the erased address in the diagnostic.
    angry, full = sent["angry"], sent["full"]
    with Store(tmp_path / "b.db", clock=clock) as store:
        store.erase_address(angry.recipient)
    quote = b"(expanded from <ANGRY@example.org>)"
    forwarded = dsn(None, to="bounces@localhost", recipient="angry.real@mailhost.example")
    about_full = dsn(full, to=full.envelope_from, recipient=full.recipient, message_id="<d2@mx>")
    reports = [
        r.replace(b"User unknown", b"User unknown " + quote) for r in (forwarded, about_full)
    ]
    assert all(quote in r for r in reports)
    maildir_with(tmp_path / "Maildir", *reports)
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json")
    assert (code, json.loads(out)["bounced"]) == (0, 1)
    with Store(tmp_path / "b.db") as store:
        rows = store.conn.execute("SELECT subscriber_id, diagnostic FROM bounces").fetchall()
    assert {(r[0], r[1]) for r in rows} == {(full.subscriber_id, ""), (None, "")}


def test_a_forged_verp_token_names_nobody(tmp_path: Path, sent: dict[str, OutgoingMessage]) -> None:
    real = sent["gone"].envelope_from
    forged = real[: -len("@localhost") - 1] + ("0" if real[-11] != "0" else "1") + "@localhost"
    maildir_with(tmp_path / "Maildir", dsn(None, to=forged, recipient="stranger@else.example"))
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json")
    counts = json.loads(out)
    assert (code, counts["hard"], counts["not_ours"], counts["bounced"]) == (0, 1, 1, 0)
    assert set(statuses(tmp_path).values()) == {"active"}


def test_a_bounce_of_another_databases_email_is_not_pinned_on_this_ones_subscriber(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    # Another list with the same key and domain: its subscriber 1 is alice; here it is "gone".
    with Store(tmp_path / "a.db", clock=clock) as other:
        assert not ingest_paths(other, DIGESTS).failed
        alice = other.add_subscriber("alice@example.org")
        theirs = Composer(settings=SETTINGS, digest=other.digest_for(None), clock=clock)
        message = theirs.compose(alice)
    # The same id and day; the Message-IDs' tags differ (they sign the address too).
    assert message is not None and message.subscriber_id == sent["gone"].subscriber_id
    assert message.message_id.rsplit(".", 1)[0] == sent["gone"].message_id.rsplit(".", 1)[0]
    # Alice's mailbox is gone: the DSN goes to her VERP address and returns our headers.
    bounce = dsn(message, to=message.envelope_from, recipient=alice.email)
    maildir_with(tmp_path / "Maildir", bounce)
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json")
    assert (code, json.loads(out)["not_ours"]) == (0, 1)
    assert set(statuses(tmp_path).values()) == {"active"}


@pytest.mark.parametrize(("verp", "status"), [(False, "bounced"), (True, "active")])
def test_after_a_key_change_only_the_failed_address_can_name_the_subscriber(
    tmp_path: Path, sent: dict[str, OutgoingMessage], verp: bool, status: str
) -> None:
    # The email was signed under the key before; neither its VERP token nor its Message-ID
    # checks any more. The DSN names the subscriber's own address: believed with VERP off;
    # with VERP on, where anyone could have written it, the next email's bounce will tell.
    with Store(tmp_path / "b.db", clock=clock) as store:
        gone = store.subscriber_by_email("gone@example.org")
        assert gone is not None
        old_key = SETTINGS.replace(secret_key="an older key of forty-three characters, made")
        composer = Composer(settings=old_key, digest=store.digest_for(None), clock=clock)
        message = composer.compose(gone)
    assert message is not None and message.envelope_from != sent["gone"].envelope_from
    maildir_with(tmp_path / "Maildir", dsn(message, to=message.envelope_from, recipient=gone.email))
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json", verp=verp)
    counts = json.loads(out)
    assert (code, counts["bounced"], counts["unproven"]) == (0, int(not verp), int(verp))
    assert statuses(tmp_path)["gone"] == status


def test_a_late_bounce_of_an_erased_subscriber_falls_on_no_one(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    # The highest id is erased, then someone new subscribes; a complaint about the erased
    # reader's email arrives, naming them by our Message-ID only (ARF with the address
    # redacted), and a DSN sent to the plain bounce address.
    angry = sent["angry"]
    with Store(tmp_path / "b.db", clock=clock) as store:
        store.erase_address("angry@example.org")
        newcomer = store.add_subscriber("newcomer@example.org")
    assert angry.message_id.split(".")[2] == str(angry.subscriber_id)
    assert newcomer.id > angry.subscriber_id
    complaint = arf(angry, recipient="redacted@example.net")
    bounce = dsn(angry, to="bounces@localhost", recipient="angry@example.org")
    maildir_with(tmp_path / "Maildir", complaint, bounce)
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json")
    assert (code, json.loads(out)["not_ours"]) == (0, 2)
    assert statuses(tmp_path)["newcomer"] == "active"
    # The DSN quoted the erased address: it is not kept (a webhook's id quoting it, hashed).
    with Store(tmp_path / "b.db", clock=clock) as store:
        hooked = Report(
            kind="hard", report_id="ses:feedback-1:Angry@example.org", status="5.1.1",
            diagnostic="550 5.1.1 <angry@example.org>", recipients=("angry@example.org",),
        )  # fmt: skip
        summary = apply_reports(store, [hooked], settings=SETTINGS, key=KEY, source="hook:ses")
        assert (summary.hard, summary.not_ours) == (1, 1)
        again = apply_reports(store, [hooked], settings=SETTINGS, key=KEY, source="hook:ses")
        assert (again.hard, again.already) == (0, 1)  # its hashed id still counts it once
        text = " ".join(str(v) for row in store.conn.execute("SELECT * FROM bounces") for v in row)
        assert store.report_seen("dsn1@mx.example.org")
    assert text.count("erased:") == 1 and "angry@" not in text.lower()


def test_a_report_about_someone_erased_meanwhile_falls_on_no_one(
    tmp_path: Path, sent: dict[str, OutgoingMessage], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The erasure lands between finding whose report it is and recording it.
    gone = sent["gone"]
    report = read_report(dsn(gone, to=gone.envelope_from, recipient=gone.recipient))
    with Store(tmp_path / "b.db", clock=clock) as store:
        record_bounce = store.record_bounce

        def erased_first(record: BounceRecord, **limits: Any) -> str:
            if record.subscriber_id is not None:
                store.erase_address(gone.recipient)
            return record_bounce(record, **limits)

        monkeypatch.setattr(store, "record_bounce", erased_first)
        outcome, whose = apply_report(
            report, store=store, settings=SETTINGS, key=KEY, source="box", by_address=False
        )
        monkeypatch.undo()
        assert (outcome, whose.subscriber_id) == ("recorded", None)
        (row,) = store.conn.execute("SELECT subscriber_id, diagnostic FROM bounces").fetchall()
    assert tuple(row) == (None, "")


def test_reading_the_mailbox_again_after_an_erasure_brings_nothing_back(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    # A folder of .eml files is never marked read: every run reads it all again.
    gone = sent["gone"]
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "bounce.eml").write_bytes(dsn(gone, to=gone.envelope_from, recipient=gone.recipient))
    (folder / "stranger.eml").write_bytes(
        dsn(None, to="bounces@localhost", recipient="stranger@example.net",
            message_id="<dsn9@mx.example.org>")
    )  # fmt: skip
    assert json.loads(run(tmp_path, folder, "--json")[1])["bounced"] == 1
    with Store(tmp_path / "b.db", clock=clock) as store:
        assert store.erase_address("gone@example.org").bounces == 1
        assert store.erase_address("stranger@example.net").bounces == 1  # nobody of ours
    code, out, _ = run(tmp_path, folder, "--json")
    assert (code, json.loads(out)["already"]) == (0, 2)
    with Store(tmp_path / "b.db") as store:
        rows = store.conn.execute("SELECT * FROM bounces").fetchall()
    text = " ".join(str(value) for row in rows for value in row).lower()
    assert len(rows) == 2 and "gone@" not in text and "stranger@" not in text


QMAIL = b"""From: MAILER-DAEMON@mx.example.org\r
To: bounces+%s@localhost\r
Subject: failure notice\r
Message-ID: <qmail1@mx.example.org>\r
\r
Hi. This is the qmail-send program at mx.example.org.\r
I'm afraid I wasn't able to deliver your message to the following addresses.\r
This is a permanent error; I've given up. Sorry it didn't work out.\r
\r
<gone@example.org>:\r
Sorry, no mailbox here by that name. (#5.1.1)\r
\r
--- Below this line is a copy of the message.\r
\r
Subject: Daily Papers\r
"""


def test_a_non_standard_bounce_is_read_by_flufl_bounce(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    token = sent["gone"].envelope_from.split("+")[1].split("@")[0]
    report = read_report(QMAIL % token.encode())
    assert (report.kind, report.recipients, report.tokens) == (
        "hard",
        ("gone@example.org",),
        (token,),
    )
    maildir_with(tmp_path / "Maildir", QMAIL % token.encode())
    code, out, _ = run(tmp_path, tmp_path / "Maildir", "--json")
    assert (code, json.loads(out)["bounced"]) == (0, 1)
    assert statuses(tmp_path)["gone"] == "bounced"


def test_a_source_that_is_no_mailbox_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    code, out, err = run(tmp_path, tmp_path / "notes.txt")
    assert (code, out) == (1, "")
    assert (
        err
        == f"error: {tmp_path / 'notes.txt'}: not an mbox file (it does not start with 'From ')\n"
    )
    code, _, err = run(tmp_path, tmp_path / "missing")
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1


def test_messages_that_cannot_be_read_are_named_and_the_others_applied(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    folder = tmp_path / "eml"
    folder.mkdir()
    gone, angry = sent["gone"], sent["angry"]
    (folder / "1.eml").write_bytes(dsn(gone, to=gone.envelope_from, recipient=gone.recipient))
    (folder / "2.eml").mkdir()
    (folder / "3.eml").symlink_to(tmp_path / "nowhere.eml")
    os.mkfifo(folder / "4.eml")  # reading it would wait for a writer for ever
    (folder / "5.eml").write_bytes(arf(angry, recipient=angry.recipient))
    code, out, err = run(tmp_path, folder)
    assert code == 1
    assert out.startswith(f"{folder}: read 2: 1 hard, 0 soft, 1 complaints,")
    assert out.strip().endswith("1 subscribers bounced, 1 unsubscribed; 3 unreadable")
    assert err.splitlines() == [
        f"error: {folder / name}: cannot read: not a file" for name in ("2.eml", "3.eml", "4.eml")
    ]
    assert statuses(tmp_path) == {"gone": "bounced", "full": "active", "angry": "unsubscribed"}


def run_process(
    tmp_path: Path, source: Path, *extra: str, held: bool = False
) -> subprocess.CompletedProcess[str]:
    """`bounces process` in a process of its own, timed (a FIFO read would block for ever);
    `held` to file modes, which root ignores otherwise."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [
            str(Path(sys.executable).parent / "newsletter"),
            "bounces",
            "process",
            str(source),
            *extra,
        ],
        env={
            **os.environ,
            "NEWSLETTER_DB": str(tmp_path / "b.db"),
            "NEWSLETTER_SECRET_KEY": TEST_KEY,
        },
        capture_output=True,
        text=True,
        timeout=60,
        **(as_unprivileged() if held else {}),
    )


def test_maildir_entries_that_are_no_message_are_named_and_left(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    gone = sent["gone"]
    maildir_with(tmp_path / "Maildir", dsn(gone, to=gone.envelope_from, recipient=gone.recipient))
    new = tmp_path / "Maildir" / "new"
    (new / "1700000001.M1P1.host").symlink_to(tmp_path / "nowhere")  # a link to nothing
    os.mkfifo(new / "1700000002.M1P1.host")  # reading it would wait for a writer for ever
    with (new / "1700000003.M1P1.host").open("wb") as huge:
        huge.truncate(10 * 1024 * 1024 + 1)  # sparse: anyone can mail the bounce box
    done = run_process(tmp_path, tmp_path / "Maildir", "--json")
    code, out, err = done.returncode, done.stdout, done.stderr
    assert code == 1
    counts = json.loads(out)
    assert (counts["read"], counts["bounced"], counts["unreadable"]) == (1, 1, 3)
    box = tmp_path / "Maildir"
    assert err.splitlines() == [
        f"error: {box}: 1700000001.M1P1.host: cannot read: not a file",
        f"error: {box}: 1700000002.M1P1.host: cannot read: not a file",
        f"error: {box}: 1700000003.M1P1.host: not read: 10,485,761 bytes, over 10,485,760 "
        "(no delivery report is)",
    ]
    assert sorted(p.name for p in new.iterdir()) == [  # left where they were
        "1700000001.M1P1.host",
        "1700000002.M1P1.host",
        "1700000003.M1P1.host",
    ]


def test_an_mbox_message_over_the_limit_is_named_and_not_read(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    gone, full = sent["gone"], sent["full"]
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    box.add(dsn(gone, to=gone.envelope_from, recipient=gone.recipient))
    box.add(b"From: someone@example.org\nSubject: big\n\n" + b"x" * (10 * 1024 * 1024))
    box.add(
        dsn(
            full,
            to=full.envelope_from,
            recipient=full.recipient,
            message_id="<dsn2@mx.example.org>",
        )
    )
    box.flush()
    done = run_process(tmp_path, tmp_path / "bounces.mbox", "--json")
    assert done.returncode == 1
    counts = json.loads(done.stdout)
    assert (counts["read"], counts["bounced"], counts["unreadable"]) == (2, 2, 1)
    assert done.stderr == (
        f"error: {tmp_path / 'bounces.mbox'}: message 1: not read: over 10,485,760 bytes "
        "(no delivery report is)\n"
    )
    assert statuses(tmp_path)["gone"] == statuses(tmp_path)["full"] == "bounced"


def test_an_eml_folder_reads_any_case_and_says_when_it_holds_no_eml(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    gone = sent["gone"]
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "bounce.EML").write_bytes(dsn(gone, to=gone.envelope_from, recipient=gone.recipient))
    code, out, _ = run(tmp_path, folder, "--json")
    assert (code, json.loads(out)["hard"]) == (0, 1)
    other = tmp_path / "other"
    other.mkdir()
    (other / "msg1").write_bytes(b"From: a@example.com\n\nhello\n")
    (other / "msg2.txt").write_bytes(b"From: a@example.com\n\nhello\n")
    code, out, err = run(tmp_path, other)
    assert code == 1
    assert err == f"error: {other}: no .eml files here (2 other files passed over)\n"


def test_a_message_the_old_mta_scanner_trips_over_is_unknown_without_a_traceback(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    folder = tmp_path / "eml"
    folder.mkdir()
    (folder / "odd.eml").write_bytes(
        b"From: caf\xe9 <a@b.example>\nSubject: Undelivered\n\n<x@y.example>: 550 no\n"
    )
    # A process of its own: pytest's log capture would hide what logging prints to stderr.
    done = subprocess.run(
        [str(Path(sys.executable).parent / "newsletter"), "bounces", "process", str(folder)],
        env={
            **os.environ,
            "NEWSLETTER_DB": str(tmp_path / "b.db"),
            "NEWSLETTER_SECRET_KEY": TEST_KEY,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "read 1: 0 hard, 0 soft, 0 complaints, 0 ignored, 1 unknown" in done.stdout


def test_a_maildir_that_cannot_be_listed_or_marked_is_one_line_each(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    gone = sent["gone"]
    box = tmp_path / "Maildir"
    maildir_with(box, dsn(gone, to=gone.envelope_from, recipient=gone.recipient))
    (box / "new").chmod(0o300)  # cannot be listed
    listed = run_process(tmp_path, box, held=True)
    (box / "new").chmod(0o755)
    assert listed.returncode == 1
    assert listed.stderr == (f"error: {box}: cannot list the Maildir: Permission denied\n")
    for sub in ("new", "cur", "tmp"):
        (box / sub).chmod(0o555)  # readable, but the message cannot be moved to cur/
    marked = run_process(tmp_path, box, held=True)
    for sub in ("new", "cur", "tmp"):
        (box / sub).chmod(0o755)
    assert marked.returncode == 1
    assert "1 subscribers bounced" in marked.stdout  # applied, and recorded
    (line,) = marked.stderr.splitlines()
    assert line.startswith(f"error: {box}: ") and line.endswith(
        ": applied, but not marked seen: Permission denied"
    )


def test_a_source_that_is_no_mailbox_says_so(tmp_path: Path) -> None:
    fifo = tmp_path / "bounces.fifo"
    os.mkfifo(fifo)
    code, _, err = run(tmp_path, fifo)
    assert code == 1
    assert err == f"error: {fifo}: not a Maildir, an mbox file or a folder of .eml files\n"
    code, _, err = run(tmp_path, tmp_path / "missing")
    assert (
        err
        == f"error: {tmp_path / 'missing'}: no such Maildir, mbox file or folder of .eml files\n"
    )


def test_a_complaint_about_a_weekly_email_is_matched_by_its_message_id(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    # Yahoo-style: the recipient redacted and no VERP token; only our Message-ID says whose.
    angry = sent["angry"]
    assert b"Message-ID: <digest." in angry.data
    data = angry.data.replace(b"Message-ID: <digest.", b"Message-ID: <weekly.")
    data = re.sub(rb"\r\nTo: [^\r]*", b"\r\nTo: redacted@provider.example", data)
    folder = tmp_path / "eml"
    folder.mkdir()
    weekly = dataclasses.replace(angry, data=data)
    (folder / "1.eml").write_bytes(arf(weekly, recipient="redacted@provider.example"))
    # And one about a subscriber we do not have: the summary says so.
    stranger = data.replace(
        b"Message-ID: <weekly.2024-12-13.3.", b"Message-ID: <weekly.2024-12-13.99."
    )
    assert stranger != data
    (folder / "2.eml").write_bytes(
        arf(
            dataclasses.replace(angry, data=stranger), recipient="redacted@provider.example"
        ).replace(b"<arf1@provider.example>", b"<arf2@provider.example>")
    )
    code, out, _ = run(tmp_path, folder)
    assert code == 0
    assert out.strip().endswith(
        "0 subscribers bounced, 1 unsubscribed; 1 about no subscriber of ours"
    )
    assert statuses(tmp_path)["angry"] == "unsubscribed"


def test_a_mailbox_message_cannot_claim_a_webhook_events_id(
    tmp_path: Path, sent: dict[str, OutgoingMessage]
) -> None:
    # An auto-reply calling itself "postmark:4242" must not make Postmark's event 4242 "seen".
    claim = auto_reply("bounces@localhost").replace(
        b"Message-ID: <away@example.org>", b"Message-ID: postmark:4242"
    )
    assert b"postmark:4242" in claim
    maildir_with(tmp_path / "Maildir", claim)
    assert json.loads(run(tmp_path, tmp_path / "Maildir", "--json")[1])["ignored"] == 1
    full = sent["full"]
    event = Report(report_id="postmark:4242", kind="complaint", recipients=(full.recipient,))
    with Store(tmp_path / "b.db", clock=clock) as store:
        summary = apply_reports(store, [event], settings=SETTINGS, key=KEY, source="hook:postmark")
        assert store.report_seen("mail:postmark:4242")
    assert (summary.already, summary.unsubscribed) == (0, 1)


def test_every_spelling_a_report_quotes_an_address_in_is_found() -> None:
    report = Report(
        report_id="ses:feedback-1:Angry@Example.org",
        kind="hard",
        diagnostic=(
            "550 5.1.1 recipient=ana@example.org! refused; (expanded from <Bo@Example.org>). "
            "mailto:cy@example.org, ann@bücher.example/dee@xn--bcher-kva.example|x"
        ),
        recipients=("final@example.net",),
    )
    assert quoted_addresses(report) == {
        "final@example.net",
        "Angry@Example.org",
        "ana@example.org",
        "Bo@Example.org",
        "cy@example.org",
        "ann@bücher.example",
        "ann@xn--bcher-kva.example",
        "dee@xn--bcher-kva.example",
        "dee@bücher.example",
    }


def test_a_long_diagnostic_is_cut_between_words_not_inside_an_address() -> None:
    text = "550 " + "word " * 97 + "<angry@example.org> and more"
    cut = diagnostic_text(text, limit=500)
    assert len(cut) <= 500 and cut.endswith("…") and "angry@" not in cut
    assert diagnostic_text("550  no\nsuch user", limit=500) == "550 no such user"


def test_an_erasure_just_before_the_write_is_seen_by_it(
    tmp_path: Path, sent: dict[str, OutgoingMessage], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A report about no subscriber of ours that quotes angry's address; the erasure lands
    # after the report was read, right before it is recorded.
    angry = sent["angry"]
    report = read_report(dsn(None, to="bounces@localhost", recipient="x@elsewhere.example"))
    report = dataclasses.replace(report, diagnostic=f"550 forwarded from <{angry.recipient}>")
    with Store(tmp_path / "b.db", clock=clock) as store:
        record_bounce = store.record_bounce

        def erased_first(record: BounceRecord, **rest: Any) -> str:
            store.erase_address(angry.recipient)
            return record_bounce(record, **rest)

        monkeypatch.setattr(store, "record_bounce", erased_first)
        apply_report(
            report, store=store, settings=SETTINGS, key=KEY, source="box", by_address=False
        )
        monkeypatch.undo()
        (row,) = store.conn.execute("SELECT diagnostic FROM bounces").fetchall()
    assert row[0] == ""
