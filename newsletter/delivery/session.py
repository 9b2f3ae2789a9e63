"""One SMTP connection's mail transactions, pipelined when the server offers PIPELINING.

aiosmtplib opens the connection (greeting, EHLO, STARTTLS or TLS, AUTH): the part where a
mistake costs security. Then `Session.take_over` moves the connection's transport to this small
protocol, which only runs transactions: MAIL, RCPT, DATA, the message, RSET and QUIT. aiosmtplib
reads one reply per command it awaits and loses replies that arrive early, so RFC 2920 command
pipelining cannot sit on top of it; here every reply is queued in order as it arrives.

With PIPELINING, MAIL, RCPT and DATA go in one write and their three replies are read together,
then the message goes in and its reply is read: two round trips per message instead of four,
and one timer per reply instead of one task each. Without it, each command waits for its reply.
"""

from __future__ import annotations

import asyncio
import collections
import re
from typing import NamedTuple

import aiosmtplib

MAX_LINE = 8192  # longer reply lines are no SMTP server's (RFC 5321 4.5.3.1.5 says 512)
MAX_LINES = 100  # lines in one reply
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


class Reply(NamedTuple):
    """A server reply: its code and its text (continuation lines joined by newlines)."""

    code: int
    text: str


class Refused(Exception):
    """The server refused a step of the transaction (`stage` MAIL, RCPT or DATA)."""

    def __init__(self, stage: str, reply: Reply) -> None:
        super().__init__(f"{stage} refused: {reply.code} {reply.text}")
        self.stage = stage
        self.reply = reply


class SessionLost(ConnectionError):
    """The connection closed, or the server sent something that is not an SMTP reply."""


class Session(asyncio.Protocol):
    """Mail transactions over one connection that aiosmtplib has opened (see take_over)."""

    def __init__(
        self,
        transport: asyncio.Transport,
        *,
        timeout: float,
        pipelining: bool,
        size: bool,
        smtputf8: bool,
    ) -> None:
        self.transport = transport
        self.timeout = timeout
        self.pipelining = pipelining
        self.size = size
        self.smtputf8 = smtputf8
        self.stage = "MAIL"  # the step a transaction is at, for error messages
        self._buffer = bytearray()
        self._lines: list[tuple[int, str]] = []
        self._replies: collections.deque[Reply] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: Exception | None = None
        self._loop = asyncio.get_running_loop()

    @classmethod
    def take_over(cls, client: aiosmtplib.SMTP, *, timeout: float) -> Session:
        """Move the connected `client`'s transport to a new Session (the client is not used again)."""
        transport = client.transport
        if not isinstance(transport, asyncio.Transport) or transport.is_closing():
            raise SessionLost("the connection closed while it was being opened")
        session = cls(
            transport,
            timeout=timeout,
            pipelining=client.supports_extension("pipelining"),
            size=client.supports_extension("size"),
            smtputf8=client.supports_extension("smtputf8"),
        )
        transport.set_protocol(session)
        return session

    @property
    def is_open(self) -> bool:
        return self._lost is None and not self.transport.is_closing()

    # asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._lost is None:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    self._fail(SessionLost("the server sent a reply line over 8 KB"))
                return
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            self._line(line)

    def eof_received(self) -> bool:
        self._fail(SessionLost("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(SessionLost(str(exc) if exc else "the server closed the connection"))

    def _line(self, line: bytes) -> None:
        code = line[:3]
        if len(code) != 3 or not code.isdigit() or line[3:4] not in (b"", b" ", b"-"):
            self._fail(SessionLost(f"the server sent no SMTP reply: {line[:80]!r}"))
            return
        self._lines.append((int(code), line[4:].decode("utf-8", "replace")))
        if line[3:4] == b"-":
            if len(self._lines) > MAX_LINES:
                self._fail(SessionLost(f"the server sent a reply of over {MAX_LINES} lines"))
            return
        lines, self._lines = self._lines, []
        self._replies.append(Reply(lines[-1][0], "\n".join(text for _, text in lines)))
        self._wake()

    def _fail(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Transactions --------------------------------------------------------------------------

    async def reply(self) -> Reply:
        """The next reply, in order; SessionLost, or TimeoutError after `timeout` seconds."""
        while not self._replies:
            if self._lost is not None:
                raise self._lost
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(self.timeout, _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
        return self._replies.popleft()

    def write(self, data: bytes) -> None:
        if self._lost is not None:
            raise self._lost
        self.transport.write(data)

    async def send(
        self, *, sender: bytes, recipient: bytes, options: bytes, payload: bytes
    ) -> None:
        """One transaction; returns on the 2xx after the message, raises Refused otherwise.

        `sender` and `recipient` are command-line-safe addresses without brackets, `options`
        the MAIL parameters (each with a leading space), `payload` the dot-stuffed message
        ending in CRLF (the end-of-data line is added here).
        """
        mail = b"MAIL FROM:<" + sender + b">" + options + b"\r\n"
        rcpt = b"RCPT TO:<" + recipient + b">\r\n"
        if self.pipelining:
            self.stage = "MAIL"
            self.write(mail + rcpt + b"DATA\r\n")
            replies: list[Reply] = []
            try:
                for stage, _ in _STAGES:
                    self.stage = stage
                    replies.append(await self.reply())
            except (OSError, TimeoutError):
                # A refusal read before the server hung up (or went quiet) is the answer:
                # "554 sender rejected" then a close must stop the run, not be retried.
                refused = _first_refusal(replies)
                if refused is None:
                    raise
                self.close()  # the replies still owed would fall out of step
                raise refused from None
            refused = _first_refusal(replies)
            if refused is not None:
                if replies[2].code == 354:
                    # RFC 2920 3.1: a server may take DATA after refusing every recipient;
                    # an empty message then ends it without delivering anything.
                    self.write(b".\r\n")
                    await self.reply()
                raise refused
        else:
            for (stage, expected), command in zip(_STAGES, (mail, rcpt, b"DATA\r\n"), strict=True):
                self.stage = stage
                self.write(command)
                reply = await self.reply()
                if reply.code not in expected:
                    raise Refused(stage, reply)
        self.stage = "DATA"
        self.write(payload)  # two writes: joining would copy tens of KB per message
        self.write(b".\r\n")
        reply = await self.reply()
        if not 200 <= reply.code < 300:  # 250 is what RFC 5321 says; any 2xx means it was taken
            raise Refused("DATA", reply)

    async def reset(self) -> bool:
        """RSET after a refusal; False (and closed) when the connection is not usable."""
        try:
            self.write(b"RSET\r\n")
            if (await self.reply()).code == 250:
                return True
        except (OSError, TimeoutError):
            pass
        self.close()
        return False

    async def quit(self) -> None:
        """Say QUIT, wait for the answer, close; never raises."""
        try:
            self.write(b"QUIT\r\n")
            await self.reply()
        except (OSError, TimeoutError):
            pass
        self.close()

    def close(self) -> None:
        self._fail(SessionLost("the connection was closed"))


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("the server did not answer in time"))


# Each step of a transaction and the reply codes that let it go on.
_STAGES = (("MAIL", (250,)), ("RCPT", (250, 251)), ("DATA", (354,)))


def _first_refusal(replies: list[Reply]) -> Refused | None:
    """The first of the replies (to MAIL, RCPT, DATA in turn) that refuses its step."""
    for (stage, expected), reply in zip(_STAGES, replies, strict=False):
        if reply.code not in expected:
            return Refused(stage, reply)
    return None


def wire_payload(data: bytes, *, crlf_only: bool = False) -> bytes:
    """`data` as it goes after DATA: CRLF line ends, leading dots doubled, ending in CRLF.

    The end-of-data line itself is not added. `crlf_only`: the caller guarantees `data` has
    no bare CR or LF, so they are not looked for (a bare one could smuggle an end of data).
    """
    if not crlf_only:
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            data = _LINE_ENDS.sub(b"\r\n", data)
    if _line_starts_with_dot(data):  # base64 bodies never do
        data = (b"." if data.startswith(b".") else b"") + data.replace(b"\r\n.", b"\r\n..")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _line_starts_with_dot(data: bytes) -> bool:
    """Whether a line of (CRLF-only) `data` begins with a dot.

    Visits each dot (memchr): a message's few dots sit in its headers, while `b"\r\n." in
    data` costs about eight times as long on 45 KB of base64 lines (bench/bench_parts.py).
    """
    found = data.find(b".")
    while found >= 0:
        if found == 0 or data[found - 1] == 0x0A:
            return True
        found = data.find(b".", found + 1)
    return False
