"""An embedded SMTP server for the demo and benchmarks: aiosmtpd on a free loopback port.

Every message it accepts is stored as one `.eml` file in a folder (or only counted, without a
folder), so the demo can send through the real SMTP path without any server to configure.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from ..errors import DeliveryError
from ..text import safe_file_name

_LINE_BREAKS = re.compile(r"[\r\n]+")


class LocalServerHandler:
    """Stores each accepted message as `<n>-<recipient>.eml`, with Return-Path and Delivered-To."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.count = 0
        # Numbering continues after files already there, so a second run never overwrites mail.
        self._first = len(list(folder.glob("*.eml"))) if folder is not None else 0
        self.bytes = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with self._lock:
            self.count += 1
            self.bytes += len(data)
            number = self.count
        if self.folder is not None:
            sender = _LINE_BREAKS.sub(" ", str(envelope.mail_from or ""))
            for recipient in envelope.rcpt_tos:
                rcpt = _LINE_BREAKS.sub(" ", str(recipient))
                # What a final delivery agent prepends, so the envelope survives in the file.
                trace = f"Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\n".encode()
                name = f"{self._first + number:06d}-{safe_file_name(rcpt)}.eml"
                temporary = self.folder / (name + ".tmp")
                temporary.write_bytes(trace + data)
                os.replace(temporary, self.folder / name)
        return "250 2.0.0 OK stored"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Mailbox:
    """A running embedded SMTP server: `host`, `port`, and how many messages it stored."""

    def __init__(self, controller: Controller, handler: LocalServerHandler) -> None:
        self._controller = controller
        self._handler = handler
        self.host: str = controller.hostname
        self.port: int = controller.port

    @property
    def folder(self) -> Path | None:
        return self._handler.folder

    @property
    def count(self) -> int:
        """Messages accepted so far."""
        return self._handler.count

    @property
    def bytes(self) -> int:
        """Bytes of message data accepted so far."""
        return self._handler.bytes


@contextmanager
def running_local_server(folder: Path | None, *, host: str = "127.0.0.1") -> Iterator[Mailbox]:
    """Run an SMTP server on `host` and a free port until the block ends; None folder: count only."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    handler = LocalServerHandler(folder)
    for _ in range(5):  # the free port can be taken between probing and binding
        controller = Controller(handler, hostname=host, port=_free_port(host))
        try:
            controller.start()
        except (OSError, RuntimeError):
            continue
        break
    else:
        raise DeliveryError(f"cannot start the embedded SMTP server on {host}")
    try:
        yield Mailbox(controller, handler)
    finally:
        controller.stop()
