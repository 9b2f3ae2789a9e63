"""Bounce webhooks: POST /hooks/postmark (basic auth) and POST /hooks/ses (SNS, signed).

Thin: read the body, let the library check and parse it (bounces/webhooks.py, bounces/sns.py),
apply the reports in a worker thread with the same code as `newsletter bounces process`, answer
JSON. A hook whose settings are unset answers 404. A request we cannot trust changes nothing:
401 without the Postmark login, 403 for a bad SNS signature, topic or certificate host, 400 for
a malformed body, 503 when the signing certificate cannot be fetched (SNS tries again).
"""

from __future__ import annotations

import http.client
import logging
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..bounces.parse import Report
from ..bounces.process import apply_reports
from ..bounces.sns import SnsMessage, check_sns_url, check_topic, read_sns, verify_signature
from ..bounces.webhooks import check_basic_auth, postmark_report, ses_reports
from ..errors import WebhookError, WebhookRefused
from .logs import log_event
from .service import service

MAX_BODY = 1024 * 1024  # bytes of one webhook request (a Postmark bounce may carry its dump)
Fetcher = Callable[[str], bytes]  # GETs an https URL and returns the body; raises OSError


def fetch_https(url: str, *, timeout: float = 10.0) -> bytes:
    """GET `url` (already checked to be https on an SNS host) and return its body.

    Every failure is an OSError, the one thing callers catch: urllib passes on the
    http.client errors of a garbled answer (BadStatusLine, IncompleteRead) as they are.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body: bytes = answer.read(MAX_BODY)
            return body
    except http.client.HTTPException as exc:
        raise OSError(f"a garbled answer: {type(exc).__name__}") from None


@dataclass
class SnsCertificates:
    """Signing certificates by URL, fetched once each (few: SNS rotates them rarely)."""

    fetch: Fetcher = fetch_https
    size: int = 16
    _known: OrderedDict[str, bytes] = field(default_factory=OrderedDict, repr=False)

    async def get(self, url: str) -> bytes:
        if url in self._known:
            self._known.move_to_end(url)
            return self._known[url]
        pem = await anyio.to_thread.run_sync(self.fetch, url)
        self._known[url] = pem
        while len(self._known) > self.size:
            self._known.popitem(last=False)
        return pem


class _TooLarge(WebhookError):
    pass


async def _body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _TooLarge(f"the body is over {MAX_BODY} bytes")
    return body


def _answer(status: int, **content: object) -> JSONResponse:
    return JSONResponse(content, status_code=status, headers={"cache-control": "no-store"})


def _refused(hook: str, exc: WebhookError) -> JSONResponse:
    status = 413 if isinstance(exc, _TooLarge) else 403 if isinstance(exc, WebhookRefused) else 400
    log_event(f"{hook}.rejected", level=logging.WARNING, status=status, reason=str(exc)[:300])
    return _answer(status, error=str(exc))


async def _apply(request: Request, reports: list[Report], *, hook: str) -> JSONResponse:
    svc = service(request)
    summary = await svc.write(
        apply_reports, reports, settings=svc.settings, key=svc.key, source=f"hook:{hook}"
    )
    log_event(hook, summary=summary.line())
    return _answer(200, **summary.as_dict())


async def postmark_hook(request: Request) -> Response:
    """POST /hooks/postmark: one Postmark Bounce or SpamComplaint event."""
    svc = service(request)
    user, password = svc.settings.postmark_hook_user, svc.settings.postmark_hook_password
    if not user or not password:
        return svc.not_found(request)
    try:
        check_basic_auth(
            request.headers.get("authorization"), user=user.reveal(), password=password.reveal()
        )
    except WebhookRefused as exc:
        log_event("postmark.rejected", level=logging.WARNING, status=401, reason=str(exc))
        response = _answer(401, error="credentials required")
        response.headers["www-authenticate"] = 'Basic realm="newsletter hooks"'
        return response
    try:
        report = postmark_report(await _body(request))
    except WebhookError as exc:
        return _refused("postmark", exc)
    return await _apply(request, [report], hook="postmark")


class _Unavailable(Exception):
    """The signing certificate could not be fetched: our side, so SNS should try again."""


async def _trusted_sns(request: Request) -> SnsMessage:
    """The posted SNS message once its topic, certificate host and signature check out."""
    svc = service(request)
    message = read_sns(await _body(request))
    check_topic(message, topics=svc.settings.ses_topic_arns)
    check_sns_url(message.signing_cert_url, what="SigningCertURL")
    certificates: SnsCertificates = request.app.state.sns_certificates
    try:
        pem = await certificates.get(message.signing_cert_url)
    except (OSError, ValueError) as exc:
        raise _Unavailable(f"cannot fetch the signing certificate: {exc}") from None
    verify_signature(message, certificate_pem=pem)
    return message


async def ses_hook(request: Request) -> Response:
    """POST /hooks/ses: an SNS subscription confirmation, or an SES bounce or complaint."""
    svc = service(request)
    if not svc.settings.ses_topic_arns:
        return svc.not_found(request)
    try:
        message = await _trusted_sns(request)
        if message.type == "SubscriptionConfirmation":
            check_sns_url(message.subscribe_url, what="SubscribeURL")
        reports = ses_reports(message.message) if message.type == "Notification" else []
    except WebhookError as exc:
        return _refused("ses", exc)
    except _Unavailable as exc:
        log_event("ses.unavailable", level=logging.WARNING, reason=str(exc)[:300])
        return _answer(503, error=str(exc))
    if message.type == "SubscriptionConfirmation":
        certificates: SnsCertificates = request.app.state.sns_certificates
        try:
            await anyio.to_thread.run_sync(certificates.fetch, message.subscribe_url)
        except (OSError, ValueError) as exc:
            log_event("ses.unavailable", level=logging.WARNING, reason=str(exc)[:300])
            return _answer(503, error="cannot confirm the subscription")
        log_event("ses.subscribed", topic=message.topic_arn)
        return _answer(200, confirmed=message.topic_arn)
    if message.type == "UnsubscribeConfirmation":
        log_event("ses.unsubscribed", level=logging.WARNING, topic=message.topic_arn)
        return _answer(200)
    return await _apply(request, reports, hook="ses")
