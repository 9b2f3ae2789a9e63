"""The database schema: append-only, named migrations. The only place that creates tables."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database, Migrations

migrations = Migrations("newsletter")


@migrations()
def m001_digests(db: Any) -> None:
    db.executescript(
        """
        CREATE TABLE digests (
            date TEXT PRIMARY KEY,              -- YYYY-MM-DD
            source TEXT NOT NULL,               -- file the digest was read from
            content_hash TEXT NOT NULL,         -- sha256 of the parsed content; unchanged files are skipped
            paper_count INTEGER NOT NULL,
            ingested_at TEXT NOT NULL
        );
        CREATE TABLE papers (
            arxiv_id TEXT PRIMARY KEY,          -- without version suffix
            title TEXT NOT NULL,                -- raw, may hold TeX
            display_title TEXT NOT NULL,
            url TEXT NOT NULL,
            image TEXT,
            is_thumbnail INTEGER NOT NULL,
            authors TEXT NOT NULL,              -- JSON list of names
            sections TEXT NOT NULL              -- JSON list of [name, text]
        );
        CREATE TABLE digest_papers (
            date TEXT NOT NULL REFERENCES digests(date),
            arxiv_id TEXT NOT NULL REFERENCES papers(arxiv_id),
            position INTEGER NOT NULL,          -- order in the file
            votes INTEGER,                      -- NULL: the digest says "Vote: -"
            line INTEGER NOT NULL,
            PRIMARY KEY (date, arxiv_id)
        );
        CREATE INDEX digest_papers_by_paper ON digest_papers(arxiv_id, date);
        """
    )


@migrations()
def m002_subscribers(db: Any) -> None:
    db.executescript(
        """
        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,         -- normalised: trimmed, domain lower-cased
            name TEXT NOT NULL DEFAULT '',
            keywords TEXT NOT NULL DEFAULT '[]',-- JSON list; empty: every paper
            exclude TEXT NOT NULL DEFAULT '[]', -- JSON list
            min_votes INTEGER NOT NULL DEFAULT 0,
            max_papers INTEGER,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'pending', 'unsubscribed', 'bounced')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            status_changed_at TEXT
        );
        CREATE INDEX subscribers_by_status ON subscribers(status);
        """
    )


@migrations()
def m003_deliveries(db: Any) -> None:
    db.executescript(
        """
        CREATE TABLE deliveries (
            date TEXT NOT NULL,                 -- the digest sent
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id),
            status TEXT NOT NULL CHECK (status IN ('claimed', 'sent', 'deferred', 'failed', 'skipped')),
            message_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            claimed_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (date, subscriber_id)
        );
        CREATE INDEX deliveries_by_status ON deliveries(date, status);
        """
    )


@migrations()
def m004_signups(db: Any) -> None:
    db.executescript(
        """
        CREATE TABLE signups (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            keywords TEXT NOT NULL DEFAULT '[]',
            exclude TEXT NOT NULL DEFAULT '[]',
            min_votes INTEGER NOT NULL DEFAULT 0,
            max_papers INTEGER,
            created_at TEXT NOT NULL,
            confirmed_at TEXT
        );
        CREATE INDEX signups_by_email ON signups(email, created_at);
        """
    )


@migrations()
def m005_signup_ids_never_reused(db: Any) -> None:
    """Sign-up ids count up for good (AUTOINCREMENT) and each sign-up holds a random nonce.

    Without AUTOINCREMENT SQLite gave a purged sign-up's id to the next one, and a link signed
    for the id alone then opened a stranger's sign-up. Rows from before keep an empty nonce.
    Statements one by one: executescript would commit the migration's transaction half-way.
    """
    for statement in (
        """CREATE TABLE signups_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            email TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            keywords TEXT NOT NULL DEFAULT '[]',
            exclude TEXT NOT NULL DEFAULT '[]',
            min_votes INTEGER NOT NULL DEFAULT 0,
            max_papers INTEGER,
            created_at TEXT NOT NULL,
            confirmed_at TEXT,
            nonce TEXT NOT NULL DEFAULT ''      -- random; the confirmation link must name it
        )""",
        """INSERT INTO signups_new (id, email, name, keywords, exclude, min_votes, max_papers,
           created_at, confirmed_at) SELECT id, email, name, keywords, exclude, min_votes,
           max_papers, created_at, confirmed_at FROM signups""",
        "DROP TABLE signups",
        "ALTER TABLE signups_new RENAME TO signups",
        "CREATE INDEX signups_by_email ON signups(email, created_at)",
    ):
        db.execute(statement)


@migrations()
def m006_one_subscriber_per_address(db: Any) -> None:
    """An address is one subscriber whatever its case: `email_key` (lower-cased) is unique.

    `email` stays as typed, for sending. Case variants stored before are kept, never deleted:
    the active one (else the oldest) holds the key, and the others, keyless, stop receiving.
    """
    for statement in (
        # lower(email): the address's identity; NULL only for a variant m006 set aside
        "ALTER TABLE subscribers ADD COLUMN email_key TEXT",
        """UPDATE subscribers SET email_key = lower(email) WHERE id IN (
            SELECT id FROM (
                SELECT id, row_number() OVER (
                    PARTITION BY lower(email) ORDER BY status != 'active', id
                ) AS n FROM subscribers
            ) WHERE n = 1
        )""",
        """UPDATE subscribers SET status = 'unsubscribed', updated_at = strftime('%Y-%m-%dT%H:%M:%S+00:00'),
           status_changed_at = strftime('%Y-%m-%dT%H:%M:%S+00:00')
           WHERE email_key IS NULL AND status = 'active'""",
        "CREATE UNIQUE INDEX subscribers_by_email_key ON subscribers(email_key)",
    ):
        db.execute(statement)


@migrations()
def m007_cadence(db: Any) -> None:
    """A subscriber (and a sign-up) reads daily or weekly; everyone stored before reads daily."""
    for table in ("subscribers", "signups"):
        db.execute(
            f"""ALTER TABLE {table} ADD COLUMN cadence TEXT NOT NULL DEFAULT 'daily'
                CHECK (cadence IN ('daily', 'weekly'))"""
        )


@migrations()
def m008_delivery_kinds(db: Any) -> None:
    """A ledger row is keyed by (kind, date, subscriber): a weekly edition is its own delivery.

    `kind` is 'daily' (date: the digest's day) or 'weekly' (date: the Monday of the ISO week),
    so the weekly edition of the week starting on a Monday never collides with that Monday's
    daily email. Rows from before are daily. Statements one by one (see m005).
    """
    for statement in (
        """CREATE TABLE deliveries_new (
            date TEXT NOT NULL,                 -- the digest sent; weekly: the week's Monday
            kind TEXT NOT NULL DEFAULT 'daily' CHECK (kind IN ('daily', 'weekly')),
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id),
            status TEXT NOT NULL CHECK (status IN ('claimed', 'sent', 'deferred', 'failed', 'skipped')),
            message_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            claimed_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (kind, date, subscriber_id)
        )""",
        """INSERT INTO deliveries_new (date, kind, subscriber_id, status, message_id, attempts,
           last_error, claimed_at, updated_at) SELECT date, 'daily', subscriber_id, status,
           message_id, attempts, last_error, claimed_at, updated_at FROM deliveries""",
        "DROP TABLE deliveries",
        "ALTER TABLE deliveries_new RENAME TO deliveries",
        "CREATE INDEX deliveries_by_status ON deliveries(kind, date, status)",
    ):
        db.execute(statement)


@migrations()
def m009_bounces(db: Any) -> None:
    """Bounce and complaint reports read from the bounce mailbox: one row per report, never twice."""
    for statement in (
        """CREATE TABLE bounces (
            id INTEGER PRIMARY KEY,
            report_id TEXT NOT NULL UNIQUE,     -- the report's Message-ID (else a hash): read once
            subscriber_id INTEGER REFERENCES subscribers(id),  -- NULL: recognised, nobody of ours
            day TEXT,                           -- the digest it answers, when known
            kind TEXT NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint', 'ignored')),
            status TEXT NOT NULL DEFAULT '',    -- enhanced status code, e.g. 5.1.1
            diagnostic TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',    -- the mailbox it came from
            message_id TEXT,                    -- our message it is about, when found
            recorded_at TEXT NOT NULL
        )""",
        "CREATE INDEX bounces_by_subscriber ON bounces(subscriber_id, kind, recorded_at)",
    ):
        db.execute(statement)


@migrations()
def m010_subscriber_versions(db: Any) -> None:
    """Every write to a subscriber counts up its `version`, so a send can tell at once whether
    the subscriber it read has changed since (updated_at is to the second only). A trigger, so
    that no writer can forget it; the WHEN stops its own update from firing it again."""
    for statement in (
        "ALTER TABLE subscribers ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
        """CREATE TRIGGER subscribers_version AFTER UPDATE ON subscribers
           FOR EACH ROW WHEN NEW.version = OLD.version
           BEGIN UPDATE subscribers SET version = OLD.version + 1 WHERE id = NEW.id; END""",
    ):
        db.execute(statement)


@migrations()
def m011_links_bound_to_address(db: Any) -> None:
    """From here on, a subscriber's link tokens sign the address with the id (tokens.py).
    The subscribers who exist now hold emails whose links signed the id alone; theirs keep
    working (`legacy_links`). No one added later has such a link, so for them the old form,
    which another database's email could carry for another person, names no one."""
    db.execute("ALTER TABLE subscribers ADD COLUMN legacy_links INTEGER NOT NULL DEFAULT 0")
    # Counts up each row's version (m010's trigger): harmless, a send then composes again.
    db.execute("UPDATE subscribers SET legacy_links = 1")


@migrations()
def m012_erased_addresses(db: Any) -> None:
    """Addresses erased at their owner's request, kept only as a hash (store/erasure.py)."""
    db.execute(
        """CREATE TABLE erased (
            address_hash TEXT PRIMARY KEY,      -- hex SHA-256 of the address in lower case
            erased_at TEXT NOT NULL
        )"""
    )


@migrations()
def m013_subscriber_ids_never_reused(db: Any) -> None:
    """Subscriber ids are never handed out again once erased (store/erasure.py).

    Without AUTOINCREMENT SQLite gives the highest id again once its row is gone, and an
    erased subscriber's late bounce or complaint, which may name them by the id in our
    Message-ID alone, would then fall on a newcomer. Rebuilding the table for AUTOINCREMENT
    would have to turn foreign keys off mid-migration; instead an erasure records the
    highest id it freed here, and the one INSERT of a subscriber (`insert_subscriber`)
    numbers above it.
    """
    db.execute(
        """CREATE TABLE subscriber_id_floor (
            one INTEGER PRIMARY KEY CHECK (one = 1),  -- a single row
            floor INTEGER NOT NULL                  -- no new subscriber gets an id at or below
        )"""
    )


def newer_migrations(db: Database) -> list[str]:
    """Migrations applied to `db` that this version does not know: a newer newsletter wrote it."""
    known = {m.name for m in migrations.pending(Database(memory=True))}  # every one we define
    return [m.name for m in migrations.applied(db) if m.name not in known]
