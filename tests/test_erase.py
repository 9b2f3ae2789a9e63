"""Erasing a person at their request: every row about them goes, the address stays as a hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import main
from newsletter.delivery.runlock import send_lock
from newsletter.errors import SubscriberError
from newsletter.model import Filters, SubscriberRow
from newsletter.store import Store
from newsletter.store.bounces import BounceRecord
from newsletter.tokens import read_subscriber_token, subscriber_token

from .conftest import TEST_KEY

DAY = dt.date(2024, 12, 13)
KEY = TEST_KEY.encode()


def every_value(path: Path) -> str:
    """Every text value of every table of the database, for a search."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            str(value)
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
            for value in row
        )
    finally:
        conn.close()


def with_history(store: Store, email: str) -> int:
    """A subscriber with a sent email, a bounce report and a sign-up: their id."""
    reader = store.add_subscriber(email, name="Ana Kim", filters=Filters(keywords=("RAG",)))
    message_id = f"digest.{DAY}.{reader.id}@papers.example.com"
    assert store.claim_delivery(DAY, reader.id, message_id=message_id)
    store.mark_sent(DAY, [(reader.id, 1)])
    store.record_bounce(
        BounceRecord(
            report_id="<dsn1@mx.example.org>",
            kind="soft",
            subscriber_id=reader.id,
            day=DAY,
            status="4.2.2",
            diagnostic=f"452 4.2.2 <{email}>: mailbox full",
        )
    )
    store.add_signup(email.upper().replace("@EXAMPLE.COM", "@example.com"))
    return reader.id


def test_erasing_leaves_no_row_that_names_them_and_keeps_only_a_hash(tmp_path: Path) -> None:
    path = tmp_path / "news.db"
    with Store(path) as store:
        ana = with_history(store, "ana.kim@example.com")
        store.add_subscriber("bo@example.com")
        assert "ana.kim@example.com" in every_value(path).lower()
        # A report that named nobody of ours, quoting the address all the same.
        store.record_bounce(
            BounceRecord(
                report_id="<dsn2@mx.example.org>",
                kind="hard",
                diagnostic="550 5.1.1 <ANA.KIM@example.com>: no such user",
            )
        )
        # A case variant an old version kept without an email_key (see m006).
        with store.transaction() as conn:
            conn.execute(
                """INSERT INTO subscribers (email, email_key, name, status, created_at,
                   updated_at) VALUES ('Ana.Kim@example.com', NULL, 'Ana Kim', 'unsubscribed',
                   '2024-01-01', '2024-01-01')"""
            )
        variant = max(s.id for s in store.subscribers())
        erased = store.erase_address("Ana.Kim@example.com")
        assert (erased.subscriber_ids, erased.deliveries, erased.bounces, erased.signups) == (
            (ana, variant),
            1,
            2,
            1,
        )
        assert store.subscriber(ana) is None
        assert [s.email for s in store.subscribers()] == ["bo@example.com"]
    stored = every_value(path).lower()
    assert "ana.kim" not in stored and "ana kim" not in stored
    assert hashlib.sha256(b"ana.kim@example.com").hexdigest() in stored


def test_an_erased_address_is_not_added_back_until_they_sign_up_themselves(
    store: Store,
) -> None:
    store.erase_address("ana@example.com")
    rows = [
        SubscriberRow(row=2, email="Ana@example.com", name="", filters=Filters()),
        SubscriberRow(row=3, email="bo@example.com", name="", filters=Filters()),
    ]
    report = store.import_subscribers(rows)
    assert (report.added, report.erased) == (("bo@example.com",), ("Ana@example.com",))
    assert "1 erased at their request (not added)" in report.summary()
    try:
        store.add_subscriber("ana@example.com")
    except SubscriberError as exc:
        assert exc.code == "erased"
    else:
        raise AssertionError("an erased address was added")
    # Their own sign-up, confirmed: they are back, and a later import keeps them.
    signup = store.add_signup("ana@example.com")
    confirmed = store.confirm_signup(signup.id)
    assert confirmed is not None and confirmed.outcome == "created"
    again = store.import_subscribers(rows)
    assert again.erased == () and "Ana@example.com" not in again.added


def test_an_erased_subscribers_id_is_never_handed_out_again(store: Store) -> None:
    store.add_subscriber("first@example.com")
    gone = store.add_subscriber("gone@example.com")
    link = subscriber_token(gone.id, email=gone.email, purpose="unsubscribe", key=KEY)
    store.erase_address(gone.email)
    # SQLite alone would give the highest id again once its row is gone.
    later = store.add_subscriber("later@example.com")
    rows = [SubscriberRow(row=2, email="imported@example.com", name="", filters=Filters())]
    store.import_subscribers(rows)
    imported = store.subscriber_by_email("imported@example.com")
    assert imported is not None and gone.id < later.id < imported.id
    assert store.subscriber(gone.id) is None
    found = read_subscriber_token(link, purpose="unsubscribe", key=KEY, find=store.subscriber)
    assert found is None


def test_cli_erase_asks_first_refuses_during_a_send_and_says_what_went(
    runner: CliRunner, cli_env: dict[str, str]
) -> None:
    path = Path(cli_env["NEWSLETTER_DB"])
    with Store(path) as store:
        ana = with_history(store, "ana@example.com")
    for answer in ("n\n", ""):  # no, and no answer at all (no terminal)
        declined = runner.invoke(
            main, ["subscribers", "erase", "ana@example.com"], env=cli_env, input=answer
        )
        assert declined.exit_code == 1 and "cannot be undone" in declined.output
        assert declined.stderr.strip().splitlines()[-1] == (
            "error: ana@example.com not erased (pass --yes to erase without being asked)"
        )
    # A send holds the database's send lock (shared) while it runs.
    with send_lock(path, alone=False):
        refused = runner.invoke(
            main, ["subscribers", "erase", "ana@example.com", "--yes"], env=cli_env
        )
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: {path}: a send of this database is running; erase once it has ended"
    ]
    with Store(path) as store:
        assert store.subscriber(ana) is not None
    done = runner.invoke(main, ["subscribers", "erase", "ANA@example.com", "--yes"], env=cli_env)
    assert done.exit_code == 0, done.output
    assert done.stdout == (
        "erased ANA@example.com: the subscriber, 1 ledger rows, 1 bounce reports, 1 sign-ups; "
        "the address is kept only as a hash, so no import adds it\n"
    )
    assert "ana@example.com" not in every_value(path).lower()
    added = runner.invoke(main, ["subscribers", "add", "ana@example.com"], env=cli_env)
    assert added.exit_code == 1
    assert "was erased at their request" in added.stderr and "Traceback" not in added.output


def test_erasing_blanks_what_earlier_reports_about_others_quote_of_the_address(
    store: Store,
) -> None:
    # Bo's mail was forwarded to Ana's address; the bounce about Bo quotes it.
    bo = store.add_subscriber("bo@example.com")
    store.record_bounce(
        BounceRecord(
            report_id="<dsn3@mx.example.org>",
            kind="soft",
            subscriber_id=bo.id,
            day=DAY,
            status="4.2.2",
            diagnostic="452 4.2.2 <bo@example.com> (expanded from <ANA@example.com>): full",
            message_id="digest.2024-12-13.1.0123456789abcdef0123@papers.example.com",
        )
    )
    assert store.erase_address("ana@example.com").bounces == 1
    (kept,) = store.bounces(bo.id)
    assert kept.diagnostic == "" and kept.status == "4.2.2"
    assert kept.message_id == "digest.2024-12-13.1.0123456789abcdef0123@papers.example.com"


def test_the_database_files_keep_no_byte_of_an_erased_address(tmp_path: Path) -> None:
    path = tmp_path / "news.db"
    with Store(path) as store:
        with_history(store, "trace.me@example.com")
        store.add_subscriber("stays@example.com")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # in the file itself, as copied
        files = [path, path.with_name(path.name + "-wal")]
        assert any(b"trace.me@example.com" in f.read_bytes() for f in files if f.exists())
        store.erase_address("trace.me@example.com")
        # A copy of the file (and its log) taken now, while the store is still open.
        left = [f.read_bytes() for f in files if f.exists()]
    assert left and not any(b"trace.me@" in data or b"TRACE.ME@" in data for data in left)
    with Store(path) as store:
        assert store.subscriber_by_email("stays@example.com") is not None
