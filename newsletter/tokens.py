"""Signed, URL-safe tokens for subscriber links (unsubscribe, preferences, feeds, sign-up).

A token names a subscriber id (or a sign-up's id and nonce) and a purpose and carries an
HMAC-SHA256 tag truncated to 128 bits, so it cannot be forged or guessed without the secret
key, and it is short enough to keep `List-Unsubscribe` URLs under 70 characters.

A subscriber's tags (links, private feed, VERP) sign the id *and the address*, though only
the id travels: a token is checked against the subscriber its id names in the store that
reads it. So a link from another database's email (same key, another person under that id)
names no one here. Links made before tags held the address (the id alone) are still honoured
for the subscribers who existed then (`legacy_links`, set by the migration that began this).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from hashlib import _Hash

TAG_BYTES = 16  # 128 bits

PURPOSES = ("unsubscribe", "preferences", "feed", "confirm")
BOUNCE_TAG_HEX = 20  # 80 bits: forging one could only mark one address bounced
# Lower case only: some mail systems change the case of local parts.
BOUNCE_TOKEN = re.compile(rf"([0-9]{{1,12}})-([0-9]{{8}})-([0-9a-f]{{{BOUNCE_TAG_HEX}}})")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """URL-safe base64 without padding (binascii directly: base64's wrappers cost more here)."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE).decode()


def _unb64(text: str) -> bytes:
    """Bytes of the canonical encoding only: padding, stray characters or spare bits set are
    refused, so each token has exactly one spelling (ValueError otherwise)."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical unpadded url-safe base64")
    return data


# Each key's HMAC-SHA256 pads, hashed once (RFC 2104, section 4): a tag then costs two
# SHA-256 blocks, where hmac.digest sets up OpenSSL's MAC afresh each time (2.5x slower; a
# send makes four tags per message).
_PADS: dict[bytes, tuple[_Hash, _Hash]] = {}


def _pads(key: bytes) -> tuple[_Hash, _Hash]:
    """SHA-256 states after the key XOR ipad and the key XOR opad blocks."""
    found = _PADS.get(key)
    if found is None:
        block = key if len(key) <= 64 else hashlib.sha256(key).digest()
        block = block.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        found = (inner, outer)
        if len(_PADS) < 64:  # a process uses one key, two while keys rotate
            _PADS[key] = found
    return found


def _tag(key: bytes, purpose: str, subject: str) -> bytes:
    """HMAC-SHA256 of "purpose NUL subject" under `key`, cut to TAG_BYTES."""
    inner, outer = _pads(key)
    mac = inner.copy()
    mac.update(f"{purpose}\x00{subject}".encode())
    tag = outer.copy()
    tag.update(mac.digest())
    return tag.digest()[:TAG_BYTES]


def make_token(subject: int | str, *, purpose: str, key: bytes) -> str:
    """A token for `subject` (a subscriber id, or a sign-up id) good only for `purpose`."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    text = str(subject)
    return f"{_b64(text.encode())}.{_b64(_tag(key, purpose, text))}"


def _split(token: str) -> tuple[str, bytes] | None:
    """(subject, tag) of a well-formed token, not yet checked; None when malformed."""
    if len(token) > 200 or token.count(".") != 1:
        return None
    head, tag = token.split(".")
    try:
        return _unb64(head).decode("utf-8"), _unb64(tag)
    except (ValueError, UnicodeDecodeError):
        return None


def read_token(token: str, *, purpose: str, key: bytes) -> str | None:
    """The subject of a valid token for `purpose`, or None (compared in constant time)."""
    split = _split(token)
    if split is None or not hmac.compare_digest(split[1], _tag(key, purpose, split[0])):
        return None
    return split[0]


MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id names no row and cannot be looked up


def _row_id(text: str) -> int | None:
    """The database id `text` spells, or None when it spells none (signed, yet not one of ours)."""
    if not text.isascii() or not text.isdigit() or int(text) > MAX_ID:
        return None
    return int(text)


class Holder(Protocol):
    """What a subscriber's tags are checked against: the store's row for the id named."""

    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def legacy_links(self) -> bool: ...


H = TypeVar("H", bound=Holder)


def _bound(subject: str, email: str) -> str:
    """What a subscriber's tag signs: the token's subject (the id, for VERP with the day)
    and the address, which holds no NUL."""
    return f"{subject}\x00{email}"


def subscriber_token(subscriber_id: int, *, email: str, purpose: str, key: bytes) -> str:
    """A link token for the subscriber `subscriber_id` whose address is `email`."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    subject = str(int(subscriber_id))
    return f"{_b64(subject.encode())}.{_b64(_tag(key, purpose, _bound(subject, email)))}"


def _signed_by(given: bytes, holder: Holder, *, subject: str, sign: Callable[[str], bytes]) -> bool:
    """Whether `given` is `holder`'s tag (`sign` of what was signed): over the token's
    subject and their address, or (a legacy holder) over the subject alone; each compared
    in constant time."""
    bound = hmac.compare_digest(given, sign(_bound(subject, holder.email)))
    legacy = holder.legacy_links and hmac.compare_digest(given, sign(subject))
    return bound or legacy


def _parts(token: str) -> tuple[int, str, bytes] | None:
    """(id, its spelling, tag) of a well-formed subscriber token, unchecked; else None."""
    split = _split(token)
    if split is None:
        return None
    subject, given = split
    subscriber_id = _row_id(subject)
    if subscriber_id is None or len(given) != TAG_BYTES:
        return None
    return subscriber_id, subject, given


def token_id(token: str) -> int | None:
    """The id a well-formed subscriber token names, *not yet checked* (None when malformed):
    lets a caller refuse junk before looking anyone up."""
    parts = _parts(token)
    return None if parts is None else parts[0]


def read_subscriber_token(
    token: str, *, purpose: str, key: bytes, find: Callable[[int], H | None]
) -> H | None:
    """The subscriber (as `find` returns it for the id the token names) whose valid token for
    `purpose` this is, or None: malformed, forged, another purpose, or another address's."""
    parts = _parts(token)
    if parts is None:
        return None
    subscriber_id, subject, given = parts
    holder = find(subscriber_id)
    if holder is None or not _signed_by(
        given, holder, subject=subject, sign=lambda signed: _tag(key, purpose, signed)
    ):
        return None
    return holder


def feed_token(subscriber_id: int, *, email: str, key: bytes) -> str:
    """The unguessable name of a subscriber's private feed (32 hex chars, 128 bits)."""
    return _tag(key, "feed", _bound(str(int(subscriber_id)), email)).hex()


def legacy_feed_token(subscriber_id: int, *, key: bytes) -> str:
    """The name a private feed had before tags held the address (still answered for
    `legacy_links` subscribers: readers keep a feed's URL for years)."""
    return _tag(key, "feed", str(subscriber_id)).hex()


def signup_token(signup_id: int, nonce: str, *, key: bytes) -> str:
    """The confirmation token of one sign-up: its id and its random nonce."""
    return make_token(f"{signup_id}:{nonce}" if nonce else signup_id, purpose="confirm", key=key)


def read_signup_token(token: str, *, key: bytes) -> tuple[int, str] | None:
    """(sign-up id, nonce) of a valid confirmation token, or None; "" for links without a nonce."""
    subject = read_token(token, purpose="confirm", key=key)
    if subject is None:
        return None
    number, _, nonce = subject.partition(":")
    signup_id = _row_id(number)
    return None if signup_id is None else (signup_id, nonce)


def _bounce_tag(key: bytes, signed: str) -> str:
    return _tag(key, "bounce", signed).hex()[:BOUNCE_TAG_HEX]


def bounce_token(subscriber_id: int, day: dt.date, *, email: str, key: bytes) -> str:
    """The VERP token of one subscriber's email of `day`: "17-20241213-<80-bit HMAC, hex>",
    the HMAC over id, day and address. Its tag also signs the email's Message-ID
    (`mail.message.message_id_for`), so a report quoting either names whose email it was."""
    subject = f"{int(subscriber_id)}-{day.year:04d}{day.month:02d}{day.day:02d}"
    return f"{subject}-{_bounce_tag(key, _bound(subject, email))}"


def bounce_tag_of(token: str) -> str:
    """The tag (last part) of a VERP token `bounce_token` made."""
    return token.rpartition("-")[2]


def read_bounce_token(
    token: str, *, key: bytes, find: Callable[[int], H | None]
) -> tuple[H, dt.date] | None:
    """(subscriber, day) of a valid VERP token (any case), the subscriber as `find` returns
    it for the token's id, or None."""
    found = BOUNCE_TOKEN.fullmatch(token.lower())
    if found is None:
        return None
    number, day, tag = found.groups()
    subscriber_id = _row_id(number)
    try:
        parsed = dt.datetime.strptime(day, "%Y%m%d").date()
    except ValueError:
        return None
    holder = None if subscriber_id is None else find(subscriber_id)
    if holder is None:
        return None
    signed = _signed_by(
        tag.encode(),
        holder,
        subject=f"{number}-{day}",
        sign=lambda text: _bounce_tag(key, text).encode(),
    )
    return (holder, parsed) if signed else None
