"""The asyncio network backend under httpx: real loopback servers, real sockets, real TLS."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpcore2
import httpx
import httpx2
import pytest
import trustme

from abebeats_lab._http import bounded_transport, held_transport
from abebeats_lab._net import (
    _PAUSE_READING_AT,
    AsyncioStream,
    asyncio_transport,
    use_asyncio_backend,
)

_LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def _server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server on an OS-chosen port; yields its base URL and a connection count."""
    connections = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    async with server:
        yield f"{scheme}://localhost:{port}" if tls else f"{scheme}://127.0.0.1:{port}", connections


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 request: its request line and body (by content-length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head.split(b"\r\n", 1)[0], body


def _answer(body: bytes, *, close: bool = False) -> bytes:
    extra = b"connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with its request line and body."""
    while True:
        line, body = await _read_request(reader)
        writer.write(_answer(line + b"|" + body))
        await writer.drain()


@pytest.mark.parametrize(
    "make",
    [
        lambda: asyncio_transport(_LIMITS),
        bounded_transport,
        lambda: held_transport(100, 10),
    ],
    ids=["asyncio_transport", "bounded_transport", "held_transport"],
)
async def test_requests_go_through_the_asyncio_backend(
    make: Callable[[], httpx.AsyncBaseTransport],
) -> None:
    # httpx has no public setting for the backend; if the pool we replace ever stops being
    # the one requests use, the stream below is anyio's and this fails.
    async with _server(_echo) as (url, _), httpx.AsyncClient(transport=make()) as client:
        response = await client.get(url)
    assert isinstance(response.extensions["network_stream"], AsyncioStream)


async def test_requests_share_one_keep_alive_connection() -> None:
    async with (
        _server(_echo) as (url, connections),
        httpx.AsyncClient(transport=asyncio_transport(_LIMITS)) as client,
    ):
        first = await client.post(f"{url}/a", content=b"one")
        second = await client.get(f"{url}/b")
    assert first.content == b"POST /a HTTP/1.1|one"
    assert second.content == b"GET /b HTTP/1.1|"
    assert connections == [1]


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_answer(b"ok"))
        await writer.drain()
        # Then close without saying so, as servers do with idle keep-alive connections.

    async with (
        _server(once) as (url, connections),
        httpx.AsyncClient(transport=asyncio_transport(_LIMITS)) as client,
    ):
        assert (await client.get(url)).content == b"ok"
        await asyncio.sleep(0.1)  # the FIN arrives and the event loop sees it
        assert (await client.get(url)).content == b"ok"
    assert connections == [2]


async def test_a_big_body_streams_intact_with_a_slow_reader() -> None:
    payload = bytes(range(256)) * (24 * 4096)  # 24 MiB, well past the pause threshold

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_answer(payload))
        await writer.drain()

    digest, size, most_buffered = hashlib.sha256(), 0, 0
    async with (
        _server(big) as (url, _),
        httpx.AsyncClient(transport=asyncio_transport(_LIMITS)) as client,
        client.stream("GET", url) as response,
    ):
        protocol = response.extensions["network_stream"]._protocol
        async for chunk in response.aiter_raw():
            assert len(chunk) <= 64 * 1024  # httpcore's read size is honoured
            digest.update(chunk)
            size += len(chunk)
            if size % (4 << 20) < len(chunk):
                await asyncio.sleep(0.05)  # the socket is paused meanwhile, not buffered
                most_buffered = max(most_buffered, protocol.buffered)
    assert size == len(payload)
    # The slow reader let the buffer fill to the pause mark, and no further than one more
    # socket read (asyncio reads at most 256 KiB at a time).
    assert _PAUSE_READING_AT <= most_buffered <= _PAUSE_READING_AT + 256 * 1024
    assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()


async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    timeout = httpx.Timeout(5.0, read=0.2)
    async with (
        _server(silent) as (url, _),
        httpx.AsyncClient(transport=asyncio_transport(_LIMITS), timeout=timeout) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)


async def test_a_server_that_never_reads_is_a_write_timeout() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    timeout = httpx.Timeout(5.0, write=0.3)
    async with (
        _server(deaf) as (url, _),
        httpx.AsyncClient(transport=asyncio_transport(_LIMITS), timeout=timeout) as client,
    ):
        with pytest.raises(httpx.WriteTimeout):
            await client.post(url, content=b"x" * (64 << 20))


async def test_a_connection_cut_mid_body_is_an_error_not_a_short_body() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.transport.abort()

    async with (
        _server(cut) as (url, _),
        httpx.AsyncClient(transport=asyncio_transport(_LIMITS)) as client,
    ):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get(url)


async def test_a_refused_connection_is_a_connect_error_for_httpx_and_httpx2() -> None:
    # Bind a port, then close it, so nothing listens there.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with httpx.AsyncClient(transport=asyncio_transport(_LIMITS)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")
    limits2 = httpx2.Limits(max_connections=4)
    transport2 = use_asyncio_backend(httpx2, httpcore2, limits2)
    async with httpx2.AsyncClient(transport=transport2) as client2:
        with pytest.raises(httpx2.ConnectError):
            await client2.get(f"http://127.0.0.1:{port}/")


async def test_tls_verifies_the_server_and_carries_requests() -> None:
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_tls)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    transport = asyncio_transport(_LIMITS, trusting)
    async with (
        _server(_echo, tls=server_tls) as (url, connections),
        httpx.AsyncClient(transport=transport) as client,
    ):
        response = await client.post(f"{url}/tls", content=b"secret")
        again = await client.get(f"{url}/again")
        assert response.content == b"POST /tls HTTP/1.1|secret"
        assert again.status_code == 200
        assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None
        assert connections == [1]
        # A client that does not trust the server's authority must refuse it.
        async with httpx.AsyncClient(transport=asyncio_transport(_LIMITS)) as strict:
            with pytest.raises(httpx.ConnectError):
                await strict.get(url)
