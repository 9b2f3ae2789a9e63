"""How uvicorn serves the app, with the limits a public service needs and uvicorn lacks.

uvicorn (0.29 to at least 0.54) has no timeout for a request's headers: its keep-alive timer
runs only between requests and stops at the first byte, so a client that trickles a header a
byte at a time, or connects and sends nothing, holds its connection for ever. Nor does it
bound the request line or the headers (httptools accepts a 65 KB path), and its
`limit_concurrency` answers 503 only once a request's headers are in, so idle connections
still pile up. Nor does anything bound a request's body, in time or size: a client that
declares 100 KB and sends 6 bytes holds a request slot for ever. `GuardedHttpTools` adds the
missing guards to uvicorn's httptools protocol:

- a request's headers must arrive within `header_timeout` seconds of its first byte (or of
  the connection opening): 408, then the connection is closed;
- its body, then, within `header_timeout` seconds more (and a second per BODY_RATE bytes of
  a large one): 408 when the app has not answered yet, else the connection is closed;
- a request line over MAX_REQUEST_LINE bytes gets 414, headers over MAX_HEADER_BYTES get 431,
  a body over MAX_BODY_BYTES (declared or sent) 413, HTTP/1.1 without Host 400;
- connections beyond `serve_max_connections` are closed as soon as they open.
"""

from __future__ import annotations

import asyncio
import http

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Settings
from .logs import log_event

MAX_REQUEST_LINE = 8 * 1024  # bytes of request target; browsers and mail providers stay far below
MAX_HEADER_BYTES = 32 * 1024  # bytes of all header names and values of one request
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open (uvicorn's default)
# Bytes of one request's body. The largest the service takes is a webhook's (1 MB, answered
# 413 in JSON by the hook itself); forms are far smaller (security.read_form).
MAX_BODY_BYTES = 2 * 1024 * 1024
BODY_RATE = 64 * 1024  # bytes a second a large body may take beyond the base timeout


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, size limits and a connection cap."""

    header_timeout: float = 10.0
    max_connections: int | None = None

    _timer: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _body_bytes = 0
    _started = False  # bytes of the current request have arrived (its headers are not complete)
    _in_body = False  # the current request's headers are in, its body is still owed
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            # Nothing has been read yet, so nothing is lost; a 503 would cost a read first.
            self._refused = True
            transport.abort()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self._idle():
            self._arm()  # the next request on a kept-alive connection starts its clock
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._started = True
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_REQUEST_LINE:
            self._refuse(http.HTTPStatus.REQUEST_URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._started = False
        hosts = sum(name == b"host" for name, _ in self.headers)
        if hosts > 1 or (self.parser.get_http_version() == "1.1" and not hosts):
            self._refuse(http.HTTPStatus.BAD_REQUEST)  # RFC 9112 3.2: one Host, required in 1.1
        declared = _declared_length(self.headers)
        if declared is not None and declared > MAX_BODY_BYTES:
            self._refuse(http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE)  # before the app starts
        super().on_headers_complete()
        if declared != 0:  # a body follows (a length, or chunked): it gets a clock of its own
            self._in_body = True
            self._body_bytes = 0
            self._arm(self.header_timeout + (declared or 0) / BODY_RATE)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > MAX_BODY_BYTES:  # chunked: no length said so beforehand
            self._cut_body(http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            raise ValueError("body too large")  # stops the parser (see _refuse)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._in_body:
            self._in_body = False
            self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # Raising in a parser callback (see _refuse) reaches uvicorn as a parse error; the
        # answer has been written already.
        if not self._refused:
            super().send_400_response(msg)

    def _idle(self) -> bool:
        """No request is being answered: the connection waits for the client's next headers."""
        return (self.cycle is None or self.cycle.response_complete) and not self.pipeline

    def _arm(self, seconds: float | None = None) -> None:
        self._disarm()
        self._timer = self.loop.call_later(
            self.header_timeout if seconds is None else seconds, self._too_slow
        )

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_body:
            self._cut_body(http.HTTPStatus.REQUEST_TIMEOUT)
            return
        if not self._idle():
            return
        if self._started:
            self._answer(http.HTTPStatus.REQUEST_TIMEOUT)
        else:  # nothing of a request arrived: close quietly, as the keep-alive timeout does
            self.transport.close()

    def _refuse(self, status: http.HTTPStatus) -> None:
        self._answer(status)
        raise ValueError(status.phrase)  # stops the parser; uvicorn reports it as a parse error

    def _cut_body(self, status: http.HTTPStatus) -> None:
        """End a request whose body came too slowly or grew too large, and its connection.

        The app has the request already: it is told the client left (its answer, if it makes
        one, goes nowhere) and the client gets `status`, unless an answer has begun, when
        closing is all that is left to do.
        """
        self._in_body = False
        cycle = self.cycle
        log_event("request.cut", status=status.value, received=self._body_bytes)
        if cycle is not None and not cycle.response_started and not self.pipeline:
            cycle.disconnected = True
            cycle.message_event.set()
            self._answer(status, logged=True)
        else:
            self._refused = True  # no parse-error 400 after an answer that has begun
            self._disarm()
            self.transport.close()

    def _answer(self, status: http.HTTPStatus, *, logged: bool = False) -> None:
        """Answer `status` and close, before the app sees the request (which the access log
        never does: this line is its record, without a path that may be huge or hold a token)."""
        if not logged:
            client = self.client[0] if self.client else None
            log_event("request.refused", status=status.value, client=client)
        self._refused = True
        self._disarm()
        body = f"{status.value} {status.phrase}\n".encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status.value, status.phrase.encode(), len(body), body)
        )
        self.transport.close()


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body's length the headers declare: 0 for none, None when chunked (unknown).

    httptools refuses a malformed or repeated Content-Length before this is asked.
    """
    length = 0
    for name, value in headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length" and value.strip().isdigit():
            length = int(value)
    return length


def server_config(app: ASGIApp, *, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for the service: host, port, limits and timeouts from `settings`."""
    protocol = type(
        "GuardedHttpTools",
        (GuardedHttpTools,),
        {
            "header_timeout": settings.serve_header_timeout,
            "max_connections": settings.serve_max_connections,
        },
    )
    return uvicorn.Config(
        app,
        host=settings.serve_host,
        port=settings.serve_port,
        http=protocol,
        log_config=None,
        access_log=False,  # ours (logs.AccessLog) shortens tokens; uvicorn's prints them whole
        server_header=False,
        # The app reads X-Forwarded-For itself, from `trusted_proxies` only: uvicorn's own
        # handling believes any loopback peer, so every local client could pick its address.
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE,
        # Requests being answered at once; beyond it uvicorn answers 503 (connections are
        # capped by the protocol above, which closes them before anything is read).
        limit_concurrency=settings.serve_max_connections,
    )
