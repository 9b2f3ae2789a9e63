"""The bounce mailbox: a Maildir, an mbox file, a folder of .eml files or an IMAP folder (the rim).

A Maildir marks what was processed the way mail clients do: moved to cur/ with the Seen flag,
so it is not read again; an IMAP folder the same way (the \\Seen flag), or by moving the
message to another folder. An mbox or .eml files stay as they are; the store's record of each
report's Message-ID keeps them from counting twice.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox as stdlib_mailbox
import os
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from ..config import Secret
from ..delivery.smtp import is_loopback
from ..errors import ConfigError
from ..text import clean_text

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # a delivery report is a few KB; anyone can mail this box


def _cannot_read(where: object, exc: OSError) -> str:
    """One line for a message that could not be read (it is left where it is)."""
    return f"{where}: cannot read: {exc.strerror or exc}"


def _unfit(where: object, entry: os.DirEntry[str]) -> str | None:
    """Why the folder entry is no message to read (a FIFO would block the read for ever), or None."""
    try:
        if not entry.is_file():  # follows links: a folder, a FIFO, a link to nothing
            return f"{where}: cannot read: not a file"
        size = entry.stat().st_size
    except OSError as exc:
        return _cannot_read(where, exc)
    if size > MAX_MESSAGE_BYTES:
        return (
            f"{where}: not read: {size:,} bytes, over {MAX_MESSAGE_BYTES:,} (no delivery report is)"
        )
    return None


class MaildirSource:
    """A Maildir folder (cur/, new/, tmp/); processed messages get the Seen flag in cur/."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.problems: list[str] = []
        self._path = path
        self._box = stdlib_mailbox.Maildir(path, factory=None, create=False)

    def _keys(self) -> list[str]:
        """The keys of the messages in new/ and cur/ not yet seen, as the Maildir names them
        (one listing, not two; the Seen flag is in the name), each file kept in `_files`; an
        entry that is no message to read is told once instead."""
        self._files: dict[str, tuple[Path, str]] = {}  # key -> (file, its flags)
        for sub in ("new", "cur"):
            with os.scandir(self._path / sub) as scan:
                for entry in sorted(scan, key=lambda entry: entry.name):
                    if entry.name.startswith(".") or entry.is_dir(follow_symlinks=False):
                        continue
                    key, _, info = entry.name.partition(self._box.colon)
                    flags = info[2:] if info.startswith("2,") else ""
                    if "S" in flags:
                        continue
                    why = _unfit(f"{self.name}: {entry.name}", entry)
                    if why is None:
                        self._files[key] = (Path(entry.path), flags)
                    else:
                        self.problems.append(why)
        return sorted(self._files)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        try:
            keys = self._keys()
        except OSError as exc:
            self.problems.append(f"{self.name}: cannot list the Maildir: {exc.strerror or exc}")
            return
        for key in keys:
            try:
                data = self._files[key][0].read_bytes()
            except FileNotFoundError:  # taken away by someone else since the listing
                continue
            except OSError as exc:
                self.problems.append(_cannot_read(f"{self.name}: {key}", exc))
                continue
            yield key, data

    def done(self, key: str) -> None:
        """Move the message to cur/ with the Seen flag: one rename, the message not read again."""
        path, flags = self._files[key]
        seen = self._path / "cur" / f"{key}{self._box.colon}2,{''.join(sorted(flags + 'S'))}"
        try:
            os.rename(path, seen)
        except OSError as exc:  # applied and recorded: the next pass skips it
            reason = "it went away" if isinstance(exc, FileNotFoundError) else exc.strerror
            self.problems.append(f"{self.name}: {key}: applied, but not marked seen: {reason}")


class MboxSource:
    """An mbox file, read only."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.problems: list[str] = []
        self._box = stdlib_mailbox.mbox(path, factory=None, create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for key in self._box.iterkeys():
            # Read up to the limit, not the whole message: anyone can mail this box.
            with self._box.get_file(key) as message:
                data = message.read(MAX_MESSAGE_BYTES + 1)
            if len(data) > MAX_MESSAGE_BYTES:
                self.problems.append(
                    f"{self.name}: message {key}: not read: over {MAX_MESSAGE_BYTES:,} bytes "
                    "(no delivery report is)"
                )
                continue
            yield str(key), data

    def done(self, key: str) -> None:
        """Nothing to mark in the file; the store remembers the report."""


class EmlFolder:
    """A folder of .eml files, read only."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.problems: list[str] = []
        self._path = path

    def messages(self) -> Iterator[tuple[str, bytes]]:
        try:
            with os.scandir(self._path) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            self.problems.append(f"{self.name}: cannot list the folder: {exc.strerror or exc}")
            return
        emls = [e for e in entries if e.name.lower().endswith(".eml")]
        if not emls:  # a folder of messages saved under other names?
            others = sum(1 for e in entries if not e.name.startswith(".") and e.is_file())
            if others:
                self.problems.append(
                    f"{self.name}: no .eml files here ({others} other files passed over)"
                )
        for entry in emls:
            file = self._path / entry.name
            why = _unfit(file, entry)
            if why is not None:
                self.problems.append(why)
                continue
            try:
                data = file.read_bytes()
            except OSError as exc:
                self.problems.append(_cannot_read(file, exc))
                continue
            yield entry.name, data

    def done(self, key: str) -> None:
        """Nothing to mark; the store remembers the report."""


def open_mailbox(path: Path) -> MaildirSource | MboxSource | EmlFolder:
    """The mailbox at `path`: a Maildir (has cur/ and new/), a folder of .eml files, or an mbox."""
    try:
        if path.is_dir():
            # With cur/ or new/ it is a Maildir; listing it says what is missing, if anything.
            if (path / "cur").is_dir() or (path / "new").is_dir():
                return MaildirSource(path)
            return EmlFolder(path)
        if path.is_file():
            with path.open("rb") as file:
                start = file.read(5)
            if start and start != b"From ":
                raise ConfigError(f"{path}: not an mbox file (it does not start with 'From ')")
            return MboxSource(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.exists():  # a FIFO, a socket, a device
        raise ConfigError(f"{path}: not a Maildir, an mbox file or a folder of .eml files")
    raise ConfigError(f"{path}: no such Maildir, mbox file or folder of .eml files")


IMAP_TLS_MODES = ("tls", "starttls", "none")
_UID = re.compile(rb"\bUID (\d+)\b")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)\b")


def _quoted(folder: str) -> str:
    """A folder name as an IMAP quoted string (imaplib sends arguments as they are)."""
    if not folder or not folder.isascii() or any(c in folder for c in "\r\n\0"):
        raise ConfigError(f"IMAP folder {folder!r}: use a non-empty ASCII name")
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapSource:
    """An IMAP folder; a processed message gets the \\Seen flag, or moves to `move_to`.

    Flagging reads only unseen messages; moving reads every message left in the folder, so a
    person who opened the bounce mailbox in a mail client hides nothing from the next pass.
    TLS is explicit as for SMTP: `tls` (port 993), `starttls` (fails when the server does not
    offer it) or `none`, which is refused for anything but this machine.
    """

    def __init__(
        self,
        *,
        host: str,
        user: str,
        password: Secret | str | None,
        port: int | None = None,
        tls: str = "tls",
        folder: str = "INBOX",
        move_to: str | None = None,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if tls not in IMAP_TLS_MODES:
            raise ConfigError(f"IMAP TLS mode must be tls, starttls or none, not {tls!r}")
        if not user or not password:
            raise ConfigError("IMAP needs --imap-user and NEWSLETTER_IMAP_PASSWORD")
        if tls == "none" and not is_loopback(host):
            raise ConfigError(
                f"refusing to send IMAP credentials to {host} without TLS "
                "(use --imap-tls tls or starttls)"
            )
        self.host, self.user, self.tls = host, user, tls
        self.port = port if port is not None else (993 if tls == "tls" else 143)
        self.folder, self.move_to = _quoted(folder), move_to and _quoted(move_to)
        self.name = f"imap://{user}@{host}:{self.port}/{folder}"
        self.problems: list[str] = []  # IMAP errors stop the pass (ConfigError) instead
        self._password = password
        self._timeout = timeout
        self._tls_context = tls_context
        self._client: imaplib.IMAP4 | None = None

    def __repr__(self) -> str:  # never shows the password
        return f"ImapSource({self.name}, tls={self.tls})"

    def __enter__(self) -> ImapSource:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect, log in and select the folder; a ConfigError says what failed."""
        where = f"{self.host}:{self.port}"
        context = self._tls_context or ssl.create_default_context()
        try:
            if self.tls == "tls":
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=context, timeout=self._timeout
                )
            else:
                client = imaplib.IMAP4(self.host, self.port, timeout=self._timeout)
            self._client = client
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            raise ConfigError(f"IMAP server {where}: cannot connect: {_describe(exc)}") from None
        if self.tls == "starttls":
            if "STARTTLS" not in client.capabilities:  # never a silent downgrade
                self.close()
                raise ConfigError(
                    f"IMAP server {where} does not offer STARTTLS and --imap-tls is starttls"
                )
            try:
                client.starttls(ssl_context=context)
            except (OSError, imaplib.IMAP4.error) as exc:
                self.close()
                raise ConfigError(
                    f"IMAP server {where}: STARTTLS failed: {_describe(exc)}"
                ) from None
        password = self._password
        secret = password.reveal() if isinstance(password, Secret) else str(password)
        try:
            client.login(self.user, secret)
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            raise ConfigError(f"IMAP server {where}: login failed: {_describe(exc)}") from None
        self._call("SELECT", client.select, self.folder)
        if self.move_to:
            self._call("STATUS", client.status, self.move_to, "(MESSAGES)")  # it exists

    def close(self) -> None:
        """Log out (expunging nothing more); safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            # The connection is gone either way.
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()

    @property
    def _connected(self) -> imaplib.IMAP4:
        if self._client is None:
            raise ConfigError(f"{self.name}: not connected")
        return self._client

    def _call(self, name: str, method: Callable[..., tuple[str, Any]], *args: str) -> list[Any]:
        """`method(*args)`'s data; any failure or a reply other than OK as a ConfigError."""
        try:
            kind, data = method(*args)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ConfigError(f"{self.name}: IMAP {name} failed: {_describe(exc)}") from None
        if kind != "OK":
            raise ConfigError(f"{self.name}: IMAP {name} failed: {_describe(data)}")
        return list(data)

    def _uid(self, name: str, *args: str) -> list[Any]:
        return self._call(name, self._connected.uid, name, *args)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        # UIDs, not sequence numbers: moving a message renumbers the rest of the folder.
        (found,) = self._uid("SEARCH", "ALL" if self.move_to else "UNSEEN")
        for uid in (found or b"").split():
            size = self._size(uid.decode())
            if size is not None and size > MAX_MESSAGE_BYTES:  # anyone can mail this box
                self.problems.append(
                    f"{self.name}: UID {uid.decode()}: not read: {size:,} bytes, over "
                    f"{MAX_MESSAGE_BYTES:,} (no delivery report is)"
                )
                continue
            data = self._uid("FETCH", uid.decode(), "(UID BODY.PEEK[])")
            for item in data:
                # PEEK: reading is not processing; an unknown message stays unseen.
                if isinstance(item, tuple) and _UID.search(item[0]):
                    yield uid.decode(), bytes(item[1])
                    break

    def _size(self, uid: str) -> int | None:
        """The message's size as the server tells it (RFC822.SIZE), before fetching it."""
        for item in self._uid("FETCH", uid, "(UID RFC822.SIZE)"):
            line = item[0] if isinstance(item, tuple) else item
            found = _SIZE.search(line) if isinstance(line, bytes) else None
            if found is not None:
                return int(found[1])
        return None

    def done(self, key: str) -> None:
        if not self.move_to:
            self._uid("STORE", key, "+FLAGS.SILENT", "(\\Seen)")
            return
        client = self._connected
        if "MOVE" in client.capabilities:
            self._uid("MOVE", key, self.move_to)
            return
        self._uid("COPY", key, self.move_to)
        self._uid("STORE", key, "+FLAGS.SILENT", "(\\Deleted)")
        if "UIDPLUS" in client.capabilities:
            self._uid("EXPUNGE", key)  # only this message, not others marked deleted
        else:
            self._call("EXPUNGE", client.expunge)


def _describe(reason: object) -> str:
    """An IMAP error or reply as one safe line."""
    if isinstance(reason, list | tuple):
        reason = b" ".join(r for r in reason if isinstance(r, bytes))
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    text = str(reason) or type(reason).__name__
    if text.startswith(("b'", 'b"')):  # imaplib quotes the server's bytes
        text = text[2:-1]
    return clean_text(text)[:300]
