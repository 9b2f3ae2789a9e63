"""Signed subscriber tokens: round trip, purpose-bound, unforgeable, short."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from newsletter.model import Subscriber
from newsletter.tokens import (
    bounce_token,
    feed_token,
    legacy_feed_token,
    make_token,
    read_bounce_token,
    read_signup_token,
    read_subscriber_token,
    read_token,
    signup_token,
    subscriber_token,
    token_id,
)

from .conftest import TEST_KEY

KEY = TEST_KEY.encode()
ANA = Subscriber(id=17, email="ana@example.com")


def store_of(*subscribers: Subscriber) -> Callable[[int], Subscriber | None]:
    """A store's lookup by id, holding `subscribers`."""
    return {s.id: s for s in subscribers}.get


@given(st.integers(min_value=1, max_value=10**12))
def test_round_trip(subscriber_id: int) -> None:
    reader = Subscriber(id=subscriber_id, email="a.rather.long.address@example.com")
    token = subscriber_token(subscriber_id, email=reader.email, purpose="unsubscribe", key=KEY)
    assert token_id(token) == subscriber_id
    found = read_subscriber_token(token, purpose="unsubscribe", key=KEY, find=store_of(reader))
    assert found is reader
    assert len("https://papers.example.com/u/" + token) <= 70


def test_a_token_made_for_another_address_under_the_same_id_names_no_one() -> None:
    # Another database's email (same key): its subscriber 17 is someone else.
    theirs = Subscriber(id=17, email="bo@example.org")
    for purpose in ("unsubscribe", "preferences"):
        token = subscriber_token(17, email=theirs.email, purpose=purpose, key=KEY)
        assert read_subscriber_token(token, purpose=purpose, key=KEY, find=store_of(theirs))
        assert read_subscriber_token(token, purpose=purpose, key=KEY, find=store_of(ANA)) is None
    assert feed_token(17, email=ANA.email, key=KEY) != feed_token(17, email=theirs.email, key=KEY)
    day = dt.date(2024, 12, 13)
    bounce = bounce_token(17, day, email=theirs.email, key=KEY)
    assert read_bounce_token(bounce, key=KEY, find=store_of(theirs)) == (theirs, day)
    assert read_bounce_token(bounce, key=KEY, find=store_of(ANA)) is None


def test_the_id_only_form_holds_for_legacy_subscribers_alone() -> None:
    # Links sent before tags held the address signed the id alone (make_token, "bounce" over
    # the id and day): honoured for the subscribers of that time, no one added since.
    old = Subscriber(id=17, email="ana@example.com", legacy_links=True)
    link = make_token(17, purpose="unsubscribe", key=KEY)
    assert read_subscriber_token(link, purpose="unsubscribe", key=KEY, find=store_of(old)) is old
    assert read_subscriber_token(link, purpose="unsubscribe", key=KEY, find=store_of(ANA)) is None
    current = subscriber_token(17, email=old.email, purpose="unsubscribe", key=KEY)
    assert read_subscriber_token(current, purpose="unsubscribe", key=KEY, find=store_of(old))
    day = dt.date(2024, 12, 13)
    legacy_tag = hmac.new(KEY, b"bounce\x0017-20241213", hashlib.sha256).hexdigest()[:20]
    bounce = f"17-20241213-{legacy_tag}"
    assert read_bounce_token(bounce, key=KEY, find=store_of(old)) == (old, day)
    assert read_bounce_token(bounce, key=KEY, find=store_of(ANA)) is None
    assert legacy_feed_token(17, key=KEY) != feed_token(17, email=old.email, key=KEY)


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

    email = "김@example.com"
    assert legacy_feed_token(number, key=key) == stdlib(f"feed\x00{number}")[:16].hex()
    expected_feed = stdlib(f"feed\x00{number}\x00{email}")[:16].hex()
    assert feed_token(number, email=email, key=key) == expected_feed
    head = base64.urlsafe_b64encode(str(number).encode()).rstrip(b"=").decode()
    tag = base64.urlsafe_b64encode(stdlib(f"preferences\x00{number}")[:16]).rstrip(b"=")
    assert make_token(number, purpose="preferences", key=key) == f"{head}.{tag.decode()}"
    tag = base64.urlsafe_b64encode(stdlib(f"preferences\x00{number}\x00{email}")[:16])
    made = subscriber_token(number, email=email, purpose="preferences", key=key)
    assert made == f"{head}.{tag.rstrip(b'=').decode()}"
    subject = f"{number}-{day:%Y%m%d}"
    expected = subject + "-" + stdlib(f"bounce\x00{subject}\x00{email}").hex()[:20]
    assert bounce_token(number, day, email=email, key=key) == expected


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
    token = feed_token(7, email=ANA.email, key=KEY)
    assert len(token) == 32 and int(token, 16) >= 0
    assert token != feed_token(7, email=ANA.email, key=b"other")
    assert token != feed_token(8, email=ANA.email, key=KEY)


def _variants() -> list[str]:
    token = subscriber_token(1, email=ANA.email, purpose="unsubscribe", key=KEY)
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
    reader = Subscriber(id=1, email=ANA.email, legacy_links=True)
    canonical = subscriber_token(1, email=reader.email, purpose="unsubscribe", key=KEY)
    find = store_of(reader)
    assert read_subscriber_token(canonical, purpose="unsubscribe", key=KEY, find=find) is reader
    assert read_subscriber_token(token, purpose="unsubscribe", key=KEY, find=find) is None
    assert token_id(token) is None or token_id(token) == 1  # malformed, or the tag's bits


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
    find = store_of(ANA, Subscriber(id=18, email="bo@example.org"))
    token = bounce_token(17, day, email=ANA.email, key=key)
    assert re.fullmatch(r"17-20241213-[0-9a-f]{20}", token)
    assert read_bounce_token(token, key=key, find=find) == (ANA, day)
    # A mail system changed the case.
    assert read_bounce_token(token.upper(), key=key, find=find) == (ANA, day)
    other_key = b"another key of forty-three characters......"
    assert read_bounce_token(token, key=other_key, find=find) is None
    assert read_bounce_token(token.replace("17-", "18-"), key=key, find=find) is None
    assert read_bounce_token(token.replace("-20241213-", "-20241214-"), key=key, find=find) is None
    assert read_bounce_token(token[:-1], key=key, find=find) is None
    assert read_bounce_token("17-20241313-" + token[-20:], key=key, find=find) is None


@given(st.text(max_size=300))
@example("MQ.")  # a bare id, no tag
@example("OTk5OTk5OTk5OTk5OTk5OTk5OTk5.AAAAAAAAAAAAAAAAAAAAAA")  # an id past SQLite's integers
@example("MDA3.AAAAAAAAAAAAAAAAAAAAAA")  # "007": digits, yet not how an id is written
def test_any_text_as_a_token_is_refused_without_error(text: str) -> None:
    asked: list[int] = []

    def find(subscriber_id: int) -> Subscriber | None:
        asked.append(subscriber_id)
        return Subscriber(id=subscriber_id, email=ANA.email, legacy_links=True)

    assert read_subscriber_token(text, purpose="unsubscribe", key=KEY, find=find) is None
    assert read_bounce_token(text, key=KEY, find=find) is None
    # The store is asked only about ids SQLite can hold, named by a well-formed token.
    assert all(0 <= i < 2**63 for i in asked)
    assert token_id(text) is None or asked
