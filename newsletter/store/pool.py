"""Stores for worker threads: each call gets a connection that no other thread is using.

One `sqlite3.Connection` shared by threads would interleave their transactions (a `BEGIN` from
one thread and a write from another land in the same transaction), so the service keeps a few
connections and lends each to one thread at a time. WAL lets them read side by side while
another process writes; only writers wait for each other, each for at most the busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from ..errors import StoreError
from . import Store
from .base import Clock, file_identity, utc_now

P = ParamSpec("P")
T = TypeVar("T")


class StorePool:
    """Up to `size` open stores on one database file, each used by one thread at a time."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock = utc_now,
        size: int = 16,
        busy_timeout: float = 30.0,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.busy_timeout = busy_timeout
        # Opened now, so a database that cannot be used fails at start, not on the first request.
        # The only store that may create the file: later ones open this very file or fail.
        self._idle = [Store(path, clock=clock, busy_timeout=busy_timeout, create=create)]
        self._identity = file_identity(self.path)
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    def run(
        self, fn: Callable[Concatenate[Store, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(store, *args, **kwargs)` on a store of this thread's own (blocks while all are lent).

        A lock held past the busy timeout raises StoreBusy; whatever `fn` had begun is rolled back.
        """
        with self._slots:
            store = self._borrow()
            try:
                # The store raises StoreBusy itself (store_error) for a lock past the timeout.
                return fn(store, *args, **kwargs)
            finally:
                self._give_back(store)

    def run_within(
        self,
        seconds: float,
        fn: Callable[Concatenate[Store, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`run`, waiting at most `seconds` (not the busy timeout) for another process's lock."""

        def bounded(store: Store) -> T:
            with store.lock_waits(seconds):
                return fn(store, *args, **kwargs)

        return self.run(bounded)

    def check_file(self) -> None:
        """StoreError (fault "gone") when the database file was removed or another was put in
        its place since the pool opened it: open connections would go on reading and writing
        the old one (writes lost on restart) while new ones opened the new one."""
        if file_identity(self.path) != self._identity:
            raise StoreError(
                f"{self.path}: the database file was removed or replaced while the service "
                "ran; put it back, or restart the service to use the new one",
                fault="gone",
            )

    def _borrow(self) -> Store:
        self.check_file()
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.path}: database is closed")
            if self._idle:
                return self._idle.pop()
        return Store(self.path, clock=self.clock, busy_timeout=self.busy_timeout, create=False)

    def _give_back(self, store: Store) -> None:
        if store.conn.in_transaction:  # a failed COMMIT leaves one open: never lend it on
            try:
                store.conn.execute("ROLLBACK")
            except sqlite3.Error:
                store.close()
                return
        with self._lock:
            if not self._closed:
                self._idle.append(store)
                return
        store.close()

    def close(self) -> None:
        """Close every idle store; stores still lent close when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for store in idle:
            store.close()
