"""An httpcore network backend on plain asyncio transports, and the httpx transport using it.

Why: httpcore's default backend reaches asyncio through anyio, which costs a cancel scope and
several sniffio look-ups per read and write, a selector re-registration per read, and a
``getpeername`` plus a ``poll`` system call for every idle connection each time the pool
assigns a request. With thousands of jobs polling, that was a fifth of the client's CPU
(``benchmarks/scale.py``). Here a read is a buffer take, and an idle connection's liveness is
what the event loop has already seen on it. Errors are raised as the pool's own httpcore
exception types, so httpx maps them exactly as it does for its own backend. One difference in
timing: over TLS, asyncio's SSL layer accepts a large write into its own buffer at once, so a
stalled HTTPS upload surfaces as a read timeout where anyio would report a write timeout.

The same classes serve httpcore and its fork httpcore2 (google-genai's httpx2): the backend is
given the module whose exception types it raises.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import socket
import ssl
import urllib.request
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import httpcore
import httpx

__all__ = [
    "AsyncioBackend",
    "AsyncioStream",
    "asyncio_transport",
    "env_proxy_set",
    "use_asyncio_backend",
]

_PAUSE_READING_AT = 1 << 20
"""Buffered bytes at which the socket stops being read until the caller catches up."""

_NEXT_ADDRESS_S = 0.25
"""Happy eyeballs: try a host's next address after this, as anyio does (RFC 8305's figure)."""

_SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


def asyncio_transport(
    limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its defaults (verify, no proxy), pooled on `AsyncioBackend`.

    Pools that may share one TLS context should: each costs a CA bundle load and about a MiB.
    """
    transport: httpx.AsyncHTTPTransport = use_asyncio_backend(httpx, httpcore, limits, ssl_context)
    return transport


def env_proxy_set() -> bool:
    """Whether the environment or the system names an HTTP(S) proxy; httpx honours that only
    with its own transport, so callers keep httpx's where this is true."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def use_asyncio_backend(
    http: ModuleType, core: ModuleType, limits: Any, ssl_context: ssl.SSLContext | None = None
) -> Any:
    """``http.AsyncHTTPTransport`` (httpx, or google-genai's httpx2) whose connection pool is
    ``core``'s (httpcore, httpcore2) running on `AsyncioBackend`.

    httpx offers no argument for the network backend, so the transport's pool is replaced by
    one built with the same limits and TLS context; tests/test_net.py fails if requests stop
    going through it.
    """
    context = ssl_context or http.create_ssl_context()
    transport = http.AsyncHTTPTransport(limits=limits, verify=context)
    transport._pool = core.AsyncConnectionPool(
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(core),
    )
    return transport


class _Errors:
    """The exception types of one httpcore module."""

    __slots__ = ("connect", "connect_timeout", "read", "read_timeout", "write", "write_timeout")

    def __init__(self, core: ModuleType) -> None:
        self.connect: type[Exception] = core.ConnectError
        self.connect_timeout: type[Exception] = core.ConnectTimeout
        self.read: type[Exception] = core.ReadError
        self.read_timeout: type[Exception] = core.ReadTimeout
        self.write: type[Exception] = core.WriteError
        self.write_timeout: type[Exception] = core.WriteTimeout


@contextlib.contextmanager
def _mapped(timeout_error: type[Exception], other_error: type[Exception]) -> Iterator[None]:
    """Raise httpcore's exception types, as its own backends do."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or "timed out") from exc
    except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
        raise other_error(str(exc) or type(exc).__name__) from exc


class _Protocol(asyncio.Protocol):
    """Buffers what arrives and wakes the one reader; tracks write back-pressure."""

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes | memoryview] = collections.deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._reader: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered >= _PAUSE_READING_AT and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    async def readable(self) -> None:
        """Return once there is data or the stream has ended."""
        while not self.chunks and not self.eof:
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None

    @property
    def writing_paused(self) -> bool:
        """Whether the transport's write buffer is above its high-water mark."""
        return self._drained is not None and not self._drained.done()

    async def drained(self) -> None:
        """Return once the transport's write buffer is below its high-water mark."""
        if self._drained is not None and not self._drained.done():
            # Shielded: a write that times out must not cancel the future later writes share.
            await asyncio.shield(self._drained)

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` from the buffer; ``b""`` only at the end of the stream."""
        if not self.chunks:
            if self.error is not None:
                raise ConnectionError(f"connection lost: {self.error!r}") from self.error
            return b""
        chunk = self.chunks.popleft()
        if len(chunk) > max_bytes:
            view = memoryview(chunk)
            self.chunks.appendleft(view[max_bytes:])
            chunk = view[:max_bytes]
        self.buffered -= len(chunk)
        if self._reading_paused and self.buffered < _PAUSE_READING_AT // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return chunk if isinstance(chunk, bytes) else bytes(chunk)


class AsyncioStream:
    """One connection (httpcore's ``AsyncNetworkStream``): asyncio's transport and our protocol."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol, errors: _Errors) -> None:
        self._transport = transport
        self._protocol = protocol
        self._errors = errors

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        with _mapped(self._errors.read_timeout, self._errors.read):
            if not protocol.chunks and not protocol.eof:
                async with asyncio.timeout(timeout):
                    await protocol.readable()
            return protocol.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(self._errors.write_timeout, self._errors.write):
            if self._transport.is_closing():
                raise ConnectionResetError("the connection is closed")
            self._transport.write(buffer)
            if self._protocol.writing_paused:
                async with asyncio.timeout(timeout):
                    await self._protocol.drained()

    async def aclose(self) -> None:
        # Abort, as anyio does: a graceful close would wait for unsent bytes (a stalled
        # upload) or a TLS close_notify, and keep the socket meanwhile.
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        try:
            with _mapped(self._errors.connect_timeout, self._errors.connect):
                async with asyncio.timeout(timeout):
                    tls = await loop.start_tls(
                        self._transport,
                        self._protocol,
                        ssl_context,
                        server_hostname=server_hostname,
                    )
        except BaseException:
            self._transport.close()
            raise
        if tls is None:  # only when the loop is closing
            raise self._errors.connect("the event loop closed during the TLS handshake")
        assert isinstance(tls, asyncio.Transport)
        self._protocol.transport = tls
        return AsyncioStream(tls, self._protocol, self._errors)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle keep-alive connection is unusable once the peer closed it or sent
            # something unasked; the event loop has already read either into the protocol.
            return self._protocol.eof or bool(self._protocol.chunks)
        name = {
            "ssl_object": "ssl_object",
            "client_addr": "sockname",
            "server_addr": "peername",
            "socket": "socket",
        }.get(info)
        return None if name is None else self._transport.get_extra_info(name)


class AsyncioBackend:
    """httpcore's ``AsyncNetworkBackend`` on ``loop.create_connection`` (TCP_NODELAY is
    asyncio's default, as with anyio)."""

    def __init__(self, core: ModuleType = httpcore) -> None:
        self._errors = _Errors(core)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        with _mapped(self._errors.connect_timeout, self._errors.connect):
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol,
                    host,
                    port,
                    local_addr=local,
                    # An address literal has no next address to race; the race costs tasks.
                    happy_eyeballs_delay=None if _is_address(host) else _NEXT_ADDRESS_S,
                )
        return _with_options(transport, protocol, socket_options, self._errors)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        with _mapped(self._errors.connect_timeout, self._errors.connect):
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_Protocol, path)
        return _with_options(transport, protocol, socket_options, self._errors)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _with_options(
    transport: asyncio.BaseTransport,
    protocol: _Protocol,
    options: Iterable[_SocketOption] | None,
    errors: _Errors,
) -> AsyncioStream:
    assert isinstance(transport, asyncio.Transport)
    sock: socket.socket | None = transport.get_extra_info("socket")
    try:
        with _mapped(errors.connect_timeout, errors.connect):
            for option in options or ():
                if sock is not None:
                    sock.setsockopt(*option)
    except BaseException:
        transport.abort()
        raise
    return AsyncioStream(transport, protocol, errors)
