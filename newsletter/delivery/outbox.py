"""Senders that do not talk SMTP: a folder of .eml files (previews, --outbox) and a counter (--dry-run)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DeliveryError
from ..mail.outgoing import OutgoingMessage
from ..text import safe_file_name


def eml_name(message: OutgoingMessage) -> str:
    """A file name for a message: subscriber id then address, safe on every filesystem."""
    address = safe_file_name(message.recipient)
    return f"{message.subscriber_id:07d}-{address}.eml"


class OutboxSender:
    """Writes each message as `<id>-<address>.eml` into a folder (implements deliver.Sender)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0
        if directory.exists() and not directory.is_dir():  # /dev/null: mkdir says "File exists"
            raise DeliveryError(f"{directory}: cannot create outbox folder: not a folder")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(
                f"{directory}: cannot create outbox folder: {exc.strerror or exc}"
            ) from None

    async def open(self) -> None:
        """Nothing to do: the folder exists."""

    async def send(self, message: OutgoingMessage) -> None:
        """Write the message atomically (a partial file never carries the final name)."""
        path = self.directory / eml_name(message)
        temporary = path.with_suffix(".tmp")
        try:
            temporary.write_bytes(message.data)
            os.replace(temporary, path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)  # half a message, say on a full disk
            raise DeliveryError(f"{path}: cannot write message: {exc.strerror or exc}") from None
        self.count += 1

    async def aclose(self) -> None:
        """Nothing to release."""


class CountingSender:
    """Accepts every message and only counts it and its bytes (dry runs and benchmarks)."""

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0

    async def open(self) -> None:
        """Nothing to open."""

    async def send(self, message: OutgoingMessage) -> None:
        """Count the message; nothing leaves the process."""
        self.count += 1
        self.bytes += len(message.data)

    async def aclose(self) -> None:
        """Nothing to release."""
