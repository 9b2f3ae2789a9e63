"""Amazon SNS messages posted to an HTTP endpoint: read, checked and verified. Pure.

SNS signs each message with a key whose X.509 certificate it publishes at SigningCertURL.
SignatureVersion 1 signs the SHA1 hash (SHA1withRSA), version 2 the SHA256 hash, of a
canonical string: "Key\\nvalue\\n" for fixed keys in alphabetical order. A message is trusted
when its topic is one we allowed, its certificate comes over https from an
`sns.<region>.amazonaws.com` host, and the signature checks against that certificate.
Fetching the certificate is the caller's job (the web layer, with an injectable fetcher).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import WebhookError, WebhookRefused
from .webhooks import json_object

SnsType = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
# The hosts SNS signs from and confirms subscriptions on: sns.us-east-1.amazonaws.com, and
# the China regions' amazonaws.com.cn. Anything else could serve a key of the sender's choosing.
_SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com(?:\.cn)?")
# Fields signed, per type, in the order of the canonical string.
_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED["UnsubscribeConfirmation"] = _SIGNED["SubscriptionConfirmation"]
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """One message SNS posted: its type, topic, body and what signs it."""

    type: SnsType
    fields: dict[str, str]  # every string field as posted, signed ones included

    @property
    def topic_arn(self) -> str:
        return self.fields["TopicArn"]

    @property
    def message(self) -> str:
        return self.fields["Message"]

    @property
    def message_id(self) -> str:
        return self.fields["MessageId"]

    @property
    def subscribe_url(self) -> str:
        return self.fields.get("SubscribeURL", "")

    @property
    def signing_cert_url(self) -> str:
        return self.fields["SigningCertURL"]


def read_sns(body: bytes) -> SnsMessage:
    """The SNS message in a POST body; WebhookError naming what is missing or malformed."""
    data = json_object(body, source="SNS")
    kind = data.get("Type")
    if kind not in _TYPES:
        raise WebhookError(f"SNS: unknown Type {str(kind)[:40]!r}")
    required = {"Signature", "SignatureVersion", "SigningCertURL"} | {
        name for name in _SIGNED[kind] if name != "Subject"
    }
    for name in sorted(required):
        if not isinstance(data.get(name), str) or not data[name]:
            raise WebhookError(f"SNS {kind}: field {name} is missing or not a string")
    if "Subject" in data and not isinstance(data["Subject"], str | None):
        raise WebhookError(f"SNS {kind}: field Subject is not a string")
    fields = {name: value for name, value in data.items() if isinstance(value, str)}
    return SnsMessage(type=kind, fields=fields)


def string_to_sign(message: SnsMessage) -> bytes:
    """The canonical string SNS signs for `message` (Subject only when present)."""
    lines = []
    for name in _SIGNED[message.type]:
        if name in message.fields:
            lines += [name, message.fields[name]]
    return ("\n".join(lines) + "\n").encode("utf-8")


def check_sns_url(url: str, *, what: str) -> None:
    """WebhookRefused unless `url` is https on an SNS host (sns.<region>.amazonaws.com)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookRefused(f"SNS: {what} is not a URL") from None
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or port not in (None, 443)
        or parts.username is not None
        or not _SNS_HOST.fullmatch(host)
    ):
        raise WebhookRefused(f"SNS: {what} {url[:120]!r} is not https on an sns.<region> host")


def check_topic(message: SnsMessage, *, topics: tuple[str, ...]) -> None:
    """WebhookRefused unless the message's topic is one of `topics`."""
    if message.topic_arn not in topics:
        raise WebhookRefused(f"SNS: topic {message.topic_arn[:200]!r} is not in ses_topic_arns")


def verify_signature(message: SnsMessage, *, certificate_pem: bytes) -> None:
    """WebhookRefused unless `message` is signed by the key of `certificate_pem`."""
    algorithm = _HASHES.get(message.fields["SignatureVersion"])
    if algorithm is None:
        raise WebhookRefused(
            f"SNS: SignatureVersion {message.fields['SignatureVersion'][:10]!r} is not 1 or 2"
        )
    try:
        signature = base64.b64decode(message.fields["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRefused("SNS: Signature is not base64") from None
    try:
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    except ValueError:
        raise WebhookRefused("SNS: the signing certificate does not load") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefused("SNS: the signing certificate's key is not RSA")
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise WebhookRefused("SNS: the signature does not match the message") from None
