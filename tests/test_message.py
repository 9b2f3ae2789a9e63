"""Message assembly: headers, MIME structure and the base64 splice, parsed back with the stdlib."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from newsletter.config import Settings
from newsletter.errors import ConfigError, SubscriberError
from newsletter.mail.message import (
    build_message,
    digest_headers,
    format_address,
    format_date,
    list_unsubscribe,
    message_domain,
    message_id_for,
    simple_message,
)
from newsletter.mail.splice import SplicedBody, base64_lines
from newsletter.text import clean_text

from .conftest import PINNED_NOW, TEST_KEY

SETTINGS = Settings().replace(
    base_url="https://papers.example.com",
    from_address="Daily Papers <digest@papers.example.com>",
    reply_to="editor@papers.example.com",
    secret_key=TEST_KEY,
)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def same_name(parsed: str, name: str) -> bool:
    """Whether the stdlib read back `name` (cleaned and capped as format_address does).

    A long non-ASCII name takes several encoded-words; RFC 2047 readers drop the folding
    space between them, but the stdlib's address parser keeps it (on its own output too).
    """
    expected = clean_text(name, limit=64)
    if expected.isascii() or len(expected.encode()) <= 45:
        return parsed == expected
    return parsed.replace(" ", "") == expected.replace(" ", "")


def assert_wire_format(data: bytes) -> None:
    """CRLF everywhere, no bare CR or LF, no line over 998 bytes, headers ASCII."""
    assert data.endswith(b"\r\n")
    lines = data.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert max(len(line) for line in lines) <= 998
    head = data.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")  # raises if a header holds raw 8-bit bytes


def test_simple_message_text_then_html_with_every_header() -> None:
    data = simple_message(
        settings=SETTINGS,
        to="김민지 <minji@example.com>",
        subject="가입을 확인해 주세요 — Daily Papers",
        text="아래 링크를 누르면 구독이 시작됩니다.\nhttps://papers.example.com/confirm/x",
        html="<p>아래 링크를 누르면 구독이 시작됩니다.</p>",
        message_id="confirm.5@papers.example.com",
        clock=lambda: PINNED_NOW,
    )
    assert_wire_format(data)
    msg = parse(data)
    assert msg["From"] == "Daily Papers <digest@papers.example.com>"
    assert msg["Reply-To"] == "editor@papers.example.com"
    (to,) = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("김민지", "minji@example.com")
    assert msg["Subject"] == "가입을 확인해 주세요 — Daily Papers"
    assert msg["Date"] == "Fri, 13 Dec 2024 09:00:00 +0000"
    assert msg["Message-ID"] == "<confirm.5@papers.example.com>"
    assert msg["Bcc"] is None and msg["List-Unsubscribe"] is None
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert "구독이 시작됩니다" in parts[0].get_content()
    assert not msg.defects and not any(p.defects for p in parts)


def test_simple_message_text_only_and_header_injection() -> None:
    data = simple_message(
        settings=SETTINGS,
        to="a@example.com",
        subject="line one\r\nBcc: victim@example.com",
        text="hello",
        message_id="<x.1@papers.example.com>",
        clock=lambda: PINNED_NOW,
    )
    msg = parse(data)
    assert msg.get_content_type() == "text/plain"
    assert msg["Subject"] == "line one Bcc: victim@example.com"
    assert msg["Bcc"] is None and b"\r\nBcc:" not in data
    with pytest.raises(SubscriberError):
        simple_message(
            settings=SETTINGS,
            to="a@example.com\r\nBcc: victim@example.com",
            subject="s",
            text="t",
            message_id="x.1@papers.example.com",
            clock=lambda: PINNED_NOW,
        )
    with pytest.raises(ConfigError):
        simple_message(
            settings=SETTINGS,
            to="a@example.com",
            subject="s",
            text="t",
            message_id="no at sign",
            clock=lambda: PINNED_NOW,
        )


def test_message_id_names_edition_day_subscriber_and_tag_on_our_domain() -> None:
    date = dt.date(2024, 12, 13)
    domain = message_domain(SETTINGS)
    assert domain == "papers.example.com"
    tag = "0123456789abcdef0123"
    first = message_id_for(date=date, subscriber_id=17, domain=domain, tag=tag)
    assert first == "digest.2024-12-13.17.0123456789abcdef0123@papers.example.com"
    assert first != message_id_for(date=date, subscriber_id=18, domain=domain, tag=tag)
    weekly = message_id_for(date=date, subscriber_id=17, domain=domain, tag=tag, edition="weekly")
    assert weekly == "weekly.2024-12-13.17.0123456789abcdef0123@papers.example.com"
    # An IP base URL is no domain: the From address's domain is used instead.
    local = Settings().replace(base_url="http://127.0.0.1:8000", from_address="x <d@mail.test>")
    assert message_domain(local) == "mail.test"


def test_date_is_utc_with_plus_zero() -> None:
    seoul = dt.timezone(dt.timedelta(hours=9))
    assert format_date(dt.datetime(2024, 12, 13, 18, 0, tzinfo=seoul)).endswith("09:00:00 +0000")
    assert format_date(dt.datetime(2024, 12, 13, 9, 0)) == "Fri, 13 Dec 2024 09:00:00 +0000"


def test_list_unsubscribe_is_short_and_never_encoded() -> None:
    url = "https://papers.example.com/u/MTc.5VERm9bZPGQgxWuwPkDcrw"
    value = list_unsubscribe(url=url, mailto="unsubscribe@papers.example.com")
    assert value == f"<{url}>, <mailto:unsubscribe@papers.example.com?subject=unsubscribe>"
    with pytest.raises(ConfigError, match="70 characters"):
        list_unsubscribe(url="https://" + "x" * 60 + ".example.com/u/t", mailto="")
    with pytest.raises(ConfigError):
        list_unsubscribe(url=url, mailto="a@b.com>, <https://evil.example")
    # Even on a line longer than 78 characters, the stdlib build keeps it verbatim.
    data = build_message(
        settings=SETTINGS,
        to="a@example.com",
        subject="s",
        text="t",
        html=None,
        message_id="m.1@papers.example.com",
        date=PINNED_NOW,
        headers=digest_headers(settings=SETTINGS, unsubscribe_url=url, date=PINNED_NOW.date()),
    )
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = head.replace("\r\n ", " ")
    line = next(h for h in unfolded.split("\r\n") if h.startswith("List-Unsubscribe:"))
    assert "=?" not in line and f"<{url}>" in line
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in head
    assert parse(data)["List-Id"] == "Daily Papers <daily-papers.localhost>"


@pytest.mark.parametrize(
    ("name", "expected_form"),
    [
        ("", "a@example.com"),
        ("Alex Chen", "Alex Chen <a@example.com>"),
        ('Eve "<script>" O\'Neil, Jr.', None),
        ("김민지", None),
        ("=?utf-8?q?fake?=", None),
        ("x" * 200, None),
    ],
)
def test_format_address_reads_back(name: str, expected_form: str | None) -> None:
    value = format_address(name=name, address="a@example.com")
    if expected_form is not None:
        assert value == expected_form
    msg = parse(f"To: {value}\r\n\r\nbody\r\n".encode())
    (addr,) = msg["To"].addresses
    assert same_name(addr.display_name, name) and addr.addr_spec == "a@example.com"
    assert all(len(line) <= 998 for line in value.split("\r\n"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_format_address_any_name_reads_back_unchanged(name: str) -> None:
    value = format_address(name=name, address="someone@example.com")
    assert "\n" not in value.replace("\r\n ", "")  # only folding line breaks
    msg = parse(f"To: {value}\r\n\r\nbody\r\n".encode())
    (addr,) = msg["To"].addresses
    assert addr.addr_spec == "someone@example.com"
    assert same_name(addr.display_name, name)


@pytest.mark.parametrize(
    "address",
    ["a@example.com\r\nBcc: x@y.z", "a b@example.com", "<a@example.com>", "ä@example.com"],
)
def test_format_address_rejects_unsafe_addresses(address: str) -> None:
    with pytest.raises(SubscriberError):
        format_address(name="x", address=address)


_PIECES = st.lists(
    st.tuples(st.text(alphabet="ab한\n\r<&", max_size=20), st.sampled_from(["@@a@@", "@@b@@", ""])),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(
    pieces=_PIECES,
    tail=st.text(max_size=300),
    a=st.text(max_size=120),
    b=st.text(alphabet="xyz가", max_size=3),
)
def test_spliced_body_decodes_to_the_filled_text(
    pieces: list[tuple[str, str]], tail: str, a: str, b: str
) -> None:
    body = "".join(text + marker for text, marker in pieces) + tail
    assume("@@" not in body.replace("@@a@@", "").replace("@@b@@", ""))
    spliced = SplicedBody(body, {"@@a@@": "a", "@@b@@": "b"})
    values = {"a": a.encode("utf-8", "surrogatepass"), "b": b.encode()}
    out = b"".join(spliced.fill(values))
    filled = {"@@a@@": values["a"], "@@b@@": values["b"], "": b""}
    expected = b"".join(
        text.encode("utf-8", "surrogatepass") + filled[marker] for text, marker in pieces
    ) + tail.encode("utf-8", "surrogatepass")
    lines = out.split(b"\r\n")
    assert lines[-1] == b""  # every line CRLF-terminated
    assert all(len(line) <= 76 for line in lines)
    joined = b"".join(lines)
    assert b"=" not in joined.rstrip(b"=")  # padding only at the very end
    assert binascii.a2b_base64(joined, strict_mode=True) == expected


@example(b"x" * 57)  # one full line
@example(b"x" * 58)  # a second line begins
@example(bytes(range(256)) * 3)
@given(st.binary(min_size=1, max_size=700))
def test_base64_lines_are_the_standard_encoding_in_crlf_lines_of_76(data: bytes) -> None:
    assert base64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")
