"""One spelling per path: `//feeds/x.xml`, `/./u/T` and `/a/../p/T` are served as what they name;
and the service under base_url's path (`https://example.com/papers`: `/papers/u/T`).

Every rule keyed on a path prefix (private feeds, service routes, token redaction in logs)
sees the canonical path, so no spelling of a private URL is public or logged whole.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def base_path(base_url: str) -> str:
    """base_url's path without its trailing slash: "" at a host's root, else e.g. "/papers"."""
    return urlsplit(base_url).path.rstrip("/")


class BasePath:
    """ASGI middleware: a service whose base_url has a path answers under it.

    `/papers/u/T` is handled as `/u/T` (and `root_path` says `/papers`); `/papers` redirects to
    `/papers/`, where the site's relative links work. A path outside it is handled as it is,
    for a reverse proxy that takes the prefix off. The pages always link under the prefix.
    """

    def __init__(self, app: ASGIApp, *, root: str) -> None:
        self.app = app
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = self.root
        if root and scope["type"] == "http":
            path: str = scope["path"]
            if path == root:
                query = scope.get("query_string", b"").decode("latin-1")
                await RedirectResponse(root + "/" + (f"?{query}" if query else ""))(
                    scope, receive, send
                )
                return
            if path.startswith(root + "/"):
                inner = path[len(root) :]
                scope = {
                    **scope,
                    "path": inner,
                    "raw_path": quote(inner).encode(),
                    "root_path": scope.get("root_path", "") + root,
                }
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
