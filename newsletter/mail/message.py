"""Message assembly: RFC 5322 headers and MIME built in code, never in templates.

Two ways to the same bytes a mail client sees:

- `build_message` and `simple_message` use the stdlib `email` package (the reference);
- `MessageSkeleton` is the fast path for the daily digest: headers and both bodies are
  prepared once per selection, and each subscriber costs a few string joins plus base64 of
  the short seams around their personal values (`SplicedBody`).

Every header value that comes from data is cleaned of control characters first; the
`List-Unsubscribe` header is written verbatim (never folded into `=?` encoded-words, which
mailbox providers reject), and no line is longer than 998 bytes.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.utils
import functools
import ipaddress
import re
from collections.abc import Callable, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import ConfigError, SubscriberError
from ..text import clean_text

CRLF = "\r\n"
NAME_LIMIT = 64  # characters of a display name kept (in headers and greetings)
_VERBATIM = frozenset({"list-unsubscribe", "list-unsubscribe-post"})

# Characters a plain (unquoted) display name may hold: RFC 5322 atext and spaces.
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+")
# A conservative ASCII addr-spec: nothing that could end the header or the angle brackets.
_ADDR = re.compile(r"[^\s<>(),;:\"\\\[\]@]+@[A-Za-z0-9.\-\[\]:]+")


class _Policy(EmailPolicy):
    """The SMTP policy (CRLF), except that List-Unsubscribe is written as given, never folded."""

    def fold(self, name: str, value: str) -> str:
        if name.lower() in _VERBATIM:
            return f"{name}: {str(value).replace(', <', ',' + CRLF + ' <')}{CRLF}"
        folded: str = super().fold(name, value)
        return folded

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in _VERBATIM:
            return self.fold(name, value).encode("ascii")
        return super().fold_binary(name, value)


POLICY = _Policy(linesep=CRLF)


def message_domain(settings: Settings) -> str:
    """Our own domain for Message-IDs: the base URL's host name, else the From address's domain."""
    host = urlsplit(settings.base_url).hostname or ""
    try:
        ipaddress.ip_address(host)
        host = ""  # an address literal is no domain to put right of the @
    except ValueError:
        pass
    if not host:
        host = email.utils.parseaddr(settings.from_address)[1].rpartition("@")[2]
    host = host.strip().lower()
    return host if re.fullmatch(r"[a-z0-9.\-]+", host) else "localhost"


def message_id_for(
    *, date: dt.date, subscriber_id: int, domain: str, tag: str, edition: str = "digest"
) -> str:
    """The Message-ID (without angle brackets) of one subscriber's email: same on a resend.

    `edition` "digest" (a day) or "weekly" (date: the week's Monday), so the two differ.
    `tag`: the email's VERP tag (`tokens.bounce_tag_of`), which signs id, date and address:
    a complaint quoting only the Message-ID still proves whose email it was, and anyone
    writing one for another subscriber's id is refused.
    """
    return f"{edition}.{date.isoformat()}.{int(subscriber_id)}.{tag}@{domain}"


def verp_address(envelope_from: str, token: str) -> str:
    """The return path carrying a VERP token: bounces@example.com -> bounces+TOKEN@example.com."""
    local, _, domain = envelope_from.rpartition("@")
    return f"{local}+{token}@{domain}"


def feedback_id(settings: Settings, date: dt.date, *, edition: str = "digest") -> str:
    """The Feedback-ID of an email (Gmail's complaint reports group by it): date:edition:list,
    the edition "digest" (a day) or "weekly" (date: the week's Monday), as in the Message-ID."""
    return f"{date:%Y%m%d}:{edition}:{settings.list_id}"


def format_date(moment: dt.datetime) -> str:
    """An RFC 5322 Date in UTC with +0000 (a naive datetime is taken to be UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return email.utils.format_datetime(moment.astimezone(dt.UTC))


def checked_address(address: str) -> str:
    """An ASCII envelope address that is safe in a header, else a SubscriberError."""
    if not _ADDR.fullmatch(address) or not address.isascii() or len(address) > 254:
        raise SubscriberError(f"{address!r} cannot be used as an email address in a header")
    return address


def _encoded_words(text: str) -> str:
    """RFC 2047 base64 encoded-words for `text`, each <= 75 chars, folded onto lines."""
    words: list[str] = []
    chunk = ""
    for char in text:
        # 45 bytes of UTF-8 make 60 base64 characters: 72 with the =?utf-8?b?...?= wrapper.
        if len((chunk + char).encode()) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return (CRLF + " ").join(
        f"=?utf-8?b?{binascii.b2a_base64(w.encode(), newline=False).decode()}?=" for w in words
    )


def format_address(*, name: str, address: str) -> str:
    """A To/From value `Name <addr>`: the name plain, quoted or RFC 2047 encoded as needed."""
    address = checked_address(address)
    name = clean_text(name, limit=NAME_LIMIT)
    if not name:
        return address
    if "=?" in name or not name.isascii():
        phrase = _encoded_words(name)
    elif _ATOM_PHRASE.fullmatch(name):
        phrase = name
    else:
        phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    last_line = phrase.rpartition(CRLF)[2]
    glue = CRLF + " " if len(last_line) + len(address) > 66 else " "
    return f"{phrase}{glue}<{address}>"


MAX_UNSUBSCRIBE_URL = 70  # the header's line stays one line, never folded


def list_unsubscribe(*, url: str, mailto: str) -> str:
    """The List-Unsubscribe value: the one-click https link first, then the mailto."""
    if len(url) > MAX_UNSUBSCRIBE_URL:
        raise ConfigError(f"unsubscribe link {url} is over 70 characters; use a shorter base_url")
    if any(c in url for c in "<>, \r\n") or not url.isascii():
        raise ConfigError(f"unsubscribe link {url!r} cannot go into a header")
    value = f"<{url}>"
    if mailto:
        if not _ADDR.fullmatch(mailto) or not mailto.isascii():
            raise ConfigError(f"unsubscribe_mailto {mailto!r} is not a plain email address")
        value += f", <mailto:{mailto}?subject=unsubscribe>"
    return value


@functools.lru_cache(maxsize=1024)
def folded_header(name: str, value: str) -> str:
    """One header line as the stdlib would fold and encode it (CRLF-terminated)."""
    return POLICY.fold(name, POLICY.header_factory(name, value))


def _angle(message_id: str) -> str:
    bare = message_id.strip().strip("<>")
    if not re.fullmatch(r"[^\s<>@]+@[^\s<>@]+", bare) or not bare.isascii():
        raise ConfigError(f"{message_id!r} is not a valid Message-ID")
    return f"<{bare}>"


def build_message(
    *,
    settings: Settings,
    to: str | Address,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    date: dt.datetime,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A message built with the stdlib: text part first, then HTML; CRLF line endings.

    `to` is an address header value ("Name <a@example.com>") or an `Address`.
    """
    msg = EmailMessage(policy=POLICY)
    msg["From"] = settings.from_address
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    try:
        msg["To"] = to
    except (ValueError, IndexError):  # line breaks, or nothing the parser can read
        raise SubscriberError(f"{to!r} cannot be used as an email address in a header") from None
    if not msg["To"].addresses:
        raise SubscriberError(f"{to!r} holds no email address")
    for addr in msg["To"].addresses:
        checked_address(addr.addr_spec)
    msg["Subject"] = clean_text(subject)
    msg["Date"] = format_date(date)
    msg["Message-ID"] = _angle(message_id)
    for name, value in headers:
        msg[name] = value
    msg.set_content(text, subtype="plain", charset="utf-8", cte="base64")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
    return msg.as_bytes(policy=POLICY)


def digest_headers(
    *, settings: Settings, unsubscribe_url: str, date: dt.date, edition: str = "digest"
) -> list[tuple[str, str]]:
    """The list headers of a digest email: List-Id, RFC 8058 one-click unsubscribe, Feedback-ID."""
    return [
        ("List-Id", f"{clean_text(settings.site_title)} <{settings.list_id}>"),
        (
            "List-Unsubscribe",
            list_unsubscribe(url=unsubscribe_url, mailto=settings.unsubscribe_mailto),
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Feedback-ID", feedback_id(settings, date, edition=edition)),
    ]


def simple_message(
    *,
    settings: Settings,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    message_id: str,
    clock: Callable[[], dt.datetime],
) -> bytes:
    """A one-off message (e.g. a sign-up confirmation): text, plus HTML as its alternative."""
    return build_message(
        settings=settings,
        to=to,
        subject=subject,
        text=text,
        html=html,
        message_id=message_id,
        date=clock(),
    )


class MessageSkeleton:
    """The fixed part of every digest message, prepared once; `fill` makes one subscriber's bytes.

    Everything but To, Date, Message-ID, Subject, List-Unsubscribe, the boundary and the two
    base64 bodies is the same for every message of a send, so a fill is a join of bytes.
    """

    __slots__ = ("_bottom", "_middle", "_subjects", "_top")

    def __init__(self, *, settings: Settings, date: dt.date, edition: str = "digest") -> None:
        top = folded_header("From", settings.from_address)
        if settings.reply_to:
            top += folded_header("Reply-To", settings.reply_to)
        self._top = top.encode("ascii")
        list_id = f"{clean_text(settings.site_title)} <{settings.list_id}>"
        self._middle = folded_header("List-Id", list_id).encode("ascii")
        self._bottom = (
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            + folded_header("Feedback-ID", feedback_id(settings, date, edition=edition))
            + "MIME-Version: 1.0\r\n"
        ).encode("ascii")
        self._subjects: dict[str, bytes] = {}  # a day's subjects differ only in the count

    def _subject(self, subject: str) -> bytes:
        found = self._subjects.get(subject)
        if found is None:
            found = folded_header("Subject", clean_text(subject)).encode("ascii")
            if len(self._subjects) < 4096:
                self._subjects[subject] = found
        return found

    def fill(
        self,
        *,
        to: str,
        date: str,
        message_id: str,
        subject: str,
        list_unsubscribe: str,
        boundary: str,
        text: list[bytes],
        html: list[bytes],
    ) -> bytes:
        """One message: header values already formatted, bodies already in base64 lines
        (each a list of chunks of whole lines, joined here with the rest in one copy)."""
        parts = [
            self._top,
            f"To: {to}\r\nDate: {date}\r\nMessage-ID: <{message_id}>\r\n".encode("ascii"),
            self._subject(subject),
            self._middle,
            b"List-Unsubscribe: ",
            list_unsubscribe.replace(", <", ",\r\n <").encode("ascii"),
            b"\r\n",
            self._bottom,
            (
                f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
                "\r\n"
                f"--{boundary}\r\n"
                'Content-Type: text/plain; charset="utf-8"\r\n'
                "Content-Transfer-Encoding: base64\r\n"
                "\r\n"
            ).encode("ascii"),
        ]
        parts += text
        parts.append(
            f"--{boundary}\r\n"
            'Content-Type: text/html; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            "\r\n".encode("ascii")
        )
        parts += html
        parts.append(f"--{boundary}--\r\n".encode("ascii"))
        return b"".join(parts)
