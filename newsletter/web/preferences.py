"""The preferences page: edit filters, see what today's digest would give, resume after leaving,
or erase everything about oneself (`subscribers erase`, asked for by its owner).

Validation is the CSV's (`subscribers.validate_preferences`), field by field so every problem
shows at once, in Korean and English. The preview is rendered on the server: on each change the
page's script fetches `/p/TOKEN/preview?...` and swaps in the HTML; without script the
"Preview" button posts the form and the whole page comes back with the preview.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..audience.match import Pick, select_papers
from ..audience.subscribers import validate_cadence, validate_filters
from ..delivery.runlock import AnotherSend, between_sends
from ..errors import DeliveryError, StoreError, SubscriberError
from ..mail.render import papers_per_email
from ..model import Filters, Subscriber
from ..store import Store
from ..tokens import subscriber_token
from .logs import log_event
from .pages import Message, problem
from .security import PAGE_HEADERS
from .service import Service, service

FIELDS = ("keywords", "exclude", "min_votes", "max_papers")


@dataclass(frozen=True, slots=True)
class Preview:
    """What a set of preferences selects from the newest digest."""

    date: dt.date | None  # None: no digest stored yet
    total: int  # papers in that digest
    picks: tuple[Pick, ...]  # what the email would hold, in order
    matched: int  # picks before the per-email cap
    cap: int  # the effective cap: the subscriber's, or the newsletter's, whichever is lower


def validate_fields(values: Mapping[str, str]) -> tuple[Filters | None, dict[str, Message]]:
    """Filters from form text, or every field's problem (by field name)."""
    errors: dict[str, Message] = {}
    for name in FIELDS:
        try:
            validate_filters(**{name: values.get(name, "")})
        except SubscriberError as exc:
            errors[exc.field or name] = problem(exc.code)
    if errors:
        return None, errors
    return validate_filters(**{name: values.get(name, "") for name in FIELDS}), {}


def form_values(subscriber: Subscriber) -> dict[str, str]:
    """A subscriber's filters as the form shows them (one phrase per line)."""
    filters = subscriber.filters
    return {
        "keywords": "\n".join(filters.keywords),
        "exclude": "\n".join(filters.exclude),
        "min_votes": str(filters.min_votes),
        "max_papers": "" if filters.max_papers is None else str(filters.max_papers),
        "cadence": subscriber.cadence,
    }


async def preview(svc: Service, filters: Filters) -> Preview:
    """Run the matcher on the newest digest with `filters` and the newsletter's per-email cap."""
    newest = await svc.newest_digest()
    cap = papers_per_email(settings=svc.settings, max_papers=filters.max_papers)
    if newest is None:
        return Preview(date=None, total=0, picks=(), matched=0, cap=cap)
    # Uncached: any subscriber may preview any keywords, as often as they like.
    picks = select_papers(newest, dataclasses.replace(filters, max_papers=None), cache=False)
    return Preview(
        date=newest.digest.date,
        total=len(newest.papers),
        picks=picks[:cap],
        matched=len(picks),
        cap=cap,
    )


def _here(request: Request, *, done: str) -> str:
    """This preferences page again, under base_url's path, saying what was done."""
    return service(request).path(f"/p/{request.path_params['token']}?done={done}")


def _tokens(svc: Service, subscriber: Subscriber) -> dict[str, str]:
    token = subscriber_token(
        subscriber.id, email=subscriber.email, purpose="preferences", key=svc.key
    )
    unsubscribe = subscriber_token(
        subscriber.id, email=subscriber.email, purpose="unsubscribe", key=svc.key
    )
    return {
        "action": svc.path(f"/p/{token}"),
        "preview_url": svc.path(f"/p/{token}/preview"),
        "unsubscribe_url": svc.path(f"/u/{unsubscribe}"),
    }


def _page(
    request: Request,
    subscriber: Subscriber,
    *,
    values: Mapping[str, str],
    errors: Mapping[str, Message],
    shown: Preview | None,
    notice: str = "",
    status: int = 200,
) -> Response:
    svc = service(request)
    return svc.pages.render(
        request,
        "web/preferences.html",
        status=status,
        subscriber=subscriber,
        values=values,
        errors=errors,
        preview=shown,
        notice=notice,
        **_tokens(svc, subscriber),
    )


async def preferences_page(request: Request) -> Response:
    """GET /p/TOKEN: the form with the subscriber's filters and today's selection."""
    svc = service(request)
    subscriber = await svc.subscriber_for(request.path_params["token"], purpose="preferences")
    if subscriber is None:
        return svc.not_found(request)
    notice = request.query_params.get("done", "")
    return _page(
        request,
        subscriber,
        values=form_values(subscriber),
        errors={},
        shown=await preview(svc, subscriber.filters),
        notice=notice if notice in ("saved", "resumed") else "",
    )


async def preferences_post(request: Request) -> Response:
    """POST /p/TOKEN: save (then redirect back), preview without saving, or resume emails."""
    svc = service(request)
    subscriber = await svc.subscriber_for(request.path_params["token"], purpose="preferences")
    if subscriber is None:
        return svc.not_found(request)
    form = await svc.csrf.own_form(request, event="preferences", subscriber=subscriber.id)
    action = form.get("action", "save")  # Enter in a field sends the first button: save
    if action not in ("save", "preview", "resume", "erase"):
        raise HTTPException(400, f"unknown action {action[:40]!r}")
    if action == "erase":
        return await _erase(request, subscriber, confirmed=form.get("confirm") == "erase")
    if action == "resume":
        changed = await svc.write(Store.resume_subscriber, subscriber.id)
        log_event("resubscribe", subscriber=subscriber.id, changed=changed)
        if not changed and subscriber.status != "active":
            # Bounced (or pending): only a confirmed sign-up, which proves the mailbox, resumes.
            return _page(
                request,
                subscriber,
                values=form_values(subscriber),
                errors={},
                shown=None,
                status=409,
            )
        return RedirectResponse(_here(request, done="resumed"), status_code=303)
    # The page always sends every field, empty or not: one missing is not "no filter", and
    # saving it so would wipe the subscriber's keywords.
    missing = [name for name in FIELDS if name not in form]
    if missing:
        raise HTTPException(400, f"the form is missing {', '.join(missing)}")
    values = {name: form[name] for name in FIELDS}
    values["cadence"] = form.get("cadence", subscriber.cadence)  # a page from before cadences
    filters, errors = validate_fields(values)
    cadence = subscriber.cadence
    try:
        cadence = validate_cadence(values["cadence"])
    except SubscriberError as exc:
        errors = {**errors, "cadence": problem(exc.code)}
        filters = None
    if filters is None:
        return _page(request, subscriber, values=values, errors=errors, shown=None, status=422)
    if action == "preview":
        return _page(
            request, subscriber, values=values, errors={}, shown=await preview(svc, filters)
        )
    changed = await svc.write(Store.update_filters, subscriber.id, filters=filters, cadence=cadence)
    log_event("preferences.saved", subscriber=subscriber.id, changed=changed)
    # Post/redirect/get: reloading the page does not post the form again.
    return RedirectResponse(_here(request, done="saved"), status_code=303)


def _erase_between_sends(store: Store, email: str) -> bool:
    """Erase `email` unless a send is running (False then: try again later)."""
    try:
        store.erase_address(email, hold=between_sends(store.path, doing="erase"))
    except AnotherSend:
        return False
    except DeliveryError as exc:  # the send lock's file cannot be opened: the store's fault
        raise StoreError(str(exc)) from None
    return True


async def _erase(request: Request, subscriber: Subscriber, *, confirmed: bool) -> Response:
    """Erase the subscriber (after they ticked that they understand), or say why not."""
    svc = service(request)
    values = form_values(subscriber)
    if not confirmed:
        errors = {"erase": problem("erase_unconfirmed")}
        return _page(request, subscriber, values=values, errors=errors, shown=None, status=422)
    if not await svc.write(_erase_between_sends, subscriber.email):
        # A send is claiming and sending now; a few minutes later it has ended.
        return _page(
            request, subscriber, values=values, errors={}, shown=None, notice="busy", status=409
        )
    log_event("erase", subscriber=subscriber.id)
    return svc.pages.render(request, "web/erased.html", email=subscriber.email)


async def preferences_preview(request: Request) -> Response:
    """GET /p/TOKEN/preview?keywords=...: the preview (or the problems) as an HTML fragment."""
    svc = service(request)
    subscriber = await svc.subscriber_for(request.path_params["token"], purpose="preferences")
    if subscriber is None:
        return svc.not_found(request)
    values = {name: request.query_params.get(name, "")[:20_000] for name in FIELDS}
    filters, errors = validate_fields(values)
    body = svc.pages.text(
        "web/_preview.html",
        preview=None if filters is None else await preview(svc, filters),
        errors=errors,
    )
    # 200 either way: the fragment itself shows the problems (a 422 would only alarm consoles).
    return HTMLResponse(body, headers=dict(PAGE_HEADERS))
