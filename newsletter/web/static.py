"""Serving the built site: feeds and archive pages with ETag, Last-Modified, 304s and gzip.

Feed readers poll all day, so a conditional GET must cost a `stat` and a dictionary lookup:
files are read, hashed and gzipped once, in a worker thread, and kept in memory (bounded) until
they change. `build` writes a gzip sibling (`NAME.gz`) of every large file; when it holds the
file's bytes it is sent as it is, so a multi-megabyte feed is never compressed here.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import hashlib
import mimetypes
import os
import re
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from ..links import PRIVATE_DIR

FEED_MAX_AGE = 300  # seconds a reader may reuse a feed before asking again (with its ETag)
_CACHE_BYTES = 64 * 1024 * 1024  # memory for cached files (bodies plus gzipped copies)
_CACHE_FILE_LIMIT = 24 * 1024 * 1024  # larger files are read (in a thread) on each request
_GZIP_MIN = 256  # smaller bodies do not shrink enough to be worth a Content-Encoding

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".rss": "application/rss+xml; charset=utf-8",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".gz": "application/gzip",  # a build's gzip sibling, when asked for by name
    ".opml": "text/x-opml; charset=utf-8",  # the feed list readers import
}


def content_type(name: str, head: bytes) -> str:
    """The Content-Type for a file: by extension, with XML and JSON feeds told apart by content."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix == ".xml":
        # RSS and Atom both end in .xml on many sites; the root element says which it is.
        found = {tag: head.find(tag) for tag in (b"<rss", b"<feed", b"<rdf:RDF")}
        present = {tag: pos for tag, pos in found.items() if pos >= 0}
        if present:
            first = min(present, key=lambda tag: present[tag])
            return {
                b"<rss": "application/rss+xml; charset=utf-8",
                b"<feed": "application/atom+xml; charset=utf-8",
                b"<rdf:RDF": "application/rss+xml; charset=utf-8",
            }[first]
    if suffix == ".json" and b"jsonfeed.org/version" in head:
        return "application/feed+json; charset=utf-8"
    if suffix in _TYPES:
        return _TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def _compressible(kind: str) -> bool:
    base = kind.split(";")[0]
    return base.startswith("text/") or base.endswith(("xml", "json", "javascript"))


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file of the site as served: bytes, gzipped bytes and validators."""

    path: Path
    stat_key: tuple[int, int, int]  # (mtime_ns, size, inode): changes when the file does
    body: bytes
    gzipped: bytes | None  # None when not worth compressing
    digest: str  # sha256 of the bytes, the ETag's value
    mtime: int  # whole seconds, as Last-Modified and If-Modified-Since compare
    last_modified: bytes
    content_type: bytes
    cache_control: bytes

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _sibling(path: Path, body: bytes) -> bytes | None:
    """The bytes of `path`'s gzip sibling (NAME.gz) if it holds `body`, else None.

    A gzip member ends with the CRC-32 and size of what it holds: a sibling left from an older
    file (or a half-finished build) does not match and is ignored, whatever the mtimes say.
    """
    try:
        packed = path.with_name(path.name + ".gz").read_bytes()
    except OSError:
        return None
    trailer = struct.pack("<II", zlib.crc32(body), len(body) & 0xFFFFFFFF)
    return packed if packed[:2] == b"\x1f\x8b" and packed[-8:] == trailer else None


def load_file(path: Path) -> StaticFile:
    """Read, hash and (when useful) gzip one file, or take its gzip sibling. Blocks: use a thread."""
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        body = handle.read()
    kind = content_type(path.name, body[:1024])
    gzipped = None
    if _compressible(kind) and len(body) >= _GZIP_MIN:
        # mtime=0 keeps the gzip bytes a pure function of the content.
        packed = _sibling(path, body) or gzip.compress(body, compresslevel=6, mtime=0)
        gzipped = packed if len(packed) < len(body) else None
    mtime = int(st.st_mtime)
    return StaticFile(
        path=path,
        stat_key=_stat_key(st),
        body=body,
        gzipped=gzipped,
        digest=hashlib.sha256(body).hexdigest()[:32],
        mtime=mtime,
        last_modified=email.utils.formatdate(mtime, usegmt=True).encode(),
        content_type=kind.encode(),
        cache_control=(
            f"public, max-age={FEED_MAX_AGE}".encode()
            if not kind.startswith("text/html")
            else b"public, max-age=60"
        ),
    )


def accepts_gzip(value: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (RFC 9110 12.5.3): by gzip's own weight
    when it is named, else by `*`'s; a weight of 0, or one that is no number, refuses."""
    weights: dict[str, float] = {}
    for part in value.split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(number.strip())
                except ValueError:
                    weight = 0.0
                if not 0.0 <= weight <= 1.0:  # also NaN
                    weight = 0.0
        weights.setdefault(coding.lower(), weight)
    weight = weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0)))
    return weight > 0.0


def etag_matches(value: str, digest: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2), any encoding of the same bytes matching."""
    for tag in value.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/").strip('"')
        if tag.removesuffix("-gzip") == digest:
            return True
    return False


# ANSI C's asctime() format, one of the three HTTP dates a recipient must accept.
_ASCTIME = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}")


def not_modified(file: StaticFile, headers: dict[bytes, bytes]) -> bool:
    """Whether a conditional GET can be answered with 304 (If-None-Match wins over If-Modified-Since)."""
    inm = headers.get(b"if-none-match")
    if inm is not None:
        return etag_matches(inm.decode("latin-1"), file.digest)
    ims = headers.get(b"if-modified-since")
    if ims is not None:
        text = ims.decode("latin-1")
        try:
            since = email.utils.parsedate_to_datetime(text)
            if since.tzinfo is None and _ASCTIME.fullmatch(text.strip()):
                since = since.replace(tzinfo=dt.UTC)  # asctime's date is GMT (RFC 9110 5.6.7)
            return since.tzinfo is not None and file.mtime <= int(since.timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            # Unparsable or out of range (year 99999999999999999999): RFC 9110 13.1.3 says
            # to ignore the header, so the full response goes out.
            return False
    return False


class SiteFiles:
    """The files of a site folder by URL path, cached in memory and re-read when they change."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: OrderedDict[str, StaticFile] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def _candidates(self, url_path: str) -> list[str] | None:
        """Relative file names to try for a URL path, or None when the path is not allowed."""
        if "\x00" in url_path or "\\" in url_path:
            return None
        parts = [p for p in url_path.split("/") if p]
        if any(p.startswith(".") for p in parts):  # no dotfiles, no "..": nothing outside the site
            return None
        rel = "/".join(parts)
        if not rel or url_path.endswith("/"):
            return [f"{rel}/index.html".lstrip("/")]
        if "." not in parts[-1]:
            return [rel, f"{rel}.html"]  # /2024-12-13 serves 2024-12-13.html
        return [rel]

    def _resolve(self, rel: str) -> Path | None:
        root = self.root.resolve()
        try:
            path = (root / rel).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not path.is_relative_to(root) or not path.is_file():
            return None
        # Where a link inside the site leads counts, not the URL: no dotfile, nothing under
        # feeds/ (the private feeds older builds wrote) by another name.
        parts = path.relative_to(root).parts
        if parts[0] == PRIVATE_DIR.rstrip("/") or any(part.startswith(".") for part in parts):
            return None
        return path

    def cached(self, url_path: str) -> StaticFile | None:
        """The file for `url_path` if it is in memory and unchanged on disk (costs one stat)."""
        cached = self._cache.get(url_path)
        if cached is not None:
            try:
                if _stat_key(os.stat(cached.path)) == cached.stat_key:
                    return cached
            except OSError:
                pass
            self._forget(url_path)
        return None

    def lookup(self, url_path: str) -> StaticFile | None:
        """The current file for `url_path`, or None (missing, a folder, outside the site)."""
        cached = self.cached(url_path)
        if cached is not None:
            return cached
        names = self._candidates(url_path)
        if names is None:
            return None
        for rel in names:
            path = self._resolve(rel)
            if path is None:
                continue
            try:
                found = load_file(path)
            except OSError:
                return None
            if found.size <= _CACHE_FILE_LIMIT:
                self._remember(url_path, found)
            return found
        return None

    def _forget(self, url_path: str) -> None:
        with self._lock:
            old = self._cache.pop(url_path, None)
            if old is not None:
                self._bytes -= old.size

    def _remember(self, url_path: str, file: StaticFile) -> None:
        with self._lock:
            old = self._cache.pop(url_path, None)
            if old is not None:
                self._bytes -= old.size
            self._cache[url_path] = file
            self._bytes += file.size
            while self._bytes > _CACHE_BYTES and self._cache:
                _, dropped = self._cache.popitem(last=False)
                self._bytes -= dropped.size


_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class StaticSite:
    """ASGI middleware serving a `SiteFiles` folder ahead of `app`, which gets everything else.

    Paths under `skip` (the service's own routes) go straight to `app`; so does anything the
    site does not hold, so one 404 page covers both. Serving before the router keeps a feed
    poll from being matched against every service route first.
    """

    def __init__(self, app: ASGIApp, *, files: SiteFiles, skip: tuple[str, ...] = ()) -> None:
        self.app = app
        self.files = files
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or scope["path"].startswith(self.skip)
        ):
            await self.app(scope, receive, send)
            return
        file = self.files.cached(scope["path"])
        if file is None:
            # Reading (and gzipping) a file, or a big one each time, is no job for the event loop.
            file = await anyio.to_thread.run_sync(self.files.lookup, scope["path"])
        if file is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        use_gzip = file.gzipped is not None and accepts_gzip(
            headers.get(b"accept-encoding", b"").decode("latin-1")
        )
        etag = f'"{file.digest}-gzip"' if use_gzip else f'"{file.digest}"'
        out = [
            (b"etag", etag.encode()),
            (b"last-modified", file.last_modified),
            (b"cache-control", file.cache_control),
            *_COMMON,
        ]
        if file.gzipped is not None:
            out.append((b"vary", b"Accept-Encoding"))
        if not_modified(file, headers):
            await send({"type": "http.response.start", "status": 304, "headers": out})
            await send({"type": "http.response.body", "body": b""})
            return
        body = file.gzipped if use_gzip and file.gzipped is not None else file.body
        out.append((b"content-type", file.content_type))
        out.append((b"content-length", str(len(body)).encode()))
        if use_gzip:
            out.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
