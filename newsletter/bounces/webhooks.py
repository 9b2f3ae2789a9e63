"""Bounce and complaint webhooks from Postmark and Amazon SES, read into Reports. Pure.

Each event becomes the same `Report` a bounce mailbox yields, so `apply_report` treats it the
same way: a hard bounce marks the subscriber bounced, soft ones count, a complaint
unsubscribes. The report id is the provider's own event id ("postmark:<ID>",
"ses:<feedbackId>:<address>"), so a webhook delivered twice counts once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import Any

from ..errors import WebhookError, WebhookRefused
from .parse import Kind, Report, diagnostic_text, verp_tokens

# Postmark's bounce types (https://postmarkapp.com/developer/api/bounce-api#bounce-types).
_POSTMARK_KINDS: dict[str, Kind] = {
    "HardBounce": "hard",
    "BadEmailAddress": "hard",
    "SoftBounce": "soft",
    "Transient": "soft",
    "DnsError": "soft",
    "Blocked": "soft",
    "SpamNotification": "soft",  # refused by the receiver's spam filter: may pass next time
    "SpamComplaint": "complaint",
    "Unsubscribe": "complaint",  # the recipient replied "unsubscribe"
}
# SES bounceType: Permanent is final; Transient and Undetermined may pass later.
_SES_BOUNCES: dict[str, Kind] = {"Permanent": "hard", "Transient": "soft", "Undetermined": "soft"}
_DIAGNOSTIC = 300  # characters of the remote server's words kept
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")  # Postmark's are numbers


def json_object(body: bytes, *, source: str) -> dict[str, Any]:
    """The JSON object in a webhook body; WebhookError naming `source` otherwise."""
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookError(f"{source}: the body is not JSON") from None
    except ValueError:  # an integer of 4,300+ digits: int() refuses to convert it
        raise WebhookError(f"{source}: the body's JSON holds a number too long to read") from None
    except RecursionError:  # nested deeper than the parser goes
        raise WebhookError(f"{source}: the body's JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise WebhookError(f"{source}: the body is not a JSON object")
    try:  # "\ud800" is valid JSON but no text: encoding it later (signature, SQLite) would raise
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise WebhookError(f"{source}: the body's JSON holds a lone surrogate (\\ud800)") from None
    return data


def _text(data: dict[str, Any], name: str, *, source: str, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise WebhookError(f"{source}: field {name} is missing or not a string")
    return value


def check_basic_auth(header: str | None, *, user: str, password: str) -> None:
    """WebhookRefused unless an Authorization header carries `user` and `password`."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        raise WebhookRefused("Postmark: no basic credentials")
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise WebhookRefused("Postmark: credentials are not base64") from None
    given_user, _, given_password = given.partition(":")
    # Both compared whatever the first gives, in constant time: nothing is learnt from timing.
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    if not (user_ok and password_ok):
        raise WebhookRefused("Postmark: wrong user name or password")


def postmark_report(body: bytes) -> Report:
    """The Report of one Postmark Bounce or SpamComplaint webhook; WebhookError if malformed."""
    source = "Postmark"
    data = json_object(body, source=source)
    event_id = data.get("ID")
    if isinstance(event_id, bool) or not isinstance(event_id, int | str) or event_id == "":
        raise WebhookError(f"{source}: field ID is missing")
    if not _EVENT_ID.fullmatch(str(event_id)):
        raise WebhookError(f"{source}: field ID is not an event id (letters, digits, -, _)")
    record_type = data.get("RecordType", "Bounce")
    if record_type not in ("Bounce", "SpamComplaint"):
        raise WebhookError(f"{source}: RecordType {str(record_type)[:40]!r} is not a bounce")
    kind = _POSTMARK_KINDS.get(_text(data, "Type", source=source), "ignored")
    email = _text(data, "Email", source=source).strip()
    details = _text(data, "Details", source=source, required=False)
    description = _text(data, "Description", source=source, required=False)
    return Report(
        report_id=f"postmark:{event_id}",
        kind="complaint" if record_type == "SpamComplaint" else kind,
        diagnostic=diagnostic_text(details or description, limit=_DIAGNOSTIC),
        recipients=(email,),
    )


def _mail_ids(mail: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(VERP tokens, our Message-IDs) of the `mail` object SES returns with each event."""
    if not isinstance(mail, dict):
        return (), ()
    source = mail.get("source")
    tokens = verp_tokens(source) if isinstance(source, str) else ()
    ids: list[str] = []
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        ids.append(common["messageId"])
    for header in mail.get("headers") or []:
        if (
            isinstance(header, dict)
            and str(header.get("name", "")).lower() == "message-id"
            and isinstance(header.get("value"), str)
        ):
            ids.append(header["value"])
    return tokens, tuple(dict.fromkeys(i.strip().strip("<>") for i in ids if i.strip()))


def _recipients(event: dict[str, Any], name: str, *, source: str) -> list[dict[str, Any]]:
    found = event.get(name)
    if not isinstance(found, list) or not found:
        raise WebhookError(f"{source}: {name} is missing or empty")
    for item in found:
        if not isinstance(item, dict) or not isinstance(item.get("emailAddress"), str):
            raise WebhookError(f"{source}: an item of {name} has no emailAddress")
    return found


def ses_reports(message: str) -> list[Report]:
    """The Reports of one SES notification (the SNS Message): one per bounced or complaining
    recipient; none for deliveries and other event types. WebhookError if malformed."""
    source = "SES"
    data = json_object(message.encode("utf-8"), source=source)
    kind_name = data.get("notificationType", data.get("eventType"))
    tokens, message_ids = _mail_ids(data.get("mail"))
    if kind_name == "Bounce":
        event = data.get("bounce")
        if not isinstance(event, dict):
            raise WebhookError(f"{source}: a Bounce without a bounce object")
        feedback = _text(event, "feedbackId", source=source)
        kind = _SES_BOUNCES.get(str(event.get("bounceType")), "soft")
        people = _recipients(event, "bouncedRecipients", source=source)
    elif kind_name == "Complaint":
        event = data.get("complaint")
        if not isinstance(event, dict):
            raise WebhookError(f"{source}: a Complaint without a complaint object")
        feedback = _text(event, "feedbackId", source=source)
        kind = "complaint"
        people = _recipients(event, "complainedRecipients", source=source)
    elif isinstance(kind_name, str):
        return []  # Delivery, Send, Open...: nothing to apply
    else:
        raise WebhookError(f"{source}: no notificationType")
    reports = []
    for person in people:
        address = person["emailAddress"].strip()
        status = person.get("status")
        diagnostic = person.get("diagnosticCode")
        reports.append(
            Report(
                report_id=f"ses:{feedback}:{address.lower()}"[:300],
                kind=kind,
                status=status if isinstance(status, str) else "",
                diagnostic=diagnostic_text(diagnostic, limit=_DIAGNOSTIC)
                if isinstance(diagnostic, str)
                else "",
                recipients=(address,),
                tokens=tokens,
                message_ids=message_ids,
            )
        )
    return reports
