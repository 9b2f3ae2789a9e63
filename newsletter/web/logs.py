"""Structured logs: one JSON object per line, with tokens shortened so logs never hold a link."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("newsletter.web")

# Path segments after these prefixes are capabilities (signed tokens, private feed names).
# Every segment after one of these is cut, anywhere in the path: a link pasted under another
# prefix (`/papers/u/T`, a 404) still carries a working token, and so does `/p/u/T`.
_SECRET_ROUTES = frozenset({"u", "p", "confirm", "feeds"})
_SHOWN = 6  # characters of a token kept in logs: enough to correlate, far too few to use
PATH_SHOWN = 200  # characters of a path kept in logs; longer ones are junk or an attack


def redact_path(path: str) -> str:
    """The path with any token cut to its first few characters, e.g. /u/MTc.abc -> /u/MTc.ab…

    Expects the canonical path (see paths.py); at most PATH_SHOWN characters are kept.
    """
    parts = path.split("/")
    for n in range(len(parts) - 1, 0, -1):  # from the end: a cut segment is still tested
        if parts[n - 1] in _SECRET_ROUTES and parts[n]:
            parts[n] = parts[n][:_SHOWN] + "…"
    shown = "/".join(parts)
    return shown if len(shown) <= PATH_SHOWN else shown[:PATH_SHOWN] + "…"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and any `extra` fields."""

    # uvicorn adds `color_message`, the same text with terminal colours: not for JSON.
    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
        "message",
        "asctime",
        "color_message",
    }

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            data["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(*, level: int = logging.INFO) -> None:
    """Send the service's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("newsletter", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level)
        log.propagate = False
    # Every other library's warnings (the form parser's about a malformed body, say) as JSON
    # lines too: without a handler, Python would print them as bare text.
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # Our access log below replaces uvicorn's, which would print tokens in full.
    logging.getLogger("uvicorn.access").disabled = True
    # One process, one event loop: thread and process names in every record cost a few
    # microseconds per request and say nothing.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with fields (never pass a secret or a whole token)."""
    logger.log(level, event, extra=fields)


class AccessLog:
    """ASGI middleware logging each request: method, redacted path, status, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            client = scope.get("client")
            # makeRecord + handle: the same record as logger.info, without the stack walk that
            # finds the caller's file and line (a third of the cost of logging a feed poll).
            record = logger.makeRecord(
                logger.name,
                logging.INFO,
                __file__,
                0,
                "request",
                (),
                None,
                extra={
                    "method": scope["method"],
                    "path": redact_path(scope["path"]),
                    "status": status,
                    "ms": round((time.perf_counter() - start) * 1000, 2),
                    "client": client[0] if client else None,
                },
            )
            logger.handle(record)
