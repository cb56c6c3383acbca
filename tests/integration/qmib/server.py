"""A small real HTTP/1.1 server standing in for QMIB (asyncio streams, no framework).

Each test scripts its answers: ``server.answer(method, path, status, body)``
queues a response for that route (the last one repeats); every request is
recorded with its headers and JSON body. It can be stopped and started again
on the same port to play "QMIB down, then back".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeQmib:
    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[Request] = []
        self._answers: dict[tuple[str, str], deque[_Answer]] = defaultdict(deque)
        self._server: asyncio.Server | None = None
        self.arrived = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def answer(
        self,
        method: str,
        path: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._answers[(method, path)].append(_Answer(status, body, headers or {}))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> FakeQmib:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def seen(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").strip()
            if not request_line:
                return
            method, target, _version = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                line = (await reader.readline()).decode("latin-1")
                if line in ("\r\n", "\n", ""):
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Request(method, target, headers, body)
            self.requests.append(request)
            self.arrived.set()
            queue = self._answers.get((method, target))
            answer = (queue.popleft() if len(queue) > 1 else queue[0]) if queue else _Answer(404)
            payload = b"" if answer.body is None else json.dumps(answer.body).encode()
            head = [
                f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Status')}",
                f"Content-Length: {len(payload)}",
                "Content-Type: application/json",
                "Connection: close",
                *(f"{k}: {v}" for k, v in answer.headers.items()),
            ]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
