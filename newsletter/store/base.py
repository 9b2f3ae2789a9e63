"""The connection every store mixin shares, and the one place SQLite errors become StoreErrors."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Self

from ..errors import StoreBusy, StoreError
from ..model import Filters

# The migrations this version defines (store/schema.py; a test checks the two agree). A
# database that holds exactly these opens without loading sqlite-utils' migration machinery.
SCHEMA = (
    "m001_digests",
    "m002_subscribers",
    "m003_deliveries",
    "m004_signups",
    "m005_signup_ids_never_reused",
    "m006_one_subscriber_per_address",
    "m007_cadence",
    "m008_delivery_kinds",
    "m009_bounces",
    "m010_subscriber_versions",
    "m011_links_bound_to_address",
    "m012_erased_addresses",
    "m013_subscriber_ids_never_reused",
)

Clock = Callable[[], dt.datetime]
Part = tuple[int, int]  # (index, count): the subscribers whose id % count == index
Doing = Literal["open", "read", "write"]

# SQLite's primary result codes, as the person running newsletter needs to hear them.
_FAULTS: dict[int, tuple[str, str]] = {
    sqlite3.SQLITE_BUSY: ("busy", "another process holds the database lock; try again later"),
    sqlite3.SQLITE_LOCKED: ("busy", "another process holds the database lock; try again later"),
    sqlite3.SQLITE_READONLY: (
        "read-only",
        "the database is read-only; give this user write access to the file and its folder",
    ),
    sqlite3.SQLITE_FULL: ("full", "the disk is full; free some space and run again"),
    sqlite3.SQLITE_IOERR: (
        "error",
        "the disk refused a read or write; check it and its free space",
    ),
    sqlite3.SQLITE_CORRUPT: (
        "corrupt",
        "the database file is damaged; restore it from a backup (README: Failure)",
    ),
    sqlite3.SQLITE_NOTADB: (
        "corrupt",
        "the file is not a newsletter database, or is damaged; restore it from a backup",
    ),
    sqlite3.SQLITE_CANTOPEN: (
        "error",
        "the database file cannot be opened; check path and permissions",
    ),
}
_CONTENT_TABLES = ("digests", "papers", "digest_papers", "subscribers", "signups")
_READS = frozenset({"SELECT", "WITH", "EXPLAIN"})


def store_error(path: object, exc: sqlite3.Error, *, doing: Doing) -> StoreError:
    """One line naming the database, what failed and what to do about it."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # extended codes hold the primary
    fault, advice = _FAULTS.get(code, ("error", ""))
    detail = " ".join(str(exc).split()) or type(exc).__name__
    advice = f"{advice} (sqlite: {detail})" if advice else detail
    kind = StoreBusy if fault == "busy" else StoreError  # busy: try again later (web: 503)
    return kind(f"{path}: cannot {doing} the database: {advice}", fault=fault)


def _doing(sql: str) -> Doing:
    first = sql.split(None, 1)[0].upper() if sql.strip() else ""
    reads = first in _READS or (first == "PRAGMA" and "=" not in sql)  # PRAGMA x=y writes
    return "read" if reads else "write"


class _Cursor(sqlite3.Cursor):
    """A cursor whose every SQLite error leaves as a StoreError (fetches fail on damaged pages too)."""

    def _fail(self, exc: sqlite3.Error, doing: Doing) -> StoreError:
        return store_error(getattr(self.connection, "path", "<database>"), exc, doing=doing)

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise self._fail(exc, _doing(sql)) from exc

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Self:
        try:
            return super().executemany(sql, seq_of_parameters)
        except sqlite3.Error as exc:
            raise self._fail(exc, _doing(sql)) from exc

    def executescript(self, sql_script: str, /) -> Self:
        try:
            super().executescript(sql_script)
        except sqlite3.Error as exc:
            raise self._fail(exc, "write") from exc
        return self

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.Error as exc:
            raise self._fail(exc, "read") from exc

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        try:
            return super().fetchmany(size)
        except sqlite3.Error as exc:
            raise self._fail(exc, "read") from exc

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc, "read") from exc

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.Error as exc:
            raise self._fail(exc, "read") from exc


class _Connection(sqlite3.Connection):
    """The store's connection: statements run on `_Cursor`s, so no sqlite3 error escapes the store."""

    path: str = "<database>"

    def _cursor(self, sql: str) -> _Cursor:
        try:
            # Through cursor(factory): on CPython 3.11 `_Cursor(self)` leaves ~75 bytes behind
            # in the connection for every cursor made (200 MB after a million-subscriber send).
            return self.cursor(_Cursor)
        except sqlite3.Error as exc:  # e.g. the connection was closed
            raise store_error(self.path, exc, doing=_doing(sql)) from exc

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        return self._cursor(sql).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> _Cursor:
        return self._cursor(sql).executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> _Cursor:
        return self._cursor("").executescript(sql_script)


class _RollBack(Exception):
    """Ends a transaction that only probed whether writing works."""


def dump_list(items: Iterable[Any]) -> str:
    """A list column's stored form: JSON, non-ASCII kept readable."""
    return json.dumps(list(items), ensure_ascii=False)


def load_phrases(text: str) -> tuple[str, ...]:
    """A stored keyword or exclude list."""
    return tuple(json.loads(text))


FILTER_COLUMNS = ("keywords", "exclude", "min_votes", "max_papers")


def dump_filters(filters: Filters) -> tuple[str, str, int, int | None]:
    """Filters as the stored values of FILTER_COLUMNS; ValueError for a minimum below 0 or a
    cap below 1 (the forms and the CSV refuse those: a caller that skipped them is a bug)."""
    if filters.min_votes < 0 or (filters.max_papers is not None and filters.max_papers < 1):
        raise ValueError(f"invalid filters {filters!r}")
    return (
        dump_list(filters.keywords),
        dump_list(filters.exclude),
        filters.min_votes,
        filters.max_papers,
    )


def load_filters(row: dict[str, Any]) -> Filters:
    """Filters from a row holding FILTER_COLUMNS."""
    return Filters(
        keywords=load_phrases(row["keywords"]),
        exclude=load_phrases(row["exclude"]),
        min_votes=row["min_votes"],
        max_papers=row["max_papers"],
    )


def insert_subscriber(
    conn: sqlite3.Connection,
    *,
    email: str,
    name: str,
    filters: Filters,
    status: str,
    now: str,
    cadence: str = "daily",
) -> int:
    """The one INSERT of a subscriber (inside the caller's transaction); the new id.

    `email` is normalised by the caller (`normalize_email`); ValueError if it is plainly not.
    The id is above every id there is and every id an erasure freed: never one used before.
    """
    local, at, domain = email.rpartition("@")
    if not (local and at and domain) or email != email.strip():
        raise ValueError(f"not a normalised e-mail address: {email!r}")
    cursor = conn.execute(
        """INSERT INTO subscribers (id, email, email_key, name, keywords, exclude, min_votes,
           max_papers, status, created_at, updated_at, status_changed_at, cadence)
           VALUES (max(coalesce((SELECT max(id) FROM subscribers), 0),
                       coalesce((SELECT floor FROM subscriber_id_floor), 0)) + 1,
                   ?, lower(?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (email, email, name, *dump_filters(filters), status, now, now, now, cadence),
    )
    return int(cursor.lastrowid or 0)


def _current(conn: sqlite3.Connection) -> bool:
    """Whether the database holds exactly this version's migrations (the usual open)."""
    table = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlite_migrations'"
    if conn.execute(table).fetchone() is None:  # a new database
        return False
    rows = conn.execute(
        "SELECT name FROM _sqlite_migrations WHERE migration_set = 'newsletter'"
    ).fetchall()
    return sorted(name for (name,) in rows) == sorted(SCHEMA)


def _migrate(conn: sqlite3.Connection, path: Path | str) -> None:
    """Apply the pending migrations; StoreError when a newer newsletter wrote the database."""
    import sqlite_utils

    from .schema import migrations, newer_migrations

    db = sqlite_utils.Database(conn)
    newer = newer_migrations(db)
    if newer:
        raise StoreError(
            f"{path}: written by a newer version of newsletter (schema {newer[-1]});"
            " upgrade newsletter to use it",
            fault="newer",
        )
    if not migrations.applied(db):
        others = sorted(t for t in db.table_names() if t != "_sqlite_migrations")
        if others:  # another application's database: never write our tables into it
            raise StoreError(
                f"{path}: not a newsletter database (it holds other tables: "
                f"{', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); "
                "give --db (NEWSLETTER_DB) a new file",
                fault="error",
            )
    try:
        migrations.apply(db)
    except sqlite3.Error as exc:
        raise store_error(path, exc, doing="write") from None


def file_identity(path: Path) -> tuple[int, int] | None:
    """The file at `path` as (device, inode), None when there is none: tells a database file
    from another put in its place."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StoreBase:
    """An open SQLite database with the schema applied (WAL, foreign keys, busy timeout)."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock = utc_now,
        busy_timeout: float = 30.0,
        create: bool = True,
    ) -> None:
        """Open (with `create`, make) the database at `path`; without `create` a missing file
        is a StoreError (fault "gone"), never a new empty database."""
        self.path = Path(path)
        self.clock = clock
        self.busy_timeout = busy_timeout
        memory = str(path) == ":memory:"
        try:
            if create and not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path) if create or memory else f"{self.path.resolve().as_uri()}?mode=rw",
                timeout=busy_timeout,
                check_same_thread=False,
                isolation_level=None,
                factory=_Connection,
                uri=not (create or memory),
            )
        except OSError as exc:
            raise StoreError(f"{path}: cannot open the database: {exc.strerror or exc}") from None
        except sqlite3.Error as exc:
            if not create and file_identity(self.path) is None:
                raise StoreError(f"{path}: no database here", fault="gone") from None
            raise store_error(path, exc, doing="open") from None
        conn.path = str(path)
        self.conn: sqlite3.Connection = conn
        try:
            conn.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys=ON")
            if not _current(conn):
                _migrate(conn, path)  # first: another application's file is left untouched
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise

    def now_text(self) -> str:
        return self.clock().astimezone(dt.UTC).isoformat(timespec="seconds")

    @contextmanager
    def transaction(self, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE so writers queue instead of failing later."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # A full disk or I/O error may already have rolled back; a failed COMMIT has not.
            # Rolling back must not hide the error that got us here.
            if conn.in_transaction:
                with contextlib.suppress(StoreError):
                    conn.execute("ROLLBACK")
            raise

    def check_integrity(self, *, history: bool = False) -> None:
        """StoreError (fault "corrupt") when SQLite's quick check finds damaged pages.

        By default only the tables holding content (digests, papers, subscribers, sign-ups)
        are checked: they scale with what is published, and a damaged page there would publish
        or send wrong text. `history` adds the delivery ledger, which grows every day.
        """
        tables = (None,) if history else _CONTENT_TABLES
        for table in tables:
            sql = "PRAGMA quick_check" if table is None else f"PRAGMA quick_check('{table}')"
            problems = [" ".join(str(r[0]).split()) for r in self.conn.execute(sql).fetchall()]
            if problems != ["ok"]:
                raise StoreError(
                    f"{self.path}: the database file is damaged ({problems[-1]});"
                    " restore it from a backup (README: Failure)",
                    fault="corrupt",
                )

    def check_writable(self, *, timeout: float = 2.0) -> None:
        """StoreError unless a write could start now: read-only file, lock held too long, ...

        Starts a write transaction and a no-op update, then rolls back: nothing is written.
        """
        try:
            with self.lock_waits(timeout), self.transaction():
                self.conn.execute("UPDATE _sqlite_migrations SET name = name WHERE 0")
                raise _RollBack
        except _RollBack:
            pass

    @contextlib.contextmanager
    def lock_waits(self, seconds: float) -> Iterator[None]:
        """Within the block, wait at most `seconds` for another process's lock (StoreBusy after)."""
        self.conn.execute(f"PRAGMA busy_timeout={max(0, round(seconds * 1000))}")
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={round(self.busy_timeout * 1000)}")

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Rows of a read query as dicts."""
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
