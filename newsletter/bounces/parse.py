"""What a message in the bounce mailbox says: a bounce, a complaint, or nothing for us. Pure.

Recognised, in this order:
- RFC 5965 ARF feedback reports (multipart/report; report-type=feedback-report): a complaint;
- RFC 3464 DSNs (multipart/report; report-type=delivery-status): per recipient, Action failed
  with Status 5.x.x is a hard bounce, 4.x.x a soft one; Action delayed, delivered, relayed or
  expanded says nothing final and is ignored;
- auto-replies (RFC 3834 Auto-Submitted, X-Autoreply, Precedence auto_reply, vacation
  subjects): ignored;
- anything else goes to flufl.bounce, which knows the non-standard formats of many old MTAs;
  an address it finds is a hard bounce. What none of these recognise is `unknown`.

Who it is about comes with it: VERP tokens from the addresses it was delivered to, the
Message-ID of our message in the returned headers, and the failed recipient address.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import logging
import re
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from flufl.bounce import all_failures

from ..text import clean_text

# flufl.bounce logs a traceback for each of its detectors that trips over an odd message (a
# From header of raw 8-bit bytes is enough) and goes on with the next: a finding of no
# interest, which would otherwise reach stderr or the service's log as a traceback.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

Kind = Literal["hard", "soft", "complaint", "ignored", "unknown"]
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_VERP = re.compile(r"\+([0-9A-Za-z-]+)@")
_ANGLE = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_VACATION = re.compile(
    r"^(?:auto(?:matic)?[ -]?(?:reply|response)|out of (?:the )?office|vacation|absence)",
    re.IGNORECASE,
)
# Headers the delivering MTA or the mailbox sets to the address a message was delivered to.
_DELIVERED = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


@dataclass(frozen=True, slots=True)
class Report:
    """One message of the bounce mailbox, read."""

    report_id: str  # its Message-ID, else a hash of its bytes: recorded so it counts once
    kind: Kind
    status: str = ""  # enhanced status code of a bounce, e.g. "5.1.1"
    diagnostic: str = ""  # the remote server's words, one line
    recipients: tuple[str, ...] = ()  # the failed or complaining addresses
    tokens: tuple[str, ...] = ()  # VERP tokens of the addresses it was delivered to
    message_ids: tuple[str, ...] = ()  # Message-IDs of the returned message (ours, maybe)


def verp_tokens(*addresses: str) -> tuple[str, ...]:
    """The VERP tokens in `addresses` ("bounces+TOKEN@example.com")."""
    return tuple(token for address in addresses for token in _VERP.findall(address))


def _bare(value: str | None) -> str:
    """An address or id from a header value: angle brackets and "rfc822;" type prefixes gone."""
    text = (value or "").strip()
    if ";" in text:
        text = text.split(";", 1)[1].strip()
    found = _ANGLE.search(text)
    return (found.group(1) if found else text).strip()


# Report ids a mailbox message may not claim: webhooks' events and our own forms share the
# table's one key, so a message calling itself "postmark:4242" would make that event "seen".
_RESERVED_IDS = ("postmark:", "ses:", "erased:", "sha256:", "mail:")


def _report_id(msg: Message, data: bytes) -> str:
    own = _bare(str(msg.get("Message-ID", "") or ""))
    if not own:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    if own.lower().startswith(_RESERVED_IDS):
        own = "mail:" + own
    return own[:300]


def diagnostic_text(text: str, *, limit: int) -> str:
    """The remote server's words, one line, at most `limit` characters, cut at a space (so
    no address is kept cut in two, where an erasure could not find it)."""
    text = clean_text(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else "").rstrip() + "…"


def _report_type(msg: Message) -> str:
    if msg.get_content_type() != "multipart/report":
        return ""
    return str(msg.get_param("report-type", "") or "").lower()


def _fields(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the stdlib parses delivery-status into blocks
        return [block for block in payload if isinstance(block, Message)]
    text = part.get_payload(decode=True) or b""
    parsed = email.message_from_bytes(bytes(text).replace(b"\r\n", b"\n").strip() + b"\n\n")
    return [parsed]


def _returned(msg: Message) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Message-IDs and VERP tokens (its Return-Path) of the returned message or headers."""
    found: list[str] = []
    tokens: list[str] = []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/rfc822-headers"):
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message):
                found.append(_bare(str(inner.get("Message-ID", ""))))
                tokens += verp_tokens(str(inner.get("Return-Path", "")))
        elif kind == "text/rfc822-headers":
            headers = email.message_from_bytes(bytes(part.get_payload(decode=True) or b""))
            found.append(_bare(str(headers.get("Message-ID", ""))))
            tokens += verp_tokens(str(headers.get("Return-Path", "")))
    return tuple(dict.fromkeys(f for f in found if f)), tuple(dict.fromkeys(tokens))


def _tokens(msg: Message) -> tuple[str, ...]:
    found = verp_tokens(*(str(v) for name in _DELIVERED for v in msg.get_all(name, []) or []))
    return tuple(dict.fromkeys(found))


def _is_auto_reply(msg: Message) -> bool:
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    return (
        (auto != "" and not auto.startswith("no"))
        or msg.get("X-Autoreply") is not None
        or msg.get("X-Autorespond") is not None
        or str(msg.get("Precedence", "")).strip().lower() == "auto_reply"
        or bool(_VACATION.match(str(msg.get("Subject", "")).strip()))
    )


def _delivery_status(msg: Message, base: Report) -> Report:
    part = next((p for p in msg.walk() if p.get_content_type() == "message/delivery-status"), None)
    if part is None:
        return dataclasses.replace(base, kind="unknown")
    blocks = _fields(part)
    failed: list[tuple[str, str, str]] = []  # (status, diagnostic, recipient)
    for block in blocks[1:] or blocks:  # the first block is per message, the rest per recipient
        action = str(block.get("Action", "")).strip().lower()
        status_found = _STATUS.search(str(block.get("Status", "")))
        if action != "failed" or status_found is None:
            continue  # delayed, delivered, relayed, expanded: nothing final
        recipient = _bare(
            str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
        )
        diagnostic = diagnostic_text(_bare_type(str(block.get("Diagnostic-Code", ""))), limit=500)
        failed.append((status_found.group(0), diagnostic, recipient))
    if not failed:
        return dataclasses.replace(base, kind="ignored")
    hard = [f for f in failed if f[0].startswith("5")]
    status, diagnostic, _ = (hard or failed)[0]
    return dataclasses.replace(
        base,
        kind="hard" if hard else "soft",
        status=status,
        diagnostic=diagnostic,
        recipients=tuple(dict.fromkeys(f[2] for f in (hard or failed) if f[2])),
    )


def _bare_type(value: str) -> str:
    """A Diagnostic-Code without its "smtp;" type."""
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _feedback(msg: Message, base: Report) -> Report:
    part = next((p for p in msg.walk() if p.get_content_type() == "message/feedback-report"), None)
    recipients: list[str] = []
    feedback = ""
    if part is not None:
        for block in _fields(part):
            feedback = feedback or str(block.get("Feedback-Type", "")).strip().lower()
            for value in block.get_all("Original-Rcpt-To", []) or []:
                recipients.append(_bare(str(value)))
    return dataclasses.replace(
        base,
        kind="complaint",
        diagnostic=diagnostic_text(feedback or "abuse", limit=100),
        recipients=tuple(r for r in recipients if r),
    )


def read_report(data: bytes) -> Report:
    """What one message of the bounce mailbox says (never raises on malformed input)."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    returned_ids, returned_tokens = _returned(msg)
    base = Report(
        report_id=_report_id(msg, data),
        kind="unknown",
        tokens=tuple(dict.fromkeys(_tokens(msg) + returned_tokens)),
        message_ids=returned_ids,
    )
    report_type = _report_type(msg)
    if report_type == "feedback-report":
        return _feedback(msg, base)
    if report_type == "delivery-status":
        return _delivery_status(msg, base)
    if _is_auto_reply(msg):
        return dataclasses.replace(base, kind="ignored")
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a third-party scanner on hostile input: no finding, not a crash
        temporary, permanent = frozenset(), frozenset()
    addresses = sorted(
        a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in permanent
    )
    if addresses:
        return dataclasses.replace(base, kind="hard", status="5.0.0", recipients=tuple(addresses))
    if temporary:
        return dataclasses.replace(base, kind="ignored")  # a warning: the MTA is still trying
    return base
