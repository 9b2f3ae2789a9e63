"""The doctor's probes of the outside world: the SMTP relay and the service at base_url."""

from __future__ import annotations

import smtplib
import ssl
import urllib.error
import urllib.request
import uuid

from ..config import Settings
from .report import Check


def check_relay(settings: Settings, *, timeout: float) -> Check:
    """Connect to the relay as `send` would: STARTTLS offered when required, the login accepted."""
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    done = []
    try:
        context = ssl.create_default_context()
        client = (
            smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, timeout=timeout, context=context
            )
            if settings.smtp_tls == "tls"
            else smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        )
        with client:
            client.ehlo()
            if settings.smtp_tls == "starttls":
                if not client.has_extn("starttls"):
                    return Check.fail(
                        "relay",
                        f"{where} does not offer STARTTLS and smtp_tls is starttls",
                        "turn on STARTTLS at the relay, or use tls (port 465); none only on a trusted network",
                    )
                client.starttls(context=context)
                client.ehlo()
                done.append("STARTTLS")
            elif settings.smtp_tls == "tls":
                done.append("TLS")
            if settings.smtp_user:
                password = settings.smtp_password.reveal() if settings.smtp_password else ""
                client.login(settings.smtp_user, password)
                done.append(f"login as {settings.smtp_user} accepted")
    except smtplib.SMTPAuthenticationError as exc:
        return Check.fail(
            "relay",
            f"{where} refused the login as {settings.smtp_user}: {exc.smtp_code}",
            "check smtp_user and NEWSLETTER_SMTP_PASSWORD",
        )
    except smtplib.SMTPNotSupportedError:
        return Check.fail(
            "relay",
            f"{where} offers no login (AUTH) but smtp_user is set",
            "unset smtp_user, or use the relay's submission port (587)",
        )
    except (OSError, smtplib.SMTPException) as exc:
        return Check.fail(
            "relay",
            f"cannot talk to {where}: {type(exc).__name__}: {exc}"[:300],
            "check smtp_host, smtp_port and smtp_tls, and that the relay is up",
        )
    return Check.ok("relay", f"{where} answers" + "".join(f", {d}" for d in done))


def _status(request: urllib.request.Request, *, timeout: float) -> int:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def check_base_url(settings: Settings, *, timeout: float) -> Check:
    """base_url answers, and serves RFC 8058 one-click: POST /u/<bogus> is 404, not 405."""
    base = settings.base_url.rstrip("/")
    bogus = f"{base}/u/doctor-{uuid.uuid4().hex}"
    try:
        home = _status(urllib.request.Request(base + "/"), timeout=timeout)
        post = _status(
            urllib.request.Request(bogus, data=b"List-Unsubscribe=One-Click", method="POST"),
            timeout=timeout,
        )
    except (OSError, ValueError) as exc:
        return Check.fail(
            "base_url",
            f"{base} does not answer: {exc}"[:300],
            "run `newsletter serve` behind base_url (a reverse proxy passing every path)",
        )
    if post == 405:
        return Check.fail(
            "base_url",
            f"POST {base}/u/... answers 405: one-click unsubscribe would fail",
            "route /u/, /p/, /subscribe, /confirm/ and /hooks/ to `newsletter serve`, not to static files",
        )
    if post != 404 or home >= 400:
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
