"""The bounce mailbox on disk: a Maildir, an mbox file or a folder of .eml files (the rim).

A Maildir marks what was processed the way mail clients do: moved to cur/ with the Seen flag,
so it is not read again. An mbox or .eml files stay as they are; the store's record of each
report's Message-ID keeps them from counting twice.
"""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError


class MaildirSource:
    """A Maildir folder (cur/, new/, tmp/); processed messages get the Seen flag in cur/."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._box = stdlib_mailbox.Maildir(path, factory=None, create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for key in sorted(self._box.keys()):
            if "S" not in self._box.get_message(key).get_flags():
                yield key, self._box.get_bytes(key)

    def done(self, key: str) -> None:
        message = self._box[key]
        message.set_subdir("cur")
        message.add_flag("S")
        self._box[key] = message


class MboxSource:
    """An mbox file, read only."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._box = stdlib_mailbox.mbox(path, factory=None, create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for key in self._box.iterkeys():
            yield str(key), self._box.get_bytes(key)

    def done(self, key: str) -> None:
        """Nothing to mark in the file; the store remembers the report."""


class EmlFolder:
    """A folder of .eml files, read only."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._path = path

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for file in sorted(self._path.glob("*.eml")):
            yield file.name, file.read_bytes()

    def done(self, key: str) -> None:
        """Nothing to mark; the store remembers the report."""


def open_mailbox(path: Path) -> MaildirSource | MboxSource | EmlFolder:
    """The mailbox at `path`: a Maildir (has cur/ and new/), a folder of .eml files, or an mbox."""
    try:
        if path.is_dir():
            if (path / "cur").is_dir() and (path / "new").is_dir():
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
    raise ConfigError(f"{path}: no such Maildir, mbox file or folder of .eml files")
