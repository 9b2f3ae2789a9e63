"""The doctor's probes of the outside world: the SMTP relay and the service at base_url."""

from __future__ import annotations

import asyncio
import http.client
import urllib.error
import urllib.request
import uuid

from ..config import Settings
from ..delivery.smtp import SMTPSender, smtp_sender
from ..errors import ConfigError, NewsletterError
from ..mail.message import MAX_UNSUBSCRIBE_URL
from ..text import clean_text
from ..tokens import subscriber_token
from .report import Check


def check_relay(settings: Settings, *, timeout: float) -> Check:
    """Connect to the relay with `send`'s own sender: its TLS mode, its login, its refusals."""
    try:
        sender = smtp_sender(settings.replace(smtp_timeout=timeout))
        asyncio.run(_open_and_close(sender))
    except NewsletterError as exc:
        advice = (
            "fix the [smtp] settings: `newsletter send` refuses them too"
            if isinstance(exc, ConfigError)
            else "check smtp_host, smtp_port, smtp_tls and the login, and that the relay is up"
        )
        return Check.fail("relay", clean_text(str(exc), limit=300), advice)
    done = {"starttls": ", STARTTLS", "tls": ", TLS"}.get(settings.smtp_tls, "")
    if settings.smtp_user:
        done += f", login as {settings.smtp_user} accepted"
    return Check.ok("relay", f"{sender.where} answers{done}")


async def _open_and_close(sender: SMTPSender) -> None:
    try:
        await sender.open()
    finally:
        await sender.aclose()


def _status(request: urllib.request.Request, *, timeout: float) -> int:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def check_base_url(settings: Settings, *, timeout: float) -> Check:
    """base_url answers, and serves RFC 8058 one-click: POST /u/<bogus> is 404 (an unknown
    token), not 405 or any other refusal of the method."""
    base = settings.base_url.rstrip("/")
    # A subscriber's unsubscribe link must fit List-Unsubscribe; the token grows with the id,
    # so check a list of ten million, before a send stops on the first link too long.
    token = subscriber_token(
        10**7, email="doctor@example.com", purpose="unsubscribe", key=b"doctor" * 6
    )
    longest = len(f"{base}/u/{token}")
    if longest > MAX_UNSUBSCRIBE_URL:
        room = MAX_UNSUBSCRIBE_URL - len(f"/u/{token}")
        return Check.fail(
            "base_url",
            f"unsubscribe links would be up to {longest} characters; at most "
            f"{MAX_UNSUBSCRIBE_URL} fit List-Unsubscribe, and every send would stop",
            f"use a base_url of at most {room} characters (a shorter host or path)",
        )
    bogus = f"{base}/u/doctor-{uuid.uuid4().hex}"
    try:
        home = _status(urllib.request.Request(base + "/"), timeout=timeout)
        post = _status(
            urllib.request.Request(bogus, data=b"List-Unsubscribe=One-Click", method="POST"),
            timeout=timeout,
        )
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # HTTPException: something listens but does not speak HTTP (an SMTP port: BadStatusLine).
        why = f"{type(exc).__name__}: {exc}" if isinstance(exc, http.client.HTTPException) else exc
        return Check.fail(
            "base_url",
            clean_text(f"{base} does not answer: {why}", limit=300),
            "run `newsletter serve` behind base_url (a reverse proxy passing every path)",
        )
    if post != 404:  # 405 from a static host, 501 from `python -m http.server`, a 5xx...
        return Check.fail(
            "base_url",
            f"POST {base}/u/... answers {post}: one-click unsubscribe would fail",
            "route /u/, /p/, /subscribe, /confirm/ and /hooks/ to `newsletter serve`, not to static files",
        )
    if home >= 400:
        return Check.warn(
            "base_url",
            f"{base}/ answers {home}, POST {base}/u/<bogus token> answers {post} (expected 404)",
            "check that base_url points at `newsletter serve`",
        )
    if not base.startswith("https://"):
        return Check.warn(
            "base_url",
            f"{base} serves the unsubscribe route, over plain http",
            "publish it over https: mail providers expect https unsubscribe links",
        )
    return Check.ok("base_url", f"{base} answers and serves one-click unsubscribe")
