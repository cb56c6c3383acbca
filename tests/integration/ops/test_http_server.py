"""The small HTTP server behind /metrics: correct for scrapers, bounded for everyone else.

Real sockets on 127.0.0.1; requests are written byte by byte as a client
(or an attacker) would send them.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from edge.errors import EdgeError
from edge.http_server import HttpServer, HttpServerState, Request, Response


async def hello(request: Request) -> Response:
    return Response.text(200, f"hello {request.path}?{request.query}\n")


async def broken(request: Request) -> Response:
    raise RuntimeError("handler bug")


def make_server(**kwargs: float) -> HttpServer:
    return HttpServer(
        "127.0.0.1",
        0,
        {"/hello": hello, "/broken": broken},
        **kwargs,  # type: ignore[arg-type]
    )


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def send(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(2.0):
        return await reader.read() == b""


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
        assert first[1]["connection"] == "keep-alive"
        assert second[2] == b"hello /hello?\n"  # percent-decoded path
        writer.write(b"HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = await read_response_head_only(reader)
        assert status == 200
        assert headers["content-length"] == str(len(b"hello /hello?\n"))  # as GET would send
        assert headers["connection"] == "close"
        assert await closed_by_server(reader)  # and no body followed the HEAD response
        writer.close()
        assert server.requests == 3


async def read_response_head_only(
    reader: asyncio.StreamReader,
) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        n.strip().lower(): v.strip()
        for n, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    return int(lines[0].split(" ")[1]), headers, b""


async def test_http_1_0_closes_unless_keep_alive_is_asked() -> None:
    async with make_server() as server:
        _, port = server.address
        reader, writer = await send(port, b"GET /hello HTTP/1.0\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (200, "close")
        assert await closed_by_server(reader)
        writer.close()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"POST /hello HTTP/1.1\r\nHost: x\r\n\r\n", 405),
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
            assert answered[1]["allow"] == "GET, HEAD"
        assert (await read_response(reader))[0] == 200  # the connection still serves
        writer.close()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello
        (b"GET /hello\r\nHost: x\r\n\r\n", 400),  # no version
        (b"GET  /hello HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # two spaces
        (b"GET hello HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # not origin-form
        (b"GET /hel\x7flo HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # control character
        (b"G(T /hello HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # not a token
        (b"GET /hello HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /hello HTTP/1.1\r\nHost x\r\n\r\n", 400),  # header without colon
        (b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: nine\r\n\r\n", 400),
        (b"GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413),
        (b"GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 413),
    ],
)
async def test_malformed_requests_get_a_4xx_and_the_connection_is_closed(
    raw: bytes, status: int
) -> None:
    async with make_server() as server:
        _, port = server.address
        reader, writer = await send(port, raw)
        assert (await read_response(reader))[0] == status
        assert await closed_by_server(reader)
        writer.close()
        # The server itself is unharmed.
        reader, writer = await send(port, get("/hello", "Connection: close"))
        assert (await read_response(reader))[0] == 200
        writer.close()


async def test_an_oversized_head_is_refused_with_431() -> None:
    async with make_server(max_head_bytes=1024) as server:
        _, port = server.address
        reader, writer = await send(port, get("/hello", "X-Big: " + "a" * 5000))
        assert (await read_response(reader))[0] == 431
        assert await closed_by_server(reader)
        writer.close()
        many = [f"X-{n}: y" for n in range(100)]
        reader, writer = await send(port, get("/hello", *many))
        assert (await read_response(reader))[0] == 431  # more than 64 header lines
        writer.close()


async def test_a_slow_client_gets_408_and_an_idle_one_is_closed() -> None:
    async with make_server(request_timeout_s=0.3, idle_timeout_s=0.3) as server:
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
        await asyncio.sleep(0.1)  # both accepted
        reader, writer = await send(port, get("/hello"))
        assert (await read_response(reader))[0] == 503
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.sleep(0.1)
        reader, writer = await send(port, get("/hello", "Connection: close"))
        assert (await read_response(reader))[0] == 200
        writer.close()


async def test_a_failing_handler_gets_500_logged_once_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.http")
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
        taken = HttpServer("127.0.0.1", port, {})
        with pytest.raises(EdgeError, match=f"cannot listen on 127.0.0.1:{port}"):
            await taken.__aenter__()
    assert server.state is HttpServerState.CLOSED
    with pytest.raises(EdgeError, match="runs once"):
        await server.__aenter__()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
