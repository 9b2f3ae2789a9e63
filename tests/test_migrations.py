"""Schema migrations applied to databases made by earlier versions: data kept, old flaws fixed."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import sqlite_utils

from newsletter.store import Store
from newsletter.store.base import SCHEMA
from newsletter.store.schema import migrations
from newsletter.tokens import make_token, read_signup_token, read_subscriber_token, signup_token

from .conftest import PINNED_NOW

KEY = b"k" * 32


def old_database(path: Path, *, before: str, statements: list[str]) -> None:
    """A database migrated up to (not including) `before`, holding rows those versions wrote."""
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before=before)
    with db.conn:
        for statement in statements:
            db.execute(statement)
    db.close()


def test_m005_keeps_signups_and_never_reuses_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(
        path,
        before="m005_signup_ids_never_reused",
        statements=[
            """INSERT INTO signups (email, keywords, created_at) VALUES
               ('early@example.com', '["RAG"]', '2024-12-01T09:00:00+00:00'),
               ('late@example.com', '[]', '2024-12-12T09:00:00+00:00')""",
        ],
    )
    with Store(path, clock=lambda: PINNED_NOW) as store:
        early, late = store.signup(1), store.signup(2)
        assert early is not None and (early.email, early.filters.keywords) == (
            "early@example.com",
            ("RAG",),
        )
        assert late is not None and late.nonce == ""
        # A link sent before the upgrade still opens its own sign-up.
        assert read_signup_token(signup_token(2, late.nonce, key=KEY), key=KEY) == (2, "")
        assert store.purge_signups(before=PINNED_NOW + dt.timedelta(days=1)) == 2
        fresh = store.add_signup("someone.else@example.com")
    assert fresh.id == 3  # SQLite without AUTOINCREMENT handed out 2 again
    assert len(fresh.nonce) >= 16


def test_m006_keeps_case_variants_and_makes_one_the_subscriber(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    columns = "email, status, created_at, updated_at"
    old_database(
        path,
        before="m006_one_subscriber_per_address",
        statements=[
            f"""INSERT INTO subscribers ({columns}) VALUES
                ('Dup@example.com', 'active', '2024-01-01', '2024-01-01'),
                ('dup@example.com', 'active', '2024-01-02', '2024-01-02'),
                ('gone@example.com', 'unsubscribed', '2024-01-03', '2024-01-03'),
                ('GONE@example.com', 'active', '2024-01-04', '2024-01-04'),
                ('solo@example.com', 'bounced', '2024-01-05', '2024-01-05')""",
        ],
    )
    with Store(path, clock=lambda: PINNED_NOW) as store:
        statuses = [(s.id, s.email, s.status) for s in store.subscribers()]
        assert statuses == [
            (1, "Dup@example.com", "active"),
            (2, "dup@example.com", "unsubscribed"),  # the later variant stops receiving
            (3, "gone@example.com", "unsubscribed"),
            (4, "GONE@example.com", "active"),  # the active variant is the subscriber
            (5, "solo@example.com", "bounced"),
        ]
        found = [store.subscriber_by_email(e) for e in ("DUP@example.com", "gone@example.com")]
        assert [s.id if s else None for s in found] == [1, 4]
        assert [s.id for s in store.active_subscribers()] == [1, 4]
        store.add_subscriber("new@example.com")
    conn = sqlite_utils.Database(path).conn
    try:
        conn.execute(
            "INSERT INTO subscribers (email, email_key, created_at, updated_at) VALUES (?, ?, ?, ?)",
            ("NEW@example.com", "new@example.com", "2024-12-13", "2024-12-13"),
        )
    except sqlite3.IntegrityError as exc:
        assert "email_key" in str(exc)
    else:
        raise AssertionError("the database took a second subscriber for one address")
    finally:
        conn.close()


def test_the_fast_open_knows_every_migration_this_version_defines() -> None:
    # A store whose migrations are all applied opens without sqlite-utils (store/base.py):
    # its list must be schema.py's, or a new migration would never run on an opened store.
    defined = [m.name for m in migrations.pending(sqlite_utils.Database(memory=True))]
    assert list(SCHEMA) == defined


def test_a_store_missing_its_newest_migration_gets_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(path, before=SCHEMA[-1], statements=[])
    with Store(path) as store:
        applied = store.conn.execute("SELECT name FROM _sqlite_migrations").fetchall()
        assert sorted(name for (name,) in applied) == list(SCHEMA)


def test_m011_keeps_id_only_links_for_the_subscribers_of_its_time_alone(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(
        path,
        before="m011_links_bound_to_address",
        statements=[
            """INSERT INTO subscribers (email, email_key, created_at, updated_at) VALUES
               ('early@example.com', 'early@example.com', '2024-01-01', '2024-01-01')"""
        ],
    )
    # A link from an email sent before the upgrade: the id alone, signed.
    link = make_token(1, purpose="unsubscribe", key=KEY)
    with Store(path, clock=lambda: PINNED_NOW) as store:
        early = store.subscriber(1)
        later = store.add_subscriber("later@example.com")
        assert early is not None and early.legacy_links and not later.legacy_links
        found = read_subscriber_token(link, purpose="unsubscribe", key=KEY, find=store.subscriber)
        assert found == early
        assert (
            later.id == 2
            and read_subscriber_token(
                make_token(2, purpose="unsubscribe", key=KEY),
                purpose="unsubscribe",
                key=KEY,
                find=store.subscriber,
            )
            is None
        )
