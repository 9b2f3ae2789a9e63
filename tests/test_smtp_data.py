"""The DATA step: the wire path through aiosmtplib's protocol and the public fallback deliver the
same bytes to a real aiosmtpd server, and the fallback runs when the private methods are gone."""

from __future__ import annotations

from typing import Any

import aiosmtplib
import pytest

from newsletter.delivery.smtp_data import PUBLIC, WIRE, DataPath, send_data
from tests.smtp_servers import RecordingHandler, smtp_server

# Lines that must be dot-stuffed on the wire (the first line too) and come back unstuffed.
DOTTED = (
    b".starts with a dot\r\nSubject: dots\r\n\r\n.leading dot\r\n.\r\n..two dots\r\n"
    b"a line. with a dot inside\r\nlast line without CRLF"
)


class _Hiding:
    """A client's real protocol with one attribute hidden, as in an aiosmtplib without it."""

    def __init__(self, protocol: Any, hidden: str) -> None:
        self._protocol = protocol
        self._hidden = hidden

    def __getattr__(self, name: str) -> Any:
        if name == self._hidden:
            raise AttributeError(name)
        return getattr(self._protocol, name)


async def deliver_once(data: bytes, *, hide: str | None = None) -> tuple[DataPath, bytes]:
    """Send `data` to a fresh aiosmtpd over a real aiosmtplib client; (path, bytes received)."""
    with smtp_server(RecordingHandler()) as (server, handler):
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False)
        await client.connect()
        await client.mail("from@example.com")
        await client.rcpt("to@example.com")
        if hide is not None:
            client.protocol = _Hiding(client.protocol, hide)  # type: ignore[assignment]
        path = await send_data(client, data, timeout=5)
        await client.quit()
    [received] = handler.received
    return path, received.data


async def test_wire_path_runs_with_the_installed_aiosmtplib_and_dot_stuffs() -> None:
    path, received = await deliver_once(DOTTED)
    assert path == WIRE
    assert received == DOTTED + b"\r\n"  # unstuffed by the server, ended by a CRLF


@pytest.mark.parametrize("hidden", ["write", "read_response"])
async def test_without_the_private_methods_the_public_path_sends_the_same_bytes(
    hidden: str,
) -> None:
    wire_path, wire_bytes = await deliver_once(DOTTED)
    path, received = await deliver_once(DOTTED, hide=hidden)
    assert (wire_path, path) == (WIRE, PUBLIC)
    assert received == wire_bytes == DOTTED + b"\r\n"


async def test_bare_line_feeds_take_the_public_path_and_are_normalised() -> None:
    path, received = await deliver_once(b"Subject: t\r\n\r\nbare LF\nbare CR\rend\r\n")
    assert path == PUBLIC
    assert received == b"Subject: t\r\n\r\nbare LF\r\nbare CR\r\nend\r\n"
