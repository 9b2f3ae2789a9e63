"""The e-mail answering a sign-up: a link that confirms it, or a link to the preferences.

Only this e-mail, which goes to the address's owner, says whether the address already
receives the newsletter; the web page after the form looks the same either way.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any

import jinja2

from ..config import Settings
from ..errors import TemplateError
from ..model import Subscriber
from ..templates import get_template
from ..tokens import signup_token, subscriber_token
from .dkim import sign_for
from .message import message_domain, simple_message
from .outgoing import OutgoingMessage

TEXT_TEMPLATE = "web/confirm_email.txt"
HTML_TEMPLATE = "web/confirm_email.html"


def _render(name: str, settings: Settings, context: dict[str, Any]) -> str:
    try:
        return get_template(name, user_dir=settings.template_dir).render(
            site_title=settings.site_title, **context
        )
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {name} does not render: {exc}") from None


def confirmation_message(
    *,
    settings: Settings,
    key: bytes,
    email: str,
    signup_id: int,
    nonce: str,
    subscriber: Subscriber | None,
    days: int,
    clock: Callable[[], dt.datetime],
) -> OutgoingMessage:
    """The e-mail for sign-up `signup_id` (with its `nonce`) of `email`.

    `subscriber` is the active subscriber with that address, if any: they get a link to
    their preferences instead of a confirmation link valid for `days` days.
    """
    base = settings.base_url.rstrip("/")
    context: dict[str, Any] = {
        "email": email,
        "already_subscribed": subscriber is not None,
        "confirm_url": f"{base}/confirm/{signup_token(signup_id, nonce, key=key)}",
        "days": days,
        "preferences_url": "",
    }
    if subscriber is not None:
        token = subscriber_token(
            subscriber.id, email=subscriber.email, purpose="preferences", key=key
        )
        context["preferences_url"] = f"{base}/p/{token}"
        subject = f"이미 구독 중입니다 · You already receive {settings.site_title}"
    else:
        subject = f"구독을 확인해 주세요 · Confirm your subscription to {settings.site_title}"
    # Random, so a repeated sign-up is a new message rather than a duplicate to be dropped.
    message_id = f"signup.{signup_id}.{secrets.token_hex(8)}@{message_domain(settings)}"
    now = clock()
    data = simple_message(
        settings=settings,
        to=email,
        subject=subject,
        text=_render(TEXT_TEMPLATE, settings, context),
        html=_render(HTML_TEMPLATE, settings, context),
        message_id=message_id,
        clock=lambda: now,
    )
    return OutgoingMessage(
        subscriber_id=0,
        recipient=email,
        envelope_from=settings.envelope_from,
        message_id=message_id,
        data=sign_for(data, settings=settings, now=now),
    )
