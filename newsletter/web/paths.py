"""One spelling per path: `//feeds/x.xml`, `/./u/T` and `/a/../p/T` are served as what they name;
and the service under base_url's path (`https://example.com/papers`: `/papers/u/T`).

Every rule keyed on a path prefix (private feeds, service routes, token redaction in logs)
sees the canonical path, so no spelling of a private URL is public or logged whole.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def base_path(base_url: str) -> str:
    """base_url's path without its trailing slash, as links spell it: "" at a host's root, else
    e.g. "/papers" (or "/%EB%85%BC%EB%AC%B8")."""
    return urlsplit(base_url).path.rstrip("/")


class BasePath:
    """ASGI middleware: a service whose base_url has a path answers under it.

    `/papers/u/T` is handled as `/u/T`, once (`/papers/papers/u/T` is `/papers/u/T`, which is
    nothing); `/papers` redirects to `/papers/`, where the site's relative links work. A proxy
    in front passes the path on as it is: one that took the prefix off would make
    `/papers/x.html` of a site folder named like it unreachable. A path outside the prefix is
    handled as it is (a request straight to the service). The pages link under the prefix.
    """

    def __init__(self, app: ASGIApp, *, root: str) -> None:
        self.app = app
        self.root = unquote(root)  # uvicorn's scope["path"] is decoded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = self.root
        if root and scope["type"] == "http":
            path: str = scope["path"]
            if path == root:
                query = scope.get("query_string", b"").decode("latin-1")
                location = quote(root) + "/" + (f"?{query}" if query else "")
                await RedirectResponse(location)(scope, receive, send)
                return
            if path.startswith(root + "/"):
                inner = path[len(root) :]
                # No root_path: Starlette would take it off the path a second time.
                scope = {**scope, "path": inner, "raw_path": quote(inner).encode()}
        await self.app(scope, receive, send)


def canonical_path(path: str) -> str:
    """`path` without empty or `.` segments, with `..` resolved (never above the root).

    A trailing slash is kept: `/topics/` names a folder's index page.
    """
    if "//" not in path and "/." not in path:
        return path  # the common case, checked in C
    parts: list[str] = []
    segments = path.split("/")
    for segment in segments:
        if segment == "..":
            if parts:
                parts.pop()
        elif segment not in ("", "."):
            parts.append(segment)
    folder = segments[-1] in ("", ".", "..") and bool(parts)
    return "/" + "/".join(parts) + ("/" if folder else "")


class CanonicalPath:
    """ASGI middleware: rewrites the request's path to its canonical spelling before anything."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = canonical_path(scope["path"])
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": quote(path).encode()}
        await self.app(scope, receive, send)
