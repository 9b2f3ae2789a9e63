"""Signed subscriber tokens: round trip, purpose-bound, unforgeable, short."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from newsletter.tokens import (
    bounce_token,
    feed_token,
    make_token,
    read_bounce_token,
    read_signup_token,
    read_subscriber_token,
    read_token,
    signup_token,
)

from .conftest import TEST_KEY

KEY = TEST_KEY.encode()


@given(st.integers(min_value=1, max_value=10**12))
def test_round_trip(subscriber_id: int) -> None:
    token = make_token(subscriber_id, purpose="unsubscribe", key=KEY)
    assert read_subscriber_token(token, purpose="unsubscribe", key=KEY) == subscriber_id
    assert len("https://papers.example.com/u/" + token) <= 70


@example(key=b"k" * 64, number=7, day=dt.date(2024, 12, 13))  # one SHA-256 block exactly
@example(key=b"k" * 65, number=7, day=dt.date(2024, 12, 13))  # longer: hashed first
@example(key=bytes(range(200)), number=10**12, day=dt.date(2999, 12, 31))
@given(
    st.binary(min_size=0, max_size=200),  # keys shorter and longer than SHA-256's 64-byte block
    st.integers(min_value=0, max_value=10**12),
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2999, 12, 31)),
)
def test_tags_are_hmac_sha256_as_the_standard_library_computes_it(
    key: bytes, number: int, day: dt.date
) -> None:
    def stdlib(message: str) -> bytes:
        return hmac.new(key, message.encode(), hashlib.sha256).digest()

    assert feed_token(number, key=key) == stdlib(f"feed\x00{number}")[:16].hex()
    head = base64.urlsafe_b64encode(str(number).encode()).rstrip(b"=").decode()
    tag = base64.urlsafe_b64encode(stdlib(f"preferences\x00{number}")[:16]).rstrip(b"=")
    assert make_token(number, purpose="preferences", key=key) == f"{head}.{tag.decode()}"
    subject = f"{number}-{day:%Y%m%d}"
    expected = subject + "-" + stdlib(f"bounce\x00{subject}").hex()[:20]
    assert bounce_token(number, day, key=key) == expected


def test_wrong_purpose_key_or_tampering_rejected() -> None:
    token = make_token(42, purpose="unsubscribe", key=KEY)
    assert read_token(token, purpose="preferences", key=KEY) is None
    assert read_token(token, purpose="unsubscribe", key=b"other") is None
    head, tag = token.split(".")
    forged = make_token(43, purpose="unsubscribe", key=KEY).split(".")[0] + "." + tag
    assert read_token(forged, purpose="unsubscribe", key=KEY) is None
    for junk in ("", ".", "a.b.c", "!!!.???", head, "x" * 500):
        assert read_token(junk, purpose="unsubscribe", key=KEY) is None


def test_feed_token_is_128_bits_and_key_bound() -> None:
    token = feed_token(7, key=KEY)
    assert len(token) == 32 and int(token, 16) >= 0
    assert token != feed_token(7, key=b"other") and token != feed_token(8, key=KEY)


def _variants() -> list[str]:
    token = make_token(1, purpose="unsubscribe", key=KEY)
    head, tag = token.split(".")
    assert head == "MQ"  # "1"
    spare = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other_last = spare[spare.index(tag[-1]) ^ 1]  # same 128 bits, a spare low bit set
    return [
        f"MQ==.{tag}",
        f"MQ.{tag}==",
        f"MQ.{tag}====",
        f"!!!!MQ.{tag}",
        f"MQ.{tag[:10]}!!!!{tag[10:]}",
        f"MR.{tag}",  # decodes to "1" too, with a spare bit set
        f"MQ.{tag[:-1]}{other_last}",
    ]


@pytest.mark.parametrize("token", _variants())
def test_only_the_canonical_spelling_is_accepted(token: str) -> None:
    canonical = make_token(1, purpose="unsubscribe", key=KEY)
    assert read_token(canonical, purpose="unsubscribe", key=KEY) == "1"
    assert read_token(token, purpose="unsubscribe", key=KEY) is None
    assert read_subscriber_token(token, purpose="unsubscribe", key=KEY) is None


def test_signup_token_names_id_and_nonce() -> None:
    token = signup_token(12, "n0nce-of-16chars", key=KEY)
    assert read_signup_token(token, key=KEY) == (12, "n0nce-of-16chars")
    assert read_signup_token(signup_token(12, "", key=KEY), key=KEY) == (12, "")
    assert read_signup_token(token, key=b"other") is None
    assert read_signup_token(make_token("x:y", purpose="confirm", key=KEY), key=KEY) is None
    assert len("https://papers.example.com/confirm/" + token) <= 100


def test_bounce_tokens_name_subscriber_and_day_and_cannot_be_forged() -> None:
    key = TEST_KEY.encode()
    day = dt.date(2024, 12, 13)
    token = bounce_token(17, day, key=key)
    assert re.fullmatch(r"17-20241213-[0-9a-f]{20}", token)
    assert read_bounce_token(token, key=key) == (17, day)
    assert read_bounce_token(token.upper(), key=key) == (17, day)  # a mail system changed case
    assert read_bounce_token(token, key=b"another key of forty-three characters......") is None
    assert read_bounce_token(token.replace("17-", "18-"), key=key) is None
    assert read_bounce_token(token.replace("-20241213-", "-20241214-"), key=key) is None
    assert read_bounce_token(token[:-1], key=key) is None
