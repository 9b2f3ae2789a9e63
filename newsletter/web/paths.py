"""One spelling per path: `//feeds/x.xml`, `/./u/T` and `/a/../p/T` are served as what they name.

Every rule keyed on a path prefix (private feeds, service routes, token redaction in logs)
sees the canonical path, so no spelling of a private URL is public or logged whole.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send


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
