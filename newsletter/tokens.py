"""Signed, URL-safe tokens for subscriber links (unsubscribe, preferences, feeds, sign-up).

A token names a subscriber id (or a sign-up's id and nonce) and a purpose and carries an HMAC-SHA256 tag truncated to
128 bits, so it cannot be forged or guessed without the secret key, and it is short enough
to keep `List-Unsubscribe` URLs under 70 characters.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
from typing import TYPE_CHECKING

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


def read_token(token: str, *, purpose: str, key: bytes) -> str | None:
    """The subject of a valid token for `purpose`, or None (compared in constant time)."""
    if len(token) > 200 or token.count(".") != 1:
        return None
    head, tag = token.split(".")
    try:
        subject = _unb64(head).decode("utf-8")
        given = _unb64(tag)
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(given, _tag(key, purpose, subject)):
        return None
    return subject


MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id names no row and cannot be looked up


def _row_id(text: str) -> int | None:
    """The database id `text` spells, or None when it spells none (signed, yet not one of ours)."""
    if not text.isascii() or not text.isdigit() or int(text) > MAX_ID:
        return None
    return int(text)


def read_subscriber_token(token: str, *, purpose: str, key: bytes) -> int | None:
    """The subscriber id of a valid token, or None."""
    subject = read_token(token, purpose=purpose, key=key)
    return None if subject is None else _row_id(subject)


def feed_token(subscriber_id: int, *, key: bytes) -> str:
    """The unguessable file name of a subscriber's private feed (32 hex chars, 128 bits)."""
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


def bounce_token(subscriber_id: int, day: dt.date, *, key: bytes) -> str:
    """The VERP token of one subscriber's email of `day`: "17-20241213-<80-bit HMAC, hex>"."""
    subject = f"{int(subscriber_id)}-{day.year:04d}{day.month:02d}{day.day:02d}"
    return f"{subject}-{_tag(key, 'bounce', subject).hex()[:BOUNCE_TAG_HEX]}"


def read_bounce_token(token: str, *, key: bytes) -> tuple[int, dt.date] | None:
    """(subscriber id, day) of a valid VERP token (any case), or None."""
    found = BOUNCE_TOKEN.fullmatch(token.lower())
    if found is None:
        return None
    number, day, tag = found.groups()
    expected = _tag(key, "bounce", f"{number}-{day}").hex()[:BOUNCE_TAG_HEX]
    if not hmac.compare_digest(tag, expected):
        return None
    subscriber_id = _row_id(number)
    try:
        parsed = dt.datetime.strptime(day, "%Y%m%d").date()
    except ValueError:
        return None
    return None if subscriber_id is None else (subscriber_id, parsed)
