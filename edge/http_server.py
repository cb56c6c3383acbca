"""A small HTTP/1.1 server on the service's own event loop: ``/metrics``, ``/healthz``, ``/readyz``.

No thread and no framework: :func:`asyncio.start_server` and a strict parser
for the little a scraper or a load balancer sends. Only ``GET`` and ``HEAD``,
no request bodies, origin-form targets. Keep-alive as HTTP/1.1 says (a
Prometheus scraper reuses its connection), pipelined requests in order.

Bounded against a bad or hostile client, whatever it sends:

- the request head (request line and headers) is at most ``max_head_bytes``
  (431 past that) and at most ``MAX_HEADERS`` header lines;
- a request head must arrive within ``request_timeout_s`` (408), an idle
  keep-alive connection is closed after ``idle_timeout_s``, a client that does
  not read its response within ``request_timeout_s`` is dropped;
- at most ``max_connections`` connections at once; one more gets a 503 and is
  closed;
- a body (``Content-Length`` > 0 or any ``Transfer-Encoding``) is refused with
  413 and the connection closed, since nothing here reads one;
- malformed request lines or headers get a 400 and the connection is closed;
- a handler that raises gets the client a 500; it is logged once until a
  request succeeds again (the server keeps serving).

::

    async with HttpServer("127.0.0.1", 9712, {"/metrics": handler}) as server:
        host, port = server.address

Errors: binding the address fails with :class:`~edge.errors.EdgeError`
(the ``OSError`` chained).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType
from typing import Self
from urllib.parse import unquote

from edge.errors import EdgeError
from edge.logs import OutageLog

__all__ = ["Handler", "HttpServer", "HttpServerState", "Request", "Response"]

log = logging.getLogger("edge.http")

MAX_HEADERS = 64
DEFAULT_MAX_HEAD_BYTES = 8192
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_IDLE_TIMEOUT_S = 60.0
_METHODS = frozenset({"GET", "HEAD"})
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@dataclass(frozen=True, slots=True)
class Request:
    method: str  # GET or HEAD
    path: str  # percent-decoded, without the query
    query: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: Mapping[str, str]  # names lower-cased; repeated headers joined with ", "


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, text.encode())


Handler = Callable[[Request], Awaitable[Response]]


class HttpServerState(enum.Enum):
    UNOPENED = "unopened"
    RUNNING = "running"
    CLOSED = "closed"


class _BadRequest(Exception):
    """The client sent something this server will not parse; answered, then closed."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    """Serves ``routes`` (exact paths) on ``host:port``; port 0 picks a free one."""

    def __init__(
        self,
        host: str,
        port: int,
        routes: Mapping[str, Handler],
        *,
        name: str = "http",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        if max_connections < 1 or max_head_bytes < 64:
            raise ValueError("need max_connections >= 1 and max_head_bytes >= 64")
        self._host = host
        self._port = port
        self._routes = dict(routes)
        self._name = name
        self._max_connections = max_connections
        self._max_head = max_head_bytes
        self._request_timeout = request_timeout_s
        self._idle_timeout = idle_timeout_s
        self._state = HttpServerState.UNOPENED
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._handler_outage = OutageLog(log, f"{name} request handling", server=name)
        self.requests = 0
        self.rejected = 0  # requests answered 4xx/5xx by the server itself, and refused connections

    @property
    def state(self) -> HttpServerState:
        return self._state

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            raise EdgeError(f"{self._name}: the server is not listening")
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def __aenter__(self) -> Self:
        if self._state is not HttpServerState.UNOPENED:
            raise EdgeError(f"{self._name}: an HttpServer runs once (state {self._state.value})")
        try:
            # The reader's limit bounds readuntil(): a longer head raises LimitOverrunError.
            self._server = await asyncio.start_server(
                self._on_connection, self._host, self._port, limit=self._max_head
            )
        except OSError as exc:
            self._state = HttpServerState.CLOSED
            raise EdgeError(
                f"{self._name}: cannot listen on {self._host}:{self._port}: {exc}"
            ) from exc
        self._state = HttpServerState.RUNNING
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._state is HttpServerState.CLOSED:
            return
        self._state = HttpServerState.CLOSED
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Closing the transports ends every connection's read with EOF, so the
        # tasks finish normally (asyncio's stream callback logs cancelled ones).
        for writer in self._connections.values():
            writer.close()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # ------------------------------------------------------------------ connections

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        if (
            len(self._connections) >= self._max_connections
            or self._state is not HttpServerState.RUNNING
        ):
            self.rejected += 1
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(self._request_timeout):
                    await self._write(
                        writer,
                        Response.text(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n"),
                        head_only=False,
                        keep_alive=False,
                    )
            await _close(writer)
            return
        self._connections[task] = writer
        try:
            await self._serve(reader, writer)
        except (OSError, TimeoutError):
            pass  # the client went away or stopped reading: nothing to answer
        finally:
            self._connections.pop(task, None)
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while True:
            try:
                request = await self._read_request(reader, first=first)
            except _BadRequest as bad:
                self.rejected += 1
                async with asyncio.timeout(self._request_timeout):
                    await self._write(
                        writer,
                        Response.text(bad.status, f"{bad}\n"),
                        head_only=False,
                        keep_alive=False,
                    )
                return
            if request is None:
                return  # the client closed the connection between requests
            first = False
            self.requests += 1
            keep_alive = _wants_keep_alive(request)
            response = await self._dispatch(request)
            async with asyncio.timeout(self._request_timeout):
                await self._write(
                    writer, response, head_only=request.method == "HEAD", keep_alive=keep_alive
                )
            if not keep_alive:
                return

    async def _read_request(self, reader: asyncio.StreamReader, *, first: bool) -> Request | None:
        # The idle limit applies until the first byte of the next request, the
        # request limit to the whole head.
        try:
            async with asyncio.timeout(self._request_timeout if first else self._idle_timeout):
                start = await reader.read(1)
        except TimeoutError:
            if first:
                raise _BadRequest(
                    HTTPStatus.REQUEST_TIMEOUT, "no request received in time"
                ) from None
            return None
        if not start:
            return None
        try:
            async with asyncio.timeout(self._request_timeout):
                head = start + await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise _BadRequest(
                HTTPStatus.REQUEST_TIMEOUT, "request head not received in time"
            ) from None
        except asyncio.LimitOverrunError:
            raise _BadRequest(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request head longer than {self._max_head} bytes",
            ) from None
        except asyncio.IncompleteReadError:
            return None  # closed half-way through a head: nobody to answer
        if len(head) > self._max_head:
            raise _BadRequest(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request head longer than {self._max_head} bytes",
            )
        return _parse_head(head)

    async def _dispatch(self, request: Request) -> Response:
        if request.method not in _METHODS:
            self.rejected += 1
            return Response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                b"only GET and HEAD\n",
                headers=(("Allow", "GET, HEAD"),),
            )
        handler = self._routes.get(request.path)
        if handler is None:
            self.rejected += 1
            known = ", ".join(sorted(self._routes))
            return Response.text(HTTPStatus.NOT_FOUND, f"not found; try {known}\n")
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._handler_outage.failed(f"{request.path}: {exc!r}")
            return Response.text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
        if self._handler_outage.is_down:
            self._handler_outage.recovered()
        return response

    async def _write(
        self, writer: asyncio.StreamWriter, response: Response, *, head_only: bool, keep_alive: bool
    ) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Status"
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            "Cache-Control: no-store",
            *(f"{name}: {value}" for name, value in response.headers),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only and response.body:
            writer.write(response.body)
        await writer.drain()


# ---------------------------------------------------------------------- parsing


def _parse_head(head: bytes) -> Request:
    text = head.decode("latin-1")  # every byte decodes; non-ASCII is refused below
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if not method or any(c not in _TOKEN_CHARS for c in method):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed method")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and HTTP/1.1")
    if not target.startswith("/") or any(ord(c) <= 32 or ord(c) >= 127 for c in target):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed request target")
    header_lines = lines[1:]
    if len(header_lines) > MAX_HEADERS:
        raise _BadRequest(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"more than {MAX_HEADERS} header lines"
        )
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or any(c not in _TOKEN_CHARS for c in name):
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed header line")
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if "transfer-encoding" in headers:
        raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request bodies are not accepted")
    length = headers.get("content-length", "0").strip()
    if not length.isdigit():
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed Content-Length")
    if int(length) > 0:
        raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request bodies are not accepted")
    if version == "HTTP/1.1" and "host" not in headers:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "HTTP/1.1 request without Host")
    path, _, query = target.partition("?")
    return Request(method, unquote(path), query, version, headers)


def _wants_keep_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    if request.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
