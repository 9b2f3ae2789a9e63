"""Unsubscribe: a page with a button on GET, and RFC 8058 one-click on POST.

Link scanners and mail previews fetch GETs, so a GET never changes anything. The POST acts
whatever its body (empty, `List-Unsubscribe=One-Click` urlencoded or multipart) and answers
200 without a redirect, as Gmail and Yahoo expect; repeating it is harmless.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..model import Subscriber
from ..store import Store
from ..tokens import subscriber_token
from .logs import log_event
from .service import service


async def unsubscribe_page(request: Request) -> Response:
    """GET /u/TOKEN: show whose list this is and a button that posts back here."""
    svc = service(request)
    subscriber = await svc.subscriber_for(request.path_params["token"], purpose="unsubscribe")
    if subscriber is None:
        return svc.not_found(request)
    if subscriber.status == "unsubscribed":
        return _unsubscribed(request, subscriber.id, email=subscriber.email)
    return svc.pages.render(
        request,
        "web/unsubscribe.html",
        email=subscriber.email,
        action=svc.path(f"/u/{request.path_params['token']}"),
    )


def _unsubscribe(store: Store, subscriber_id: int) -> tuple[Subscriber, bool] | None:
    """The subscriber and whether unsubscribing changed anything; None for no such id."""
    subscriber = store.subscriber(subscriber_id)
    if subscriber is None:
        return None
    return subscriber, store.unsubscribe(subscriber_id)


async def unsubscribe_now(request: Request) -> Response:
    """POST /u/TOKEN: unsubscribe at once (the body is not read: any body is accepted)."""
    svc = service(request)
    token = request.path_params["token"]
    # The token is checked against its subscriber's row by a reader: a forged token never
    # takes one of the few write threads a real unsubscribe needs.
    holder = await svc.subscriber_for(token, purpose="unsubscribe")
    done = None if holder is None else await svc.write(_unsubscribe, holder.id)
    if done is None:
        log_event("unsubscribe.rejected", reason="bad token")
        return svc.not_found(request)
    subscriber, changed = done
    log_event("unsubscribe", subscriber=subscriber.id, changed=changed)
    return _unsubscribed(request, subscriber.id, email=subscriber.email)


def _unsubscribed(request: Request, subscriber_id: int, *, email: str) -> Response:
    svc = service(request)
    token = subscriber_token(subscriber_id, email=email, purpose="preferences", key=svc.key)
    return svc.pages.render(
        request, "web/unsubscribed.html", email=email, preferences_url=svc.path(f"/p/{token}")
    )
