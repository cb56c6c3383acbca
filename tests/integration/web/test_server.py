"""The aiohttp server behind every HTTP endpoint: correct for scrapers and browsers,
bounded for everyone else.

Real sockets on 127.0.0.1; requests are written byte by byte as a client (or an
attacker) would send them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from aiohttp import web

from edge.errors import EdgeError
from edge.serve.web.server import ServerLimits, ServerState, WebServer, new_app


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"hello {request.path}?{request.query_string}\n")


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("handler bug")


def make_server(**limits: float) -> WebServer:
    app = new_app("test", ServerLimits(**limits))  # type: ignore[arg-type]
    app.router.add_get("/hello", hello)
    app.router.add_post("/echo", echo)
    app.router.add_get("/broken", broken)
    return WebServer(app, "127.0.0.1", 0, limits=ServerLimits(**limits))  # type: ignore[arg-type]


async def read_response(
    reader: asyncio.StreamReader, *, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if head_only:
        return status, headers, b""
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def send(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(2.0):
        return await reader.read() == b""


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: x", *extra, "", ""]).encode()


async def test_get_head_and_keep_alive_with_pipelining() -> None:
    async with make_server() as server:
        _, port = server.address
        # Two pipelined requests in one write, then a third on the same connection.
        reader, writer = await send(port, get("/hello?a=1") + get("/hell%6F"))
        first = await read_response(reader)
        second = await read_response(reader)
        assert first[0] == 200 and first[2] == b"hello /hello?a=1\n"
        assert first[1].get("connection", "keep-alive").lower() == "keep-alive"
        assert second[2] == b"hello /hello?\n"  # percent-decoded path
        writer.write(b"HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = await read_response(reader, head_only=True)
        assert status == 200
        assert headers["content-length"] == str(len(b"hello /hello?\n"))  # as GET would send
        assert await closed_by_server(reader)  # and no body followed the HEAD response
        writer.close()


async def test_http_1_0_closes_unless_keep_alive_is_asked() -> None:
    async with make_server() as server:
        _, port = server.address
        reader, writer = await send(port, b"GET /hello HTTP/1.0\r\n\r\n")
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"hello /hello?\n")
        assert await closed_by_server(reader)
        writer.close()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        (b"DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    ],
)
async def test_unknown_paths_and_methods_are_answered_and_the_connection_kept(
    raw: bytes, status: int
) -> None:
    async with make_server() as server:
        _, port = server.address
        reader, writer = await send(port, raw + get("/hello"))
        answered = await read_response(reader)
        assert answered[0] == status
        if status == 405:
            assert answered[1]["allow"].replace(" ", "") == "GET,HEAD"
        assert (await read_response(reader))[0] == 200  # the connection still serves
        writer.close()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello
        (b"GET hello HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # not origin-form
        (b"GET /hel\x7flo HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # control character
        (b"G(T /hello HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # not a token
        (b"GET /hello HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /hello HTTP/1.1\r\nHost x\r\n\r\n", 400),  # header without colon
        (b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: nine\r\n\r\n", 400),
        (b"GET /hello HTTP/1.1\nHost: x\n\n", 400),  # bare LF line ends
        (b"GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /hello\r\nHost: x\r\n\r\n", 505),  # HTTP/0.9
    ],
)
async def test_malformed_requests_get_a_4xx_and_the_connection_is_closed(
    raw: bytes, status: int
) -> None:
    async with make_server() as server:
        _, port = server.address
        reader, writer = await send(port, raw)
        data = await reader.read()  # everything the server says, then its close
        assert data.split(b"\r\n")[0].split(b" ")[1] == str(status).encode(), data
        writer.close()
        # The server itself is unharmed.
        reader, writer = await send(port, get("/hello", "Connection: close"))
        assert (await read_response(reader))[0] == 200
        writer.close()


async def test_an_oversized_head_or_body_is_refused() -> None:
    async with make_server(max_body_bytes=1024) as server:
        _, port = server.address
        reader, writer = await send(port, get("/hello", "X-Big: " + "a" * 9000))
        assert (await read_response(reader))[0] == 400  # a field longer than 8190 bytes
        assert await closed_by_server(reader)
        writer.close()
        many = [f"X-{n}: y" for n in range(100)]
        reader, writer = await send(port, get("/hello", *many))
        assert (await read_response(reader))[0] == 400  # more than 64 header lines
        writer.close()
        body = b"b" * 2000
        head = f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        reader, writer = await send(port, head.encode() + body)
        assert (await read_response(reader))[0] == 413
        writer.close()
        chunked = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += b"".join(b"100\r\n" + b"c" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
        reader, writer = await send(port, chunked)
        assert (await read_response(reader))[0] == 413  # the limit holds for chunked bodies
        writer.close()
        small = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        reader, writer = await send(port, small)
        assert (await read_response(reader))[0:3:2] == (200, b"hello")
        writer.close()


async def test_a_slow_client_gets_408_and_an_idle_one_is_closed() -> None:
    async with make_server(request_timeout_s=0.3, idle_timeout_s=0.6) as server:
        _, port = server.address
        reader, writer = await send(port, b"GET /hello HTTP/1.1\r\nHo")  # and then nothing
        assert (await read_response(reader))[0] == 408
        assert await closed_by_server(reader)
        writer.close()
        reader, writer = await send(port, get("/hello"))
        assert (await read_response(reader))[0] == 200
        assert await closed_by_server(reader)  # idle keep-alive connection, closed quietly
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # says nothing at all
        assert (await read_response(reader))[0] == 408
        writer.close()


async def test_connections_beyond_the_limit_get_503() -> None:
    async with make_server(max_connections=2) as server:
        _, port = server.address
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await until(lambda: server.connections == 2)
        reader, writer = await send(port, get("/hello"))
        assert (await read_response(reader))[0] == 503
        assert await closed_by_server(reader)
        writer.close()
        for _, w in held:
            w.close()
        await until(lambda: server.connections == 0)
        reader, writer = await send(port, get("/hello", "Connection: close"))
        assert (await read_response(reader))[0] == 200
        writer.close()


async def test_a_failing_handler_gets_500_logged_once_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.web")
    async with make_server() as server:
        _, port = server.address
        reader, writer = await send(port, get("/broken") + get("/broken") + get("/hello"))
        assert (await read_response(reader))[0] == 500
        assert (await read_response(reader))[0] == 500
        assert (await read_response(reader))[0] == 200
        writer.close()
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(lost) == 1 and "handler bug" in lost[0].getMessage()
    assert len(recovered) == 1


async def test_lifecycle_runs_once_and_a_taken_port_is_a_clear_error() -> None:
    server = make_server()
    async with server:
        _, port = server.address
        app = new_app("taken", ServerLimits())
        taken = WebServer(app, "127.0.0.1", port)
        with pytest.raises(EdgeError, match=f"cannot listen on 127.0.0.1:{port}"):
            await taken.__aenter__()
        assert taken.state is ServerState.CLOSED
    assert server.state is ServerState.CLOSED
    with pytest.raises(EdgeError, match="runs once"):
        await server.__aenter__()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
