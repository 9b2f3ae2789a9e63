"""The ASGI app of `newsletter serve`: the built site, unsubscribe, preferences, sign-up, health.

Handlers are thin: they read a token or a form, call the store, the matcher or the mailer,
and render a template. Everything else lives in the library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..delivery.pipeline import Sender
from ..delivery.smtp import smtp_sender
from ..errors import StoreBusy, StoreError
from ..mail.dkim import signer_for
from ..store import Clock, Store, utc_now
from ..store.pool import StorePool
from .hooks import Fetcher, SnsCertificates, fetch_https, postmark_hook, ses_hook
from .logs import AccessLog, log_event, redact_path
from .pages import Pages
from .paths import BasePath, CanonicalPath, base_path
from .preferences import preferences_page, preferences_post, preferences_preview
from .private_feeds import PrivateFeedSource, private_feed
from .security import CsrfGuard, RateLimiter, SignupLimits, trusted_networks
from .service import STORE_THREADS, WRITE_THREADS, Service, service
from .signup import confirm_page, confirm_post, signup_page, signup_post
from .static import SiteFiles, StaticSite
from .unsubscribe import unsubscribe_now, unsubscribe_page
from .watch import DigestWatcher

# Paths the service answers itself; the built site is never consulted for them.
SERVICE_PATHS = (
    "/u/",
    "/p/",
    "/feeds/",
    "/subscribe",
    "/confirm/",
    "/healthz",
    "/hooks/",
    "/-/",
)
RETRY_AFTER = 10  # seconds a client is asked to wait after the database stayed locked


async def healthz(request: Request) -> Response:
    """GET /healthz: JSON saying whether the database answers and can be written (and what it holds).

    "db" is "ok", "busy" (another process is writing: still healthy), or what is wrong:
    "read-only", "full", "corrupt", "newer", "gone" or "error" (503). With --watch, "watch" says whether
    the daily job's last pass failed (top-level `ok` false, still 200: see the README).
    """
    svc = service(request)
    state = "ok"
    try:
        latest = await svc.db(Store.latest_date)
        try:
            await asyncio.to_thread(svc.probe_database)
        except StoreBusy:
            # Another process is writing (a send, an ingest): reads work and writes will once
            # it is done. Healthy, and saying so keeps a supervisor from restarting us.
            state = "busy"
    except Exception as exc:  # any database failure means "not healthy", never a traceback
        fault = exc.fault if isinstance(exc, StoreError) else "error"
        log_event("healthz.failed", level=logging.ERROR, error=f"{type(exc).__name__}: {exc}"[:300])
        return JSONResponse(
            {"ok": False, "db": fault}, status_code=503, headers={"cache-control": "no-store"}
        )
    site = svc.settings.site_dir.is_dir()
    gone = svc.site_gone(present=site)
    body: dict[str, object] = {
        "ok": not gone,
        "db": state,
        "latest_digest": latest.isoformat() if latest else None,
        "site": site,
    }
    if gone:  # every page and public feed is 404 now
        body["error"] = f"{svc.settings.site_dir}: the site folder is gone"
    watcher: DigestWatcher | None = request.app.state.watcher
    if watcher is not None:
        watch = watcher.health()
        body["watch"] = watch
        body["ok"] = body["ok"] and watch["ok"]
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def asset(request: Request) -> Response:
    """GET /-/HASH/NAME: the pages' stylesheet and script, cacheable forever under their hash."""
    svc = service(request)
    for item in svc.pages.assets.values():
        if item.url == request.url.path:
            return Response(
                item.body,
                media_type=item.content_type,
                headers={
                    "cache-control": "public, max-age=31536000, immutable",
                    "x-content-type-options": "nosniff",
                },
            )
    return svc.not_found(request)


async def _http_error(request: Request, exc: Exception) -> Response:
    svc = service(request)
    if isinstance(exc, StoreError):
        # Nothing was written (the transaction rolled back): another process held the lock
        # past the busy timeout, or the database cannot be written now (read-only, full, a
        # failing disk). The client may try again (mail providers retry an unsubscribe):
        # 503, not a 500. /healthz says which.
        if isinstance(exc, StoreBusy):
            log_event("busy", level=logging.WARNING, path=redact_path(request.url.path))
        else:
            log_event("store.failed", level=logging.ERROR, fault=exc.fault, error=str(exc)[:300])
        response = svc.pages.render(request, "web/error.html", status=503, code=503, detail=None)
        response.headers["retry-after"] = str(RETRY_AFTER)
        return response
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return svc.not_found(request)
    if status == 403:  # a form posted from another site (CsrfGuard.own_form)
        return svc.pages.render(request, "web/403.html", status=403)
    if status >= 500:
        log_event("error", level=logging.ERROR, error=f"{type(exc).__name__}: {exc}"[:300])
    # Our own refusals say why (415: how to send a form); Starlette's stock phrase says nothing.
    detail = exc.detail if isinstance(exc, HTTPException) else None
    if detail == HTTPStatus(status).phrase:
        detail = None
    response = svc.pages.render(
        request, "web/error.html", status=status, code=status, detail=detail
    )
    if isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)  # 405's Allow, 429's Retry-After
    return response


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its request's body was in: nobody to answer, nothing wrong
    here. Logged with nginx's 499 (no answer is sent: the connection is gone)."""
    return Response(status_code=499)


def _slash_redirect(router: Router, files: SiteFiles, *, root: str) -> ASGIApp:
    """The router's answer when no route matches: a relative redirect to the same path with
    (or without) a trailing slash when that one matches; 405 for another method than GET or
    HEAD on a file of the site (StaticSite serves those two); else the 404 page. `root`:
    base_url's path, which the redirect keeps (BasePath took it off the request)."""

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            found = files.cached(path) or await anyio.to_thread.run_sync(files.lookup, path)
            if found is not None:
                raise HTTPException(405, headers={"allow": "GET, HEAD"})
        if path != "/":
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            if any(
                route.matches({**scope, "path": other})[0] != Match.NONE for route in router.routes
            ):
                query = scope.get("query_string", b"").decode("latin-1")
                # Relative: the request's Host header never makes it into a Location.
                location = root + other + (f"?{query}" if query else "")
                await RedirectResponse(location)(scope, receive, send)
                return
        raise HTTPException(404)

    return answer


def _default_sender(settings: Settings) -> Callable[[], Sender]:
    def make() -> Sender:
        return smtp_sender(settings)

    return make


def create_app(
    *,
    settings: Settings,
    sender_factory: Callable[[], Sender] | None = None,
    clock: Clock = utc_now,
    signup_limits: SignupLimits | None = None,
    confirm_days: int = 7,
    watch_dir: Path | None = None,
    watch_interval: float = 5.0,
    busy_timeout: float = 30.0,
    fetch: Fetcher = fetch_https,
    create_db: bool = True,
) -> Starlette:
    """The service for `settings` (ConfigError when the secret key or DKIM key is unusable).

    `sender_factory` makes the sender for confirmation mail and for the watched daily job
    (default: SMTP as the settings say);
    `watch_dir`, when given, is polled every `watch_interval` seconds for new digests, which
    are ingested, built and sent by the same ledger as `newsletter send`;
    `busy_timeout` is how long a write waits for another process's lock before answering 503;
    `fetch` GETs SNS signing certificates and subscription confirmations for /hooks/ses;
    `create_db`: make the database when it is not there (else a StoreError).
    """
    key = settings.require_secret_key()
    signer_for(settings)  # a missing or bad DKIM key stops the start, not a sign-up
    limits = signup_limits or SignupLimits()
    root = base_path(settings.base_url)  # the service answers, and its pages link, under it
    csrf = CsrfGuard(key=key, base_url=settings.base_url)
    stores = StorePool(
        settings.db,
        clock=clock,
        size=STORE_THREADS + WRITE_THREADS,
        busy_timeout=busy_timeout,
        create=create_db,
    )
    svc = Service(
        settings=settings,
        stores=stores,
        key=key,
        pages=Pages(
            csrf=csrf,
            site_title=settings.site_title,
            template_dir=settings.template_dir,
            root=root,
        ),
        csrf=csrf,
        clock=clock,
        sender_factory=sender_factory or _default_sender(settings),
        per_address=RateLimiter(limits.per_address),
        per_client=RateLimiter(limits.per_client),
        confirm_days=confirm_days,
        proxies=trusted_networks(settings.trusted_proxies),
        site_seen=settings.site_dir.is_dir(),
    )
    watcher = (
        DigestWatcher(
            settings=settings,
            folder=watch_dir,
            sender_factory=svc.sender_factory,
            interval=watch_interval,
            clock=clock,
            check_file=stores.check_file,
        )
        if watch_dir is not None
        else None
    )

    private_feeds = PrivateFeedSource(settings=settings, key=key)

    def digest_stored() -> None:
        svc.forget_newest()
        private_feeds.forget()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log_event(
            "start",
            db=str(settings.db),
            site=str(settings.site_dir),
            base_url=settings.base_url,
            watch=str(watch_dir) if watch_dir else None,
        )
        if watcher is not None:
            watcher.on_change = digest_stored
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                await watcher.stop()
            stores.close()
            log_event("stop")

    routes = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET", "HEAD"]),
        Route("/u/{token}", unsubscribe_now, methods=["POST"]),
        Route("/p/{token}", preferences_page, methods=["GET", "HEAD"]),
        Route("/p/{token}", preferences_post, methods=["POST"]),
        Route("/p/{token}/preview", preferences_preview, methods=["GET"]),
        Route("/feeds/{name}", private_feed, methods=["GET", "HEAD"]),
        Route("/subscribe", signup_page, methods=["GET", "HEAD"]),
        Route("/subscribe", signup_post, methods=["POST"]),
        Route("/confirm/{token}", confirm_page, methods=["GET", "HEAD"]),
        Route("/confirm/{token}", confirm_post, methods=["POST"]),
        Route("/-/{digest}/{name}", asset, methods=["GET", "HEAD"]),
        Route("/hooks/postmark", postmark_hook, methods=["POST"]),
        Route("/hooks/ses", ses_hook, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            StoreError: _http_error,  # answered here, not re-raised to uvicorn as a crash
            ClientDisconnect: _client_gone,
            Exception: _http_error,
        },
    )
    app.state.service = svc
    app.state.private_feeds = private_feeds
    app.state.watcher = watcher
    app.state.sns_certificates = SnsCertificates(fetch=fetch)
    # Starlette's own trailing-slash redirect writes the request's Host into Location.
    app.router.redirect_slashes = False
    site = SiteFiles(settings.site_dir)
    app.router.default = _slash_redirect(app.router, site, root=root)
    # Added last is outermost: every path is canonical before the access log and the
    # private-path rules see it; the access log sees every request; the site is served first.
    app.add_middleware(StaticSite, files=site, skip=SERVICE_PATHS)
    app.add_middleware(AccessLog)
    app.add_middleware(BasePath, root=root)
    app.add_middleware(CanonicalPath)
    return app
