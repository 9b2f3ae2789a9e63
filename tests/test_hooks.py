"""POST /hooks/postmark and /hooks/ses over real HTTP: the payloads the providers document, SNS
messages signed here with a self-signed certificate (only the provider's signer is faked), and
the subscriber states that follow."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.config import load_settings
from newsletter.errors import ConfigError
from newsletter.store import Store
from newsletter.web.hooks import fetch_https

from .web_server import Running, service

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc123.pem"
SUBSCRIBE_URL = (
    "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=t"
)
HOOK_USER, HOOK_PASSWORD = "postmark", "c0rrect-h0rse-battery-staple"


class Signer:
    """Stands in for SNS: a key, its self-signed certificate, and the SNS signing scheme."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        self.pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def sign(self, message: dict[str, str], *, version: str = "2") -> dict[str, str]:
        """`message` with SignatureVersion, SigningCertURL and Signature as SNS adds them.

        The canonical string is written out here from AWS's documentation, not taken from the
        code under test.
        """
        if message["Type"] == "Notification":
            keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            keys = [
                "Message",
                "MessageId",
                "SubscribeURL",
                "Timestamp",
                "Token",
                "TopicArn",
                "Type",
            ]
        text = "".join(f"{k}\n{message[k]}\n" for k in keys if k in message)
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "SigningCertURL": CERT_URL,
            "Signature": base64.b64encode(signature).decode(),
        }


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


class Fetcher:
    """The injected fetcher: serves the signing certificate and records every URL asked for."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.asked: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.asked.append(url)
        if url == CERT_URL:
            return self.signer.pem
        if url == SUBSCRIBE_URL:
            return b"<ConfirmSubscriptionResponse/>"
        raise OSError(f"no such URL in this test: {url}")


def _people(store: Store) -> None:
    for name in ("gone", "full", "angry", "calm"):
        store.add_subscriber(f"{name}@example.org")


@pytest.fixture
def web(tmp_path: Path, signer: Signer) -> Iterator[tuple[Running, Fetcher]]:
    fetcher = Fetcher(signer)
    with service(
        tmp_path,
        setup=_people,
        app_options={"fetch": fetcher},
        postmark_hook_user=HOOK_USER,
        postmark_hook_password=HOOK_PASSWORD,
        ses_topic_arns=[TOPIC],
    ) as running:
        yield running, fetcher


def status(web: Running, email: str) -> str:
    found = web.store.subscriber_by_email(email)
    assert found is not None
    return found.status


def postmark_bounce(email: str, *, event_id: int = 4323372036, kind: str = "HardBounce") -> bytes:
    """A Postmark bounce webhook body, fields as in Postmark's documentation."""
    return json.dumps(
        {
            "RecordType": "Bounce",
            "MessageStream": "outbound",
            "ID": event_id,
            "Type": kind,
            "TypeCode": 1 if kind == "HardBounce" else 4096,
            "Name": "Hard bounce",
            "Tag": "digest",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Metadata": {},
            "ServerID": 23,
            "Description": "The server was unable to deliver your message (ex: unknown user).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": email,
            "From": "digest@example.com",
            "BouncedAt": "2024-12-13T09:05:00Z",
            "DumpAvailable": True,
            "Inactive": True,
            "CanActivate": True,
            "Subject": "Daily Papers",
        }
    ).encode()


def ses_notification(kind: str, email: str, *, feedback: str = "fb-1") -> dict[str, str]:
    """An SNS Notification carrying an SES bounce or complaint, as SES documents them."""
    mail = {
        "timestamp": "2024-12-13T09:00:00.000Z",
        "source": "bounces@example.com",
        "messageId": "0100018c-ses-id",
        "destination": [email],
        "commonHeaders": {"from": ["digest@example.com"], "to": [email], "subject": "Papers"},
    }
    if kind == "Complaint":
        event: dict[str, Any] = {
            "notificationType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": email}],
                "timestamp": "2024-12-13T09:10:00.000Z",
                "feedbackId": feedback,
                "complaintFeedbackType": "abuse",
            },
        }
    else:
        event = {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": kind,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": email,
                        "action": "failed",
                        "status": "4.2.2" if kind == "Transient" else "5.1.1",
                        "diagnosticCode": "smtp; 452 4.2.2 mailbox full",
                    }
                ],
                "timestamp": "2024-12-13T09:10:00.000Z",
                "feedbackId": feedback,
            },
        }
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps({**event, "mail": mail}),
        "Timestamp": "2024-12-13T09:10:01.000Z",
    }


def post_ses(web: Running, message: dict[str, str]) -> Any:
    with web.client() as client:
        return client.post(
            "/hooks/ses",
            content=json.dumps(message),
            headers={
                "x-amz-sns-message-type": message.get("Type", ""),
                "content-type": "text/plain",
            },
        )


def post_postmark(web: Running, body: bytes) -> Any:
    with web.client() as client:
        return client.post("/hooks/postmark", content=body, auth=(HOOK_USER, HOOK_PASSWORD))


def test_postmark_hard_bounce_marks_the_subscriber_bounced(
    web: tuple[Running, Fetcher],
) -> None:
    running, _ = web
    answer = post_postmark(running, postmark_bounce("gone@example.org"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["bounced"] == 1
    assert status(running, "gone@example.org") == "bounced"
    assert status(running, "full@example.org") == "active"


def test_postmark_spam_complaint_unsubscribes(web: tuple[Running, Fetcher]) -> None:
    running, _ = web
    body = json.loads(postmark_bounce("angry@example.org", event_id=42))
    body.update(RecordType="SpamComplaint", Type="SpamComplaint", TypeCode=512)
    answer = post_postmark(running, json.dumps(body).encode())
    assert answer.status_code == 200, answer.text
    assert status(running, "angry@example.org") == "unsubscribed"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("auth", [None, (HOOK_USER, "wrong"), ("someone", HOOK_PASSWORD)])
def test_postmark_without_the_login_changes_nothing(
    web: tuple[Running, Fetcher], auth: tuple[str, str] | None
) -> None:
    running, _ = web
    with running.client() as client:
        answer = client.post(
            "/hooks/postmark",
            content=postmark_bounce("gone@example.org"),
            headers={"authorization": _basic(*auth)} if auth else {},
        )
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert status(running, "gone@example.org") == "active"
    assert running.store.bounces(1) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"ID": 1, "Type": "HardBounce"}',
        b'{"Email": "a@b.c"}',
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,  # deeper than the parser goes
        b'{"ID": ' + b"9" * 5000 + b"}",  # more digits than int() converts
        # An id that is no event id (a megabyte would be stored and scanned for addresses).
        postmark_bounce("gone@example.org").replace(
            b'"ID": 4323372036', b'"ID": "' + b"x" * 101 + b'"'
        ),
        postmark_bounce("gone@example.org").replace(b'"ID": 4323372036', b'"ID": "a b"'),
    ],
)
def test_postmark_malformed_body_is_400(web: tuple[Running, Fetcher], body: bytes) -> None:
    running, _ = web
    answer = post_postmark(running, body)
    assert answer.status_code == 400
    assert "Traceback" not in answer.text
    assert answer.json()["error"].startswith("Postmark: ")


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_complaint_unsubscribes(
    web: tuple[Running, Fetcher], signer: Signer, version: str
) -> None:
    running, fetcher = web
    answer = post_ses(
        running, signer.sign(ses_notification("Complaint", "angry@example.org"), version=version)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["unsubscribed"] == 1
    assert status(running, "angry@example.org") == "unsubscribed"
    assert fetcher.asked == [CERT_URL]


def test_ses_permanent_bounce_marks_bounced(web: tuple[Running, Fetcher], signer: Signer) -> None:
    running, _ = web
    answer = post_ses(running, signer.sign(ses_notification("Permanent", "gone@example.org")))
    assert answer.status_code == 200, answer.text
    assert status(running, "gone@example.org") == "bounced"


def test_soft_bounce_posted_twice_counts_once(web: tuple[Running, Fetcher], signer: Signer) -> None:
    running, _ = web
    full = running.store.subscriber_by_email("full@example.org")
    assert full is not None
    message = signer.sign(ses_notification("Transient", "full@example.org", feedback="fb-soft"))
    first, second = post_ses(running, message), post_ses(running, message)
    assert (first.json()["soft"], first.json()["already"]) == (1, 0)
    assert (second.json()["soft"], second.json()["already"]) == (0, 1)
    assert [b.kind for b in running.store.bounces(full.id)] == ["soft"]
    # Postmark too: the same event id twice is one soft bounce.
    with running.client() as client:
        for _ in range(2):
            answer = client.post(
                "/hooks/postmark",
                content=postmark_bounce("full@example.org", event_id=7, kind="SoftBounce"),
                auth=(HOOK_USER, HOOK_PASSWORD),
            )
            assert answer.status_code == 200
    assert [b.kind for b in running.store.bounces(full.id)] == ["soft", "soft"]
    assert status(running, "full@example.org") == "active"  # under bounces_soft_limit (3)


def _tampered(signer: Signer) -> dict[str, str]:
    message = signer.sign(ses_notification("Complaint", "angry@example.org"))
    return {**message, "Message": message["Message"].replace("angry", "calm")}


def _other_key() -> dict[str, str]:
    return Signer().sign(ses_notification("Complaint", "angry@example.org"))


def _wrong_topic(signer: Signer) -> dict[str, str]:
    message = ses_notification("Complaint", "angry@example.org")
    return signer.sign({**message, "TopicArn": TOPIC + "-other"})


def _cert_host(url: str) -> Any:
    def make(signer: Signer) -> dict[str, str]:
        return {
            **signer.sign(ses_notification("Complaint", "angry@example.org")),
            "SigningCertURL": url,
        }

    return make


@pytest.mark.parametrize(
    "make",
    [
        _tampered,
        lambda signer: _other_key(),
        _wrong_topic,
        _cert_host("http://sns.eu-west-1.amazonaws.com/cert.pem"),
        _cert_host("https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem"),
        _cert_host("https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem"),
        _cert_host("https://sns.eu-west-1.amazonaws.com:8443/cert.pem"),
        lambda signer: {
            **signer.sign(ses_notification("Complaint", "a@b.c")),
            "SignatureVersion": "3",
        },
    ],
    ids=["tampered", "other-key", "topic", "http", "lookalike", "path", "port", "version"],
)
def test_ses_untrusted_messages_are_403_and_change_nothing(
    web: tuple[Running, Fetcher], signer: Signer, make: Any
) -> None:
    running, fetcher = web
    answer = post_ses(running, make(signer))
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"].startswith("SNS")
    assert status(running, "angry@example.org") == "active"
    assert status(running, "calm@example.org") == "active"
    assert all(url == CERT_URL for url in fetcher.asked)  # no other host was ever fetched


@pytest.mark.parametrize(
    "body",
    [
        "nope",
        "[1]",
        "[" * 100_000,
        json.dumps({"Type": "Bogus"}),
        json.dumps({"Type": "Notification", "TopicArn": TOPIC}),
        '{"Type": "Notification", "x": ' + "9" * 5000 + "}",  # read before the signature
    ],
)
def test_ses_malformed_is_400(web: tuple[Running, Fetcher], body: str) -> None:
    running, _ = web
    with running.client() as client:
        answer = client.post("/hooks/ses", content=body)
    assert answer.status_code == 400
    assert "Traceback" not in answer.text


def test_ses_signed_but_malformed_ses_message_is_400(
    web: tuple[Running, Fetcher], signer: Signer
) -> None:
    running, _ = web
    message = ses_notification("Complaint", "angry@example.org")
    answer = post_ses(
        running, signer.sign({**message, "Message": '{"notificationType": "Bounce"}'})
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "SES: a Bounce without a bounce object"


def test_a_lone_surrogate_in_a_hook_body_is_400_not_500(
    web: tuple[Running, Fetcher], signer: Signer
) -> None:
    # "\ud800" is valid JSON but no text: the SNS string to sign, or SQLite, failed on it.
    running, _ = web
    signed = signer.sign(ses_notification("Complaint", "angry@example.org"))
    ses = post_ses(running, {**signed, "Message": "\ud800"})
    body = json.loads(postmark_bounce("gone@example.org"))
    postmark = post_postmark(running, json.dumps({**body, "Details": "x\ud800"}).encode())
    for answer, source in ((ses, "SNS"), (postmark, "Postmark")):
        assert answer.status_code == 400
        assert (
            answer.json()["error"] == f"{source}: the body's JSON holds a lone surrogate (\\ud800)"
        )
    assert status(running, "angry@example.org") == status(running, "gone@example.org") == "active"


def test_ses_subscription_is_confirmed_through_the_fetcher(
    web: tuple[Running, Fetcher], signer: Signer
) -> None:
    running, fetcher = web
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "t",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic " + TOPIC,
        "SubscribeURL": SUBSCRIBE_URL,
        "Timestamp": "2024-12-13T09:00:00.000Z",
    }
    answer = post_ses(running, signer.sign(message, version="1"))
    assert answer.status_code == 200, answer.text
    assert fetcher.asked == [CERT_URL, SUBSCRIBE_URL]
    # A confirmation that would send us to another host is refused before any fetch.
    fetcher.asked.clear()
    evil = signer.sign({**message, "SubscribeURL": "https://evil.example/confirm"}, version="1")
    assert post_ses(running, evil).status_code == 403
    assert fetcher.asked == []  # the certificate is cached; the evil URL never fetched


def test_hooks_are_off_until_configured(tmp_path: Path, signer: Signer) -> None:
    with service(tmp_path, setup=_people, app_options={"fetch": Fetcher(signer)}) as running:
        with running.client() as client:
            answers = [
                client.post("/hooks/postmark", content=postmark_bounce("gone@example.org")),
                client.post("/hooks/ses", content=json.dumps(ses_notification("Complaint", "x"))),
            ]
        assert [a.status_code for a in answers] == [404, 404]
        assert status(running, "gone@example.org") == "active"


def test_hook_settings_come_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "NEWSLETTER_POSTMARK_HOOK_USER": "pm",
            "NEWSLETTER_POSTMARK_HOOK_PASSWORD": "pw",
            "NEWSLETTER_SES_TOPIC_ARNS": f"{TOPIC}, arn:aws-cn:sns:cn-north-1:123456789012:t",
        }
    )
    assert settings.postmark_hook_password is not None
    assert settings.postmark_hook_password.reveal() == "pw"
    assert "pw" not in repr(settings)
    assert settings.ses_topic_arns == (TOPIC, "arn:aws-cn:sns:cn-north-1:123456789012:t")
    with pytest.raises(ConfigError, match=r"NEWSLETTER_SES_TOPIC_ARNS: 'ses' is not an SNS topic"):
        load_settings(environ={"NEWSLETTER_SES_TOPIC_ARNS": "ses"})


def test_a_garbled_answer_from_the_certificate_host_is_an_oserror() -> None:
    # The routes turn an OSError into a 503 that SNS retries; urllib passes http.client's
    # BadStatusLine on as it is, which would have been a 500 with a traceback.
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]

        def answer() -> None:
            conn, _ = listening.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"220 not http\r\n")

        thread = threading.Thread(target=answer)
        thread.start()
        try:
            with pytest.raises(OSError, match="garbled answer: BadStatusLine"):
                fetch_https(f"http://127.0.0.1:{port}/cert.pem", timeout=5)
        finally:
            thread.join()
