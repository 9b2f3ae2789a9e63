"""Real SMTP servers for tests: aiosmtpd on a free loopback port, recording or failing on purpose."""

from __future__ import annotations

import email
import email.policy
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    """One message a test server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """Accepts everything and records it; `reply` may return an SMTP reply to refuse instead.

    `reply(envelope, attempt_number)` is called on DATA; return None to accept, or e.g.
    "451 4.3.0 try later" / "550 5.1.1 no such user" to answer with that.
    """

    reply: Callable[[Envelope, int], str | None] | None = None
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.attempts += 1
            attempt = self.attempts
        if self.reply is not None:
            answer = self.reply(envelope, attempt)
            if answer is not None:
                return answer
        data = envelope.original_content or envelope.content
        assert isinstance(data, bytes)
        with self.lock:
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), data))
        return "250 2.0.0 OK queued"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (aiosmtpd's Controller cannot start on port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 20) -> None:
    """Wait for a server process that was asked to stop; kill it if it does not in time."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def smtp_server(
    handler: Any | None = None, **controller_options: Any
) -> Iterator[tuple[Controller, Any]]:
    """Run an aiosmtpd server on 127.0.0.1 and a free port; yields (controller, handler)."""
    handler = handler or RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **controller_options)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()
