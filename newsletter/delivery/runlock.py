"""Which sends of one database run at once: any number of ordinary ones, or one that resends.

Claims a running send holds look exactly like those of a send that died, so a send that
takes over ambiguous claims (`resend_ambiguous`) must run alone: it would otherwise resend
what another send has on the wire (a second `send --resend-ambiguous` during a long send
mailed 1,356 readers twice). Every send holds a lock on a file next to the database while it
runs: shared for an ordinary send, exclusive for one that resends. The kernel lets go when
the process ends however it ends, so a crashed send never blocks the next one; forked
workers of a split send hold their parent's lock for as long as any of them runs.

Each send also holds a lock of its edition (daily or weekly, and its date) in DB.sending.d/.
A send that has ended and let go of it asks whether another send of the same edition still
holds it (`another_send_running`): if so, the claims it finds left are that send's messages in
flight (or a dead run's; the send of that edition that ends last tells them apart), not
ambiguous. A send of another edition, whose claims are not counted, makes no difference.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import DeliveryError

__all__ = ["AnotherSend", "another_send_running", "between_sends", "edition_lock", "send_lock"]


class AnotherSend(DeliveryError):
    """Another send of this database is running, and this one may not run beside it."""


def lock_path(db: Path) -> Path:
    """The lock file of a database's sends."""
    return db.with_name(db.name + ".sending")


# Seconds an ordinary send waits for the lock while something holds it exclusively: an
# erasure holds it for milliseconds, a resend for its whole run (then the send is refused).
SHARED_PATIENCE = 2.0


def _take(fd: int, operation: int, *, patience: float) -> bool:
    """flock `fd` (non-blocking), trying again for up to `patience` seconds; whether it held."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


@contextlib.contextmanager
def send_lock(db: Path, *, alone: bool, patience: float | None = None) -> Iterator[None]:
    """Hold the database's send lock for the block.

    `alone`: exclusive (a send that resends ambiguous claims, an erasure), else shared.
    AnotherSend when it cannot be had within `patience` seconds (by default at once when
    exclusive, SHARED_PATIENCE when shared): exclusive while any send runs, shared while a
    resend or an erasure runs.
    """
    path = lock_path(db)
    wait = (0.0 if alone else SHARED_PATIENCE) if patience is None else patience
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DeliveryError(f"{path}: cannot open the send lock: {exc.strerror}") from None
    try:
        if not _take(fd, fcntl.LOCK_EX if alone else fcntl.LOCK_SH, patience=wait):
            raise AnotherSend(
                "another send of this database is running, so its claims are not ambiguous; "
                "resend once it has ended"
                if alone
                else "a send that resends ambiguous claims, or an erasure, is running on this "
                "database; send once it has ended"
            )
        yield
    finally:
        os.close(fd)  # lets go of the lock (a forked worker's copy stays until it exits)


# Seconds an erasure waits for a moment between sends (another erasure ending, say).
EXCLUSIVE_PATIENCE = 0.5


def between_sends(db: Path, *, doing: str) -> contextlib.AbstractContextManager[None]:
    """Hold the send lock exclusively for a change no send may meet half-way (an erasure: a
    running send would claim a row that is gone), so no send starts until the block ends.
    AnotherSend, saying to `doing` later, when a send runs.

    Call it before the transaction begins and enter what it returns once the database's
    write lock is held (`Store.erase_address` does): the call first makes sure, holding
    nothing, that no send runs (AnotherSend at once otherwise), so a reader clicking Erase
    again and again never holds the write lock a running send needs; the block then holds
    the send lock for milliseconds, never while waiting for SQLite."""
    with _exclusive(db, doing=doing):  # a look, let go at once
        pass
    return _exclusive(db, doing=doing)


@contextlib.contextmanager
def _exclusive(db: Path, *, doing: str) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if str(db) != ":memory:":
            try:
                stack.enter_context(send_lock(db, alone=True, patience=EXCLUSIVE_PATIENCE))
            except AnotherSend:
                raise AnotherSend(
                    f"{db}: a send of this database is running; {doing} once it has ended"
                ) from None
        yield


def edition_lock_path(db: Path, *, kind: str, date: dt.date) -> Path:
    """The lock file of one edition's sends: `DB.sending.d/daily-2024-12-13`."""
    return db.with_name(db.name + ".sending.d") / f"{kind}-{date.isoformat()}"


@contextlib.contextmanager
def edition_lock(db: Path, *, kind: str, date: dt.date) -> Iterator[None]:
    """Hold one edition's lock (shared) while its send runs, for another send of the same
    edition to see when it ends (`another_send_running`). DeliveryError, at once, when it
    cannot be made (as `send_lock`): nothing has been claimed yet."""
    path = edition_lock_path(db, kind=kind, date=date)
    fd = None
    try:
        path.parent.mkdir(exist_ok=True)
        for _ in range(100):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only out a probe's instant
            try:
                here, there = os.fstat(fd), os.stat(path)
                if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
                    break  # the file at the path, not one a probe removed meanwhile
            except FileNotFoundError:
                pass
            os.close(fd)
            fd = None
        else:  # removed under it a hundred times over: something else is at work there
            raise OSError(errno.EBUSY, "removed each time it was taken", str(path))
    except OSError as exc:
        if fd is not None:
            os.close(fd)
        where = exc.filename or path  # the folder, when it is what cannot be made
        raise DeliveryError(f"{where}: cannot make the send's lock: {exc.strerror}") from None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def another_send_running(db: Path, *, kind: str, date: dt.date) -> bool:
    """Whether another send of this edition (kind, date) holds its lock now. Ask without
    holding it yourself.

    Asked a few times over ~20 ms, since two sends ending together each see the other's
    question as a lock; False when nothing holds it (the file is then removed), or when it
    cannot be opened (the claims are then reported as ambiguous, which they may be).
    """
    path = edition_lock_path(db, kind=kind, date=date)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _held(fd, path)
    finally:
        os.close(fd)  # and with it the probe's lock


def _held(fd: int, path: Path) -> bool:
    """Whether another holds the lock of the open file `fd` (found at `path`); see above."""
    for attempt in range(3):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if attempt < 2:
                time.sleep(0.01)
            continue
        with contextlib.suppress(OSError):  # nobody holds it: tidy up, best effort
            here, there = os.fstat(fd), os.stat(path)
            # Only the file this probe holds: another probe may have removed it already
            # and a new send made a new one at the path, which must stay.
            if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
                path.unlink()
        return False
    return True
