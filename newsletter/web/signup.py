"""Sign-up with confirmation: a form, a confirmation e-mail, and a link that activates.

Only the confirmation creates or reactivates a subscriber. The page after the form is the same
whether or not the address is already subscribed, so the form cannot be used to find out who
reads the newsletter; only the e-mail, which goes to the address's owner, says which case it is.
"""

from __future__ import annotations

import functools
import math

import anyio.to_thread
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from ..audience.subscribers import normalize_email, validate_cadence
from ..errors import SubscriberError
from ..mail.confirmation import confirmation_message
from ..mail.outgoing import OutgoingMessage
from ..model import Subscriber
from ..store import Store
from ..store.signups import Signup
from ..tokens import read_signup_token, subscriber_token
from .logs import log_event
from .pages import Message, problem
from .preferences import validate_fields
from .security import address_key, client_address, limiter_key
from .service import Service, service

SIGNUP_FIELDS = ("email", "keywords", "min_votes", "cadence")


async def signup_page(request: Request) -> Response:
    """GET /subscribe: the sign-up form."""
    svc = service(request)
    return svc.pages.render(
        request, "web/signup.html", values=dict.fromkeys(SIGNUP_FIELDS, ""), errors={}
    )


async def signup_post(request: Request) -> Response:
    """POST /subscribe: validate, rate-limit, record the sign-up and mail the confirmation."""
    svc = service(request)
    form = await svc.csrf.own_form(request, event="signup")
    values = {name: form.get(name, "")[:20_000] for name in SIGNUP_FIELDS}
    errors: dict[str, Message] = {}
    address = ""
    try:
        address = normalize_email(values["email"])
    except SubscriberError as exc:
        errors["email"] = problem(exc.code)
    filters, problems = validate_fields(
        {"keywords": values["keywords"], "min_votes": values["min_votes"]}
    )
    errors.update(problems)
    cadence = "daily"
    try:
        cadence = validate_cadence(values["cadence"])
    except SubscriberError as exc:
        errors["cadence"] = problem(exc.code)
    if filters is None or errors:
        return svc.pages.render(
            request, "web/signup.html", status=422, values=values, errors=errors
        )
    client = client_address(request, trusted=svc.proxies)
    for limiter, key in (
        (svc.per_client, limiter_key(client)),
        (svc.per_address, address_key(address)),
    ):
        if not limiter.allow(key):
            log_event("signup.limited", client=client)
            response = svc.pages.render(request, "web/429.html", status=429)
            # The window's length: by then every attempt that counted has left it.
            response.headers["retry-after"] = str(math.ceil(limiter.limit.seconds))
            return response
    await svc.purge_stale_signups()
    signup = await svc.write(Store.add_signup, address, filters=filters, cadence=cadence)
    try:
        existing = await svc.db(Store.subscriber_by_email, address)
        # Rendering (Jinja + MJML) and DKIM signing take milliseconds: off the event loop.
        message = await anyio.to_thread.run_sync(
            functools.partial(
                confirmation_message,
                settings=svc.settings,
                key=svc.key,
                email=signup.email,
                signup_id=signup.id,
                nonce=signup.nonce,
                subscriber=existing if existing and existing.status == "active" else None,
                days=svc.confirm_days,
                clock=svc.clock,
            )
        )
    except BaseException:
        # A sign-up no e-mail can confirm is no sign-up.
        await svc.write(Store.forget_signup, signup.id)
        raise
    log_event("signup", signup=signup.id)
    response = svc.pages.render(request, "web/check_email.html")
    # Sent after the response, so how long SMTP takes says nothing about the address either.
    response.background = BackgroundTask(_send, svc, message, signup.id)
    return response


async def _send(svc: Service, message: OutgoingMessage, signup_id: int) -> None:
    sender = svc.sender_factory()
    try:
        await sender.send(message)
        log_event("signup.mailed", signup=signup_id)
    except Exception as exc:  # a failed send must not take the service down; it is logged
        log_event("signup.mail_failed", level=40, signup=signup_id, error=str(exc)[:200])
    finally:
        await sender.aclose()


async def _signup_for(svc: Service, token: str) -> Signup | None:
    named = read_signup_token(token, key=svc.key)
    if named is None:
        return None
    signup_id, nonce = named
    signup = await svc.db(Store.signup, signup_id)
    # Ids of purged sign-ups came back before m005: the nonce ties a link to one sign-up for good.
    # (A plain comparison: the token's HMAC was already checked in constant time.)
    return signup if signup is not None and signup.nonce == nonce else None


def _confirmed(request: Request, subscriber: Subscriber) -> Response:
    """The page after a confirmation: subscribed; or, for a link used before whose subscriber
    has since unsubscribed or bounced, that they are not (with the way back), never the
    opposite of what the list says."""
    svc = service(request)
    token = subscriber_token(
        subscriber.id, email=subscriber.email, purpose="preferences", key=svc.key
    )
    preferences_url = svc.path(f"/p/{token}")
    if subscriber.status != "active":
        return svc.pages.render(
            request,
            "web/unsubscribed.html",
            email=subscriber.email,
            preferences_url=preferences_url,
        )
    return svc.pages.render(request, "web/confirmed.html", preferences_url=preferences_url)


async def confirm_page(request: Request) -> Response:
    """GET /confirm/TOKEN: a button that confirms (scanners that fetch links confirm nothing)."""
    svc = service(request)
    signup = await _signup_for(svc, request.path_params["token"])
    if signup is None:
        return svc.not_found(request)
    if signup.confirmed_at is not None:
        existing = await svc.db(Store.subscriber_by_email, signup.email)
        if existing is not None:
            return _confirmed(request, existing)
    if svc.expired(signup.created_at):
        return svc.pages.render(request, "web/expired.html", status=410, days=svc.confirm_days)
    return svc.pages.render(
        request,
        "web/confirm.html",
        email=signup.email,
        action=svc.path(f"/confirm/{request.path_params['token']}"),
    )


async def confirm_post(request: Request) -> Response:
    """POST /confirm/TOKEN: activate (or create) the subscriber, once."""
    svc = service(request)
    signup = await _signup_for(svc, request.path_params["token"])
    if signup is None:
        return svc.not_found(request)
    await svc.csrf.own_form(request, event="confirm", signup=signup.id)
    if signup.confirmed_at is None and svc.expired(signup.created_at):
        return svc.pages.render(request, "web/expired.html", status=410, days=svc.confirm_days)
    result = await svc.write(Store.confirm_signup, signup.id)
    if result is None:
        return svc.not_found(request)
    log_event("confirm", signup=signup.id, subscriber=result.subscriber_id, outcome=result.outcome)
    subscriber = await svc.db(Store.subscriber, result.subscriber_id)
    if subscriber is None:  # removed since: nothing to confirm into
        return svc.not_found(request)
    return _confirmed(request, subscriber)
