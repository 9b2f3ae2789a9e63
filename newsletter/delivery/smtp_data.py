"""The DATA step of an SMTP transaction, with the one use of aiosmtplib internals fenced in.

aiosmtplib's public `SMTP.data()` normalises line endings and dot-stuffs every message with
two regular expressions, a noticeable share of the CPU a send costs. The composer's messages
are CRLF-only already, so for them `send_data` dot-stuffs with one bytes replace and writes
the result through the client's protocol (`write` and `read_response`, which are not public
API). It looks for both on every call, so an aiosmtplib without them (or a client whose
protocol lacks them) takes the public `data()` instead; pyproject.toml pins aiosmtplib below
its next major version, where they could change meaning without disappearing.
"""

from __future__ import annotations

from typing import Any, Literal

import aiosmtplib

DataPath = Literal["wire", "public"]
WIRE: DataPath = "wire"  # wire-ready bytes written through the client's protocol
PUBLIC: DataPath = "public"  # aiosmtplib's documented `SMTP.data()`


async def send_data(
    client: aiosmtplib.SMTP, data: bytes, *, timeout: float, crlf_only: bool = False
) -> DataPath:
    """Send DATA, then `data`; return which path carried it once the server answered 250.

    `crlf_only`: the caller guarantees `data` has no bare CR or LF (skips scanning for them).
    Raises what `client.data()` raises: SMTPDataError on a refusal, SMTPServerDisconnected,
    SMTPTimeoutError.
    """
    payload = wire_ready(data, crlf_only=crlf_only)
    protocol = client.protocol
    if payload is None or protocol is None or not _can_write_raw(protocol):
        await client.data(data, timeout=timeout)
        return PUBLIC
    reply = await client.execute_command(b"DATA", timeout=timeout)
    if reply.code != 354:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    if client.protocol is not protocol:  # the command failed and closed the connection
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    protocol.write(payload)
    reply = await protocol.read_response(timeout=timeout)
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return WIRE


def _can_write_raw(protocol: Any) -> bool:
    """Whether the client's protocol still has the two private methods the wire path uses."""
    return callable(getattr(protocol, "write", None)) and callable(
        getattr(protocol, "read_response", None)
    )


def wire_ready(data: bytes, *, crlf_only: bool = False) -> bytes | None:
    """`data` dot-stuffed and ended with the end-of-data line, when it is CRLF-only.

    The same bytes aiosmtplib's `data()` writes; None when a bare CR or LF needs normalising
    (left to aiosmtplib, since one could smuggle an end of data). `crlf_only` skips that scan.
    """
    if not crlf_only:
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            return None
    if b"\r\n." not in data and not data.startswith(b"."):  # base64 bodies never need it
        return data + b".\r\n" if data.endswith(b"\r\n") else data + b"\r\n.\r\n"
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")  # RFC 5321 4.5.2: a line's leading dot is doubled
    return data + b".\r\n" if data.endswith(b"\r\n") else data + b"\r\n.\r\n"
