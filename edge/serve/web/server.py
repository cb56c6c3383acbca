"""One aiohttp application served on one address, bounded against bad or hostile clients.

aiohttp parses HTTP/1.1 (keep-alive, pipelining, HEAD, chunked bodies), speaks
WebSocket and TLS; this module adds the lifecycle and the limits the line needs
whatever a client sends:

- at most ``max_connections`` connections at once (WebSockets included); one
  more gets a 503 and is closed;
- a connection's first request head must arrive within ``request_timeout_s``
  (408, then closed): a client that connects and says nothing, or dribbles a
  head, does not hold a connection slot; an idle keep-alive connection is closed
  after ``idle_timeout_s`` (aiohttp's keep-alive timeout, which also bounds a
  later request head);
- request heads: a line or a header field of at most ``MAX_FIELD_BYTES``, at most
  ``MAX_HEADERS`` header lines (aiohttp answers 400 past that, and to any
  malformed request, then closes);
- a request body of at most ``max_body_bytes`` (413);
- a handler that raises gets the client a 500; it is logged once until a request
  succeeds again (the server keeps serving).

::

    async with WebServer(app, "127.0.0.1", 9713, limits=ServerLimits()) as server:
        host, port = server.address

Errors: binding the address fails with :class:`~edge.errors.EdgeError` (the
``OSError`` chained).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

from aiohttp import web

from edge.errors import EdgeError
from edge.logs import OutageLog

__all__ = [
    "MAX_FIELD_BYTES",
    "MAX_HEADERS",
    "ServerLimits",
    "ServerState",
    "WebServer",
    "new_app",
]

log = logging.getLogger("edge.web")

MAX_HEADERS = 64
MAX_FIELD_BYTES = 8190
SHUTDOWN_TIMEOUT_S = 2.0


def _plain(status: str, text: str) -> bytes:
    body = text.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_TOO_MANY = _plain("503 Service Unavailable", "too many connections\n")
_TOO_SLOW = _plain("408 Request Timeout", "no request received in time\n")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int = 64
    max_body_bytes: int = 65_536
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0


class ServerState(enum.Enum):
    UNOPENED = "unopened"
    RUNNING = "running"
    CLOSED = "closed"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_middleware(name: str) -> Any:
    """A handler that raises answers 500, logged once per outage, never twice in a row."""
    outage = OutageLog(log, f"{name} request handling", server=name)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outage.failed(f"{request.method} {request.path}: {exc!r}")
            return web.Response(status=500, text="internal error\n")
        if outage.is_down:
            outage.recovered()
        return response

    return middleware


@web.middleware
async def http_1_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp also answers HTTP/0.9 and "HTTP/2.0" heads; only 1.0 and 1.1 are spoken here."""
    if request.version not in ((1, 0), (1, 1)):
        response = web.Response(status=505, text="only HTTP/1.0 and HTTP/1.1\n")
        response.force_close()
        return response
    return await handler(request)


def new_app(name: str, limits: ServerLimits, *middlewares: Any) -> web.Application:
    """An application with the body limit and the error middleware (outermost)."""
    return web.Application(
        client_max_size=limits.max_body_bytes,
        middlewares=[error_middleware(name), http_1_only, *middlewares],
    )


class _ClientErrors(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp logs a malformed request with a traceback at ERROR; it is the client's
    error, not the edge's: debug."""

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        kwargs.pop("exc_info", None)
        self.debug(msg, *args, **kwargs)


class _Refused(asyncio.Protocol):
    """A connection beyond the limit: a 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(_TOO_MANY)
        transport.close()


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol with a deadline for the connection's first request head."""

    def __init__(self, inner: asyncio.Protocol, server: WebServer) -> None:
        self._inner = inner
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.connection_opened(self)
        self._deadline = asyncio.get_running_loop().call_later(
            self._server.limits.request_timeout_s, self._too_slow
        )
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self._deadline.cancel()
                self._deadline = None
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._server.connection_closed(self)
        self._inner.connection_lost(exc)

    def _too_slow(self) -> None:
        # No head yet, so aiohttp has written nothing: the 408 is the only response.
        self._deadline = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._server.rejected += 1
            transport.write(_TOO_SLOW)
            transport.close()


class WebServer:
    """Serves ``app`` on ``host:port`` (port 0 picks a free one), over TLS with ``ssl_context``."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        name: str = "web",
        limits: ServerLimits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits or ServerLimits()
        if self.limits.max_connections < 1:
            raise ValueError("need max_connections >= 1")
        self._app = app
        self._host = host
        self._port = port
        self._name = name
        self._ssl = ssl_context
        self._state = ServerState.UNOPENED
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._open: set[_Guarded] = set()
        self.rejected = 0  # refused connections and requests timed out by this server

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def connections(self) -> int:
        return len(self._open)

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when constructed with port 0)."""
        if self._listener is None or not self._listener.sockets:
            raise EdgeError(f"{self._name}: the server is not listening")
        sockname = self._listener.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self._ssl is not None else 'http'}://{shown}:{port}"

    async def __aenter__(self) -> Self:
        if self._state is not ServerState.UNOPENED:
            raise EdgeError(f"{self._name}: a WebServer runs once (state {self._state.value})")
        self._state = ServerState.RUNNING
        runner = web.AppRunner(
            self._app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            keepalive_timeout=self.limits.idle_timeout_s,
            max_line_size=MAX_FIELD_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            max_headers=MAX_HEADERS,
            logger=_ClientErrors(logging.getLogger("edge.web.clients"), {}),
        )
        self._runner = runner
        try:
            await runner.setup()
            protocols = runner.server
            assert protocols is not None

            def protocol() -> asyncio.Protocol:
                if len(self._open) >= self.limits.max_connections:
                    self.rejected += 1
                    return _Refused()
                return _Guarded(protocols(), self)

            self._listener = await asyncio.get_running_loop().create_server(
                protocol, self._host, self._port, ssl=self._ssl
            )
        except OSError as exc:
            await self.aclose()
            raise EdgeError(
                f"{self._name}: cannot listen on {self._host}:{self._port}: {exc}"
            ) from exc
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._state is ServerState.CLOSED:
            return
        self._state = ServerState.CLOSED
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # app shutdown hooks, then every connection closed
        for guarded in list(self._open):
            transport = guarded._transport
            if transport is not None:
                transport.close()
        if listener is not None:
            await listener.wait_closed()

    # -- connection accounting (called by the protocols) ----------------------------

    def connection_opened(self, protocol: _Guarded) -> None:
        self._open.add(protocol)

    def connection_closed(self, protocol: _Guarded) -> None:
        self._open.discard(protocol)
