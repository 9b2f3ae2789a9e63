"""SMTPSender: hands messages to an SMTP server (a relay) over a pool of reused connections.

aiosmtplib opens each connection (greeting, EHLO, TLS, login); a Session (delivery/session.py)
then runs its transactions, pipelined when the server offers PIPELINING. Each connection
carries one transaction at a time, so the pool holds one per concurrent send; one is recycled
after `messages_per_connection` messages because relays cap them. TLS is explicit: `starttls`
requires the server to offer STARTTLS, `tls` connects over TLS, `none` is plain text; there is
never a silent downgrade. Failures map onto the delivery error tree:
TemporaryFailure (4xx, timeouts, dropped connections), PermanentFailure (5xx; `bounced` when the
address does not exist) and plain DeliveryError when the server cannot be used at all or refuses
how we send (see delivery/refusals.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import ssl

import aiosmtplib

from ..config import Secret, Settings, coerce_setting
from ..errors import ConfigError, DeliveryError, PermanentFailure, TemporaryFailure
from ..mail.outgoing import OutgoingMessage
from ..text import clean_text
from .refusals import classify_refusal, masked_reply
from .session import Refused, Reply, Session, SessionLost, wire_payload

TLS_MODES = ("starttls", "tls", "none")


def reply_text(code: int | None, text: str) -> str:
    """A server reply as one safe line (servers may send anything)."""
    line = clean_text(text)[:300]
    return f"{code} {line}" if code is not None else line


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (credentials may then travel without TLS)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Connection:
    """One open session and how many messages it has carried."""

    __slots__ = ("count", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.count = 0


def _usable_name(name: str | None) -> bool:
    """Whether a name found for EHLO can be given to the next connection as it is."""
    if not name:
        return False
    return name.isascii() and name.isprintable() and " " not in name


class SMTPSender:
    """Sends messages over a pool of reused SMTP connections (implements deliver.Sender)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: str = "starttls",
        user: str = "",
        password: Secret | str | None = None,
        timeout: float = 30.0,
        pool_size: int = 8,
        messages_per_connection: int = 100,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if tls not in TLS_MODES:
            raise ConfigError(f"SMTP TLS mode must be starttls, tls or none, not {tls!r}")
        if user and not password:
            raise ConfigError("SMTP user is set but NEWSLETTER_SMTP_PASSWORD is not")
        if user and tls == "none" and not is_loopback(host):
            raise ConfigError(
                f"refusing to send SMTP credentials to {host} without TLS (use --smtp-tls starttls or tls)"
            )
        # Checked as the settings check them: a bad port or host never reaches the socket layer.
        self.host: str = coerce_setting("smtp_host", host, source="SMTPSender(host=...)")
        self.port: int = coerce_setting("smtp_port", port, source="SMTPSender(port=...)")
        self.tls = tls
        self.timeout = timeout
        self.messages_per_connection = max(1, messages_per_connection)
        self._user = user
        self._password = password
        self._tls_context = tls_context
        self._local_hostname = local_hostname
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max(1, pool_size))
        self._connected_once = False
        self._closed = False

    def __repr__(self) -> str:  # never shows the password
        return f"SMTPSender({self.host}:{self.port}, tls={self.tls}, user={self._user or '-'})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def open(self) -> None:
        """Connect (and log in) once now, so a server that cannot be used fails before any claim."""
        async with self._slots:
            if self._closed:
                raise DeliveryError("the SMTP sender is closed")
            if not self._idle:
                self._checkin(await self._connect())

    async def send(self, message: OutgoingMessage) -> None:
        """Hand one message to the server; returns only on the 250 after DATA."""
        async with self._slots:
            if self._closed:
                raise DeliveryError("the SMTP sender is closed")
            conn = self._idle.pop() if self._idle else None
            if conn is not None and not conn.session.is_open:
                conn = None
            for _ in range(2):
                if conn is None:
                    conn = await self._connect()
                try:
                    await self._transaction(conn, message)
                    break
                except _StaleConnection as exc:
                    # A pooled connection the server had already dropped: nothing was sent,
                    # so one fresh connection is tried before this counts as a failure.
                    self._discard(conn)
                    conn = None
                    stale = str(exc)
                except PermanentFailure:
                    if conn.session.is_open:
                        self._checkin(conn)  # a refused message leaves a usable connection
                    else:
                        self._discard(conn)
                    raise
                except DeliveryError:
                    self._discard(conn)  # reconnect after anything temporary
                    raise
            else:
                raise TemporaryFailure(stale)
            conn.count += 1
            if conn.count >= self.messages_per_connection:
                await self._quit(conn)
            else:
                self._checkin(conn)

    async def aclose(self) -> None:
        """Say QUIT on every idle connection."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(conn) for conn in idle))

    async def _transaction(self, conn: _Connection, message: OutgoingMessage) -> None:
        session = conn.session
        options = b""
        if session.size:
            options += b" SIZE=%d" % len(message.data)
        encoding = "ascii"
        if not message.recipient.isascii() or not message.envelope_from.isascii():
            if not session.smtputf8:
                raise PermanentFailure(
                    f"{message.recipient}: the server does not accept non-ASCII addresses (SMTPUTF8)"
                )
            options += b" SMTPUTF8"
            encoding = "utf-8"
        try:
            sender = command_address(message.envelope_from).encode(encoding)
            recipient = command_address(message.recipient).encode(encoding)
        except ValueError as exc:  # an address that cannot go on an SMTP command line
            raise PermanentFailure(f"{message.recipient}: {exc}") from None
        payload = wire_payload(message.data, crlf_only=message.crlf_only)
        try:
            await session.send(sender=sender, recipient=recipient, options=options, payload=payload)
        except Refused as exc:
            await session.reset()
            raise self._refusal(exc.reply, exc.stage, message) from None
        except (OSError, TimeoutError) as exc:
            session.close()
            what = _describe(exc)
            if session.stage == "MAIL" and conn.count > 0 and not isinstance(exc, TimeoutError):
                raise _StaleConnection(f"{self.where}: {what}") from None
            raise TemporaryFailure(f"{self.where}: {what} during {session.stage}") from None

    def _refusal(self, reply: Reply, stage: str, message: OutgoingMessage) -> DeliveryError:
        code, text = reply.code, reply_text(reply.code, reply.text)
        verdict = classify_refusal(
            stage=stage, code=code, text=reply.text, sender=message.envelope_from
        )
        if verdict == "temporary":
            return TemporaryFailure(f"{stage} refused: {text}", code=code)
        if verdict == "stop" and stage == "MAIL":
            return DeliveryError(
                f"{self.where} refuses envelope sender {message.envelope_from}: {text}"
            )
        if verdict == "stop":
            # About our sender identity, login, TLS or the relay's policy: every message would
            # be refused alike, so the run stops and no subscriber is marked.
            return DeliveryError(
                f"{self.where} refused {stage} for {message.recipient} over how we send, "
                f"not the address: {text}; no subscriber was changed"
            )
        return PermanentFailure(
            f"{message.recipient}: {stage} refused: {text}",
            code=code,
            bounced=verdict == "bounce",
            reply=masked_reply(
                stage=stage,
                code=code,
                text=reply_text(None, reply.text),
                recipient=message.recipient,
            ),
        )

    async def _connect(self) -> _Connection:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls == "tls",
            start_tls=self.tls == "starttls",  # True: fail when STARTTLS is not offered
            timeout=self.timeout,
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
        )
        try:
            await client.connect()
            # The EHLO name: found once (aiosmtplib asks socket.getfqdn, a DNS lookup that can
            # take seconds, in a thread per connection), then given to every later connection.
            if self._local_hostname is None and _usable_name(client.local_hostname):
                self._local_hostname = client.local_hostname
            if client.is_ehlo_or_helo_needed:  # greet now: MAIL is sent without the helpers
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if self._user:
                if not client.supports_extension("auth"):
                    client.close()
                    raise DeliveryError(
                        f"{self.where} offers no AUTH, but an SMTP user ({self._user}) is set; "
                        "unset NEWSLETTER_SMTP_USER if this relay needs no login"
                    )
                password = self._password
                secret = password.reveal() if isinstance(password, Secret) else str(password)
                await client.login(self._user, secret)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise DeliveryError(
                f"{self.where} refused the login of {self._user}: {reply_text(exc.code, exc.message)}"
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            if 400 <= exc.code < 500 and self._connected_once:
                raise TemporaryFailure(
                    f"{self.where}: {reply_text(exc.code, exc.message)}", code=exc.code
                ) from None
            raise DeliveryError(
                f"{self.where} refused the connection: {reply_text(exc.code, exc.message)}"
            ) from None
        except ssl.SSLError as exc:
            client.close()
            raise DeliveryError(f"TLS with {self.where} failed: {_describe(exc)}") from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            client.close()
            if self._connected_once:  # it worked earlier in this run: a hiccup, retry later
                raise TemporaryFailure(
                    f"cannot reconnect to {self.where}: {_describe(exc)}"
                ) from None
            raise DeliveryError(
                f"cannot connect to SMTP server {self.where}: {_describe(exc)}"
            ) from None
        except aiosmtplib.SMTPException as exc:
            client.close()
            if self.tls == "starttls" and "STARTTLS" in str(exc):
                raise DeliveryError(
                    f"{self.where} does not offer STARTTLS and TLS mode is starttls "
                    "(use --smtp-tls none only for a relay on a trusted network)"
                ) from None
            raise DeliveryError(f"{self.where}: {_describe(exc)}") from None
        try:
            session = Session.take_over(client, timeout=self.timeout)
        except SessionLost as exc:
            client.close()
            raise TemporaryFailure(f"{self.where}: {exc}") from None
        self._connected_once = True
        return _Connection(session)

    def _checkin(self, conn: _Connection) -> None:
        if self._closed:
            self._discard(conn)
        else:
            self._idle.append(conn)

    @staticmethod
    def _discard(conn: _Connection) -> None:
        conn.session.close()

    @staticmethod
    async def _quit(conn: _Connection) -> None:
        await conn.session.quit()


# A dot-atom local part (RFC 5321 4.1.2; UTF-8 allowed as in RFC 6531) at a domain.
_ATEXT = r"[!#-'*+\-/-9=?A-Z^-~\u0080-\U0010ffff]+"
_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[^\s<>()\[\]\\,;:\"@]+")


def command_address(address: str) -> str:
    """`address` as it goes between < and > on MAIL or RCPT; ValueError if it cannot.

    Only dot-atom local parts (what subscribers' addresses are): nothing that could end the
    address early or start another command. An empty address is the null sender.
    """
    if address == "" or (len(address) <= 254 and _ADDRESS.fullmatch(address)):
        return address
    raise ValueError(f"{address!r} cannot be written on an SMTP command line")


class _StaleConnection(Exception):
    """A reused connection was gone before the transaction began."""


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    errno = getattr(exc, "errno", None) or getattr(cause, "errno", None)
    if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError):
        errno = None  # an SSL error number is no OS error: keep the library's message
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno)  # "Connection refused", not asyncio's wrapper text
    text = str(exc) or type(exc).__name__
    return reply_text(None, text)


def smtp_sender(settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> SMTPSender:
    """The SMTP sender the settings describe (host, port, TLS mode, credentials, pool, timeouts)."""
    return SMTPSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        tls=settings.smtp_tls,
        user=settings.smtp_user,
        password=settings.smtp_password,
        timeout=settings.smtp_timeout,
        pool_size=settings.concurrency,
        messages_per_connection=settings.messages_per_connection,
        tls_context=tls_context,
    )
