"""The connection every store mixin shares."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import sqlite_utils

from ..errors import StoreError
from .schema import migrations

Clock = Callable[[], dt.datetime]


def dump_list(items: Iterable[Any]) -> str:
    """A list column's stored form: JSON, non-ASCII kept readable."""
    return json.dumps(list(items), ensure_ascii=False)


def load_phrases(text: str) -> tuple[str, ...]:
    """A stored keyword or exclude list."""
    return tuple(json.loads(text))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StoreBase:
    """An open SQLite database with the schema applied (WAL, foreign keys, busy timeout)."""

    def __init__(
        self, path: Path | str, *, clock: Clock = utc_now, busy_timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path), timeout=busy_timeout, check_same_thread=False, isolation_level=None
            )
            self.db = sqlite_utils.Database(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
            migrations.apply(self.db)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{path}: cannot open database: {exc}") from None

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def now_text(self) -> str:
        return self.clock().astimezone(dt.UTC).isoformat(timespec="seconds")

    @contextmanager
    def transaction(self, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE so writers queue instead of failing later."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

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
