"""The SMTP session after aiosmtplib has opened the connection: pipelined transactions when the
server offers PIPELINING, one command at a time when it does not, refusals and broken replies
mapped onto the delivery errors. Servers: a scripted one on loopback that checks how commands
arrive, aiosmtpd, and Postfix's own smtp-sink."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from newsletter.delivery.session import wire_payload
from newsletter.delivery.smtp import SMTPSender, command_address
from newsletter.errors import DeliveryError, PermanentFailure, TemporaryFailure
from newsletter.mail.outgoing import OutgoingMessage
from tests.smtp_servers import RecordingHandler, free_port, smtp_server, stop_process


def outgoing(recipient: str, body: bytes = b"body\r\n", *, sid: int = 1) -> OutgoingMessage:
    data = b"From: a@example.com\r\nTo: " + recipient.encode() + b"\r\nSubject: t\r\n\r\n" + body
    return OutgoingMessage(sid, recipient, "bounces@example.com", f"m{sid}@example.com", data)


# --- A scripted server: says what arrived before each reply --------------------------------------

Answer = Callable[[str, bytes], bytes | None]
DROP = b"(drop the connection)"


@dataclass
class Scripted:
    """A raw SMTP server on loopback. With `pipelining` it answers MAIL only once RCPT and
    DATA have arrived too (a client waiting for each reply would stall); without it, it notes
    any command that arrives before the reply to the previous one (`early`)."""

    pipelining: bool = True
    answer: Answer | None = None  # (command or "END", line/body) -> reply bytes, or None for OK
    data_after_refusal: bool = False  # answer 354 to DATA even when MAIL or RCPT was refused
    answer_then_drop: bool = False  # a DROP reply: first send the replies before it (pipelined)
    messages: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # every message body received
    commands: list[str] = field(default_factory=list)
    early: list[str] = field(default_factory=list)
    greetings: list[str] = field(default_factory=list)  # the name each EHLO or HELO gave
    sessions: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(b"220 scripted ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper().decode("ascii", "replace")
                self.commands.append(verb)
                if verb in ("EHLO", "HELO"):
                    self.greetings.append(line[5:].strip().decode("ascii", "replace"))
                    extensions = [b"SIZE 10000000", b"8BITMIME"]
                    if self.pipelining:
                        extensions.append(b"PIPELINING")
                    lines = [b"scripted", *extensions]
                    writer.write(
                        b"".join(
                            b"250" + (b" " if i == len(lines) - 1 else b"-") + text + b"\r\n"
                            for i, text in enumerate(lines)
                        )
                    )
                    continue
                if verb == "MAIL" and self.pipelining:
                    # Hold the MAIL reply until the rest of the group is here.
                    group = [line, await reader.readline(), await reader.readline()]
                    await self.group(group, reader, writer)
                    continue
                if not self.pipelining and verb in ("MAIL", "RCPT"):
                    await asyncio.sleep(0.05)
                    if reader._buffer:  # type: ignore[attr-defined]  # arrived before our reply
                        self.early.append(verb)
                if verb == "DATA":
                    reply = self.reply("DATA", line, b"354 go ahead\r\n")
                    writer.write(reply)
                    if reply.startswith(b"354"):
                        await self.body(reader, writer)
                    continue
                if verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                writer.write(self.reply(verb, line, b"250 ok\r\n"))
                await writer.drain()
        finally:
            writer.close()

    async def group(
        self, group: list[bytes], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        verbs = [line[:4].upper().decode() for line in group]
        self.commands.extend(verbs[1:])
        assert verbs == ["MAIL", "RCPT", "DATA"], verbs
        replies = [
            self.reply("MAIL", group[0], b"250 ok\r\n"),
            self.reply("RCPT", group[1], b"250 ok\r\n"),
        ]
        if all(r.startswith(b"2") for r in replies) or self.data_after_refusal:
            replies.append(self.reply("DATA", group[2], b"354 go ahead\r\n"))
        else:
            replies.append(b"554 5.5.1 Error: no valid recipients\r\n")
        if DROP in replies:  # the server goes away mid-transaction
            if self.answer_then_drop:  # after sending the replies before the drop
                writer.write(b"".join(replies[: replies.index(DROP)]))
                await writer.drain()
            writer.transport.abort()
            return
        writer.write(b"".join(replies))
        if replies[2].startswith(b"354"):
            await self.body(reader, writer, deliver=all(r.startswith(b"2") for r in replies[:2]))

    async def body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, deliver: bool = True
    ) -> None:
        lines = []
        while (line := await reader.readline()) != b".\r\n":
            assert line, "connection closed inside DATA"
            lines.append(line[1:] if line.startswith(b".") else line)
        data = b"".join(lines)
        self.bodies.append(data)  # whatever came after 354, delivered or not
        reply = self.reply("END", data, b"250 queued\r\n") if deliver else b"554 no recipients\r\n"
        if deliver and reply.startswith(b"250"):
            self.messages.append(data)
        writer.write(reply)

    def reply(self, verb: str, line: bytes, default: bytes) -> bytes:
        given = self.answer(verb, line) if self.answer else None
        return default if given is None else given


@asynccontextmanager
async def scripted(server: Scripted) -> AsyncIterator[int]:
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        listening.close()


def sender_for(port: int, **options: Any) -> SMTPSender:
    return SMTPSender(host="127.0.0.1", port=port, tls="none", timeout=2, **options)


# --- pipelining -----------------------------------------------------------------------------------


async def test_with_pipelining_mail_rcpt_and_data_go_in_one_group() -> None:
    server = Scripted(pipelining=True)
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        for n in range(3):
            await sender.send(outgoing(f"r{n}@example.com", sid=n))
        await sender.aclose()
    assert [m.split(b"\r\n")[1] for m in server.messages] == [
        b"To: r0@example.com",
        b"To: r1@example.com",
        b"To: r2@example.com",
    ]
    assert server.sessions == 1  # one connection carried all three


async def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    server = Scripted(pipelining=False)
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        await sender.send(outgoing("r@example.com"))
        await sender.aclose()
    assert len(server.messages) == 1
    assert server.early == []
    assert server.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_an_unknown_recipient_bounces_and_the_connection_goes_on(pipelining: bool) -> None:
    def answer(verb: str, line: bytes) -> bytes | None:
        if verb == "RCPT" and b"gone@" in line:
            return b"550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown\r\n"
        return None

    server = Scripted(pipelining=pipelining, answer=answer)
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        with pytest.raises(PermanentFailure) as refused:
            await sender.send(outgoing("gone@example.com"))
        await sender.send(outgoing("here@example.com", sid=2))
        await sender.aclose()
    assert refused.value.bounced
    assert str(refused.value).startswith("gone@example.com: RCPT refused: 550 5.1.1")
    assert [m.split(b"\r\n")[1] for m in server.messages] == [b"To: here@example.com"]
    assert "RSET" in server.commands
    assert server.sessions == 1


async def test_data_accepted_after_every_recipient_was_refused_is_ended_empty() -> None:
    # RFC 2920 3.1: a server may answer 354 even though no recipient was taken.
    server = Scripted(
        pipelining=True,
        answer=lambda verb, line: b"550 5.1.1 User unknown\r\n" if verb == "RCPT" else None,
        data_after_refusal=True,
    )
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        with pytest.raises(PermanentFailure, match=r"RCPT refused: 550 5\.1\.1"):
            await sender.send(outgoing("gone@example.com", b"never delivered\r\n"))
        await sender.aclose()
    assert server.messages == []  # the scripted server refused the empty body: nothing went
    assert server.bodies == [b""]  # and the message itself was never written after the 354
    assert server.commands[-2:] == ["RSET", "QUIT"]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_temporary_refusal_of_mail_from_is_temporary(pipelining: bool) -> None:
    server = Scripted(
        pipelining=pipelining,
        answer=lambda verb, line: b"451 4.3.0 try later\r\n" if verb == "MAIL" else None,
    )
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        with pytest.raises(TemporaryFailure, match=r"MAIL refused: 451 4\.3\.0 try later"):
            await sender.send(outgoing("r@example.com"))
        await sender.aclose()
    assert server.messages == []


@pytest.mark.parametrize(
    ("refusing", "reply", "raised", "says"),
    [
        ("MAIL", b"554 5.7.1 sender rejected\r\n", DeliveryError, "refuses envelope sender"),
        ("RCPT", b"550 5.1.1 no such user\r\n", PermanentFailure, "RCPT refused: 550 5.1.1"),
    ],
)
async def test_a_refusal_followed_by_a_hang_up_is_still_a_refusal(
    refusing: str, reply: bytes, raised: type[Exception], says: str
) -> None:
    # Exim's `drop` refuses and closes: the refusal read before the close decides, so a
    # refused sender stops the run and an unknown address bounces, instead of a retry.
    stages = ["MAIL", "RCPT", "DATA"]
    after = stages[stages.index(refusing) + 1]

    def answer(verb: str, line: bytes) -> bytes | None:
        return reply if verb == refusing else DROP if verb == after else None

    server = Scripted(
        pipelining=True, answer=answer, answer_then_drop=True, data_after_refusal=True
    )
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        await sender.open()
        with pytest.raises(raised, match=says) as caught:
            await sender.send(outgoing("r@example.com"))
        await sender.aclose()
    if isinstance(caught.value, PermanentFailure):
        assert caught.value.bounced
    assert server.messages == []


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (b"hello there\r\n", "sent no SMTP reply"),
        (b"250" + b"-x" * 6000, "reply line over 8 KB"),
        (b"".join(b"250-line\r\n" for _ in range(150)) + b"250 end\r\n", "over 100 lines"),
    ],
)
async def test_a_server_that_sends_garbage_is_a_temporary_failure(garbage: bytes, why: str) -> None:
    server = Scripted(pipelining=True, answer=lambda verb, line: garbage if verb == "END" else None)
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        with pytest.raises(TemporaryFailure, match=why):
            await sender.send(outgoing("r@example.com"))
        # The broken connection is dropped; the next message gets a new one.
        server.answer = None
        await sender.send(outgoing("s@example.com", sid=2))
        await sender.aclose()
    assert server.sessions == 2
    assert [m.split(b"\r\n")[1] for m in server.messages][-1] == b"To: s@example.com"


@pytest.mark.parametrize("pipelining", [True, False])
async def test_any_2xx_after_the_message_means_it_was_taken(pipelining: bool) -> None:
    server = Scripted(
        pipelining=pipelining,
        answer=lambda verb, line: (
            b"251 2.0.0 taken, with a code of its own\r\n" if verb == "END" else None
        ),
    )
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        await sender.send(outgoing("r@example.com"))
        await sender.send(outgoing("s@example.com", sid=2))  # the connection goes on
        await sender.aclose()
    assert len(server.bodies) == 2 and server.sessions == 1


@pytest.mark.parametrize("reply", [b"150 still thinking\r\n", b"354 go ahead, again\r\n"])
async def test_a_reply_out_of_place_after_the_message_is_temporary(reply: bytes) -> None:
    """Not a refusal for good: whether the server kept the message, nobody can tell."""
    server = Scripted(pipelining=True, answer=lambda verb, line: reply if verb == "END" else None)
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        with pytest.raises(TemporaryFailure, match="DATA refused: " + reply[:3].decode()):
            await sender.send(outgoing("r@example.com"))
        await sender.aclose()


async def test_a_connection_dropped_mid_transaction_is_temporary_then_replaced() -> None:
    server = Scripted(pipelining=True, answer=lambda verb, line: DROP if verb == "RCPT" else None)
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1)
        await sender.open()  # a fresh connection: its first transaction is not retried
        with pytest.raises(TemporaryFailure, match=r"closed the connection during MAIL"):
            await sender.send(outgoing("r@example.com"))
        server.answer = None
        await sender.send(outgoing("s@example.com", sid=2))
        await sender.aclose()
    assert server.sessions == 2
    assert [m.split(b"\r\n")[1] for m in server.messages] == [b"To: s@example.com"]


async def test_aiosmtpd_with_pipelining_offered_gets_the_same_bytes() -> None:
    class Pipelining(RecordingHandler):
        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]]

    dotted = b".leading dot\r\n.\r\n..two dots\r\nlast"
    with smtp_server(Pipelining()) as (server, handler):
        sender = sender_for(server.port, pool_size=2)
        await asyncio.gather(
            *(sender.send(outgoing(f"r{n}@example.com", dotted)) for n in range(6))
        )
        await sender.aclose()
    assert len(handler.received) == 6
    assert {r.data.split(b"\r\n\r\n", 1)[1] for r in handler.received} == {dotted + b"\r\n"}


def counted_getfqdn(monkeypatch: pytest.MonkeyPatch, answer: str) -> list[str]:
    """socket.getfqdn answering `answer`; the list of its calls."""
    lookups: list[str] = []

    def getfqdn(name: str = "") -> str:
        lookups.append(name)
        return answer

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    return lookups


async def test_the_ehlo_name_is_looked_up_once_per_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    # socket.getfqdn is a DNS lookup that can take seconds; a connection per 2 messages must
    # not repeat it, and every connection must still greet with the name it found.
    lookups = counted_getfqdn(monkeypatch, "sender.example.net")
    server = Scripted(pipelining=True)
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=2, messages_per_connection=2)
        await sender.open()
        for n in range(8):
            await sender.send(outgoing(f"r{n}@example.com", sid=n))
        await sender.aclose()
    assert server.sessions >= 4
    assert len(lookups) == 1
    assert server.greetings == ["sender.example.net"] * server.sessions


async def test_an_ehlo_name_unfit_to_pass_on_is_looked_up_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiosmtplib refuses a name with spaces when it is given one; such a name is not kept.
    lookups = counted_getfqdn(monkeypatch, "two words")
    server = Scripted(pipelining=True)
    async with scripted(server) as port:
        sender = sender_for(port, pool_size=1, messages_per_connection=1)
        for n in range(3):
            await sender.send(outgoing(f"r{n}@example.com", sid=n))
        await sender.aclose()
    assert len(server.messages) == 3
    assert len(lookups) == server.sessions == 3


# --- Postfix's smtp-sink: a real PIPELINING server --------------------------------------------

SMTP_SINK = "/usr/sbin/smtp-sink"


async def test_many_messages_through_postfix_smtp_sink_arrive_whole(tmp_path: Path) -> None:
    if shutil.which(SMTP_SINK) is None:
        pytest.skip("needs Debian's postfix (smtp-sink)")
    port = free_port()
    user = ["-u", "root"] if os.geteuid() == 0 else []  # smtp-sink will not run as root
    dumps = tmp_path / "dumps"
    process = subprocess.Popen(
        [SMTP_SINK, *user, "-d", f"{dumps}/%M.", f"127.0.0.1:{port}", "100"],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                _, probe = await asyncio.open_connection("127.0.0.1", port)
                probe.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        sender = sender_for(port, pool_size=4, messages_per_connection=7)
        body = b"".join(b".line %d\r\n" % n for n in range(2000))  # ~20 KB, every line dotted
        messages = [outgoing(f"reader{n}@example.com", body, sid=n) for n in range(60)]
        await asyncio.gather(*(sender.send(m) for m in messages))
        await sender.aclose()
        deadline = time.monotonic() + 10
        while len(list(dumps.rglob("*"))) < 60 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        process.terminate()
        stop_process(process)
    files = [p for p in dumps.rglob("*") if p.is_file()]
    assert len(files) == 60
    bodies: set[bytes] = set()
    recipients: set[bytes] = set()
    for path in files:
        # smtp-sink's dump: the envelope as X- lines, then the message as it arrived,
        # unstuffed, with LF line ends.
        head, _, message = path.read_bytes().partition(b"\nSubject: t\n\n")
        recipients.update(line for line in head.split(b"\n") if line.startswith(b"X-Rcpt-Args:"))
        bodies.add(message.rstrip(b"\n"))
    assert bodies == {body.replace(b"\r\n", b"\n").rstrip(b"\n")}
    assert len(recipients) == 60


# --- the bytes on the wire ------------------------------------------------------------------------


def test_wire_payload_doubles_leading_dots_and_ends_with_crlf() -> None:
    assert wire_payload(b"a\r\n.b\r\n..c\r\nd.e", crlf_only=True) == b"a\r\n..b\r\n...c\r\nd.e\r\n"
    assert wire_payload(b".first\r\n") == b"..first\r\n"
    assert wire_payload(b"no dots at line starts. here\r\n") == b"no dots at line starts. here\r\n"


def test_bare_line_ends_are_normalised_before_dots_are_doubled() -> None:
    # A bare LF before a dot must not let ".\r\n" through as an end of data.
    assert wire_payload(b"a\n.\nb\rc") == b"a\r\n..\r\nb\r\nc\r\n"


@pytest.mark.parametrize(
    "address",
    ["a b@example.com", "a>b@example.com", "<a@example.com>", "a@example.com\r\nRCPT TO:<x@y>",
     '"quoted"@example.com', "a@example.com SIZE=1"],
)  # fmt: skip
def test_addresses_that_could_break_a_command_line_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="cannot be written on an SMTP command line"):
        command_address(address)


def test_dot_atom_addresses_go_on_the_command_line_as_they_are() -> None:
    for address in ("reader.1+news@example.com", "기자@example.com", "o'neil@example.co.kr", ""):
        assert command_address(address) == address
