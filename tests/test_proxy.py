"""Behind an HTTP(S) proxy set in the environment, every provider and every download use it.

A small loopback forward proxy (absolute-form requests for http:// URLs, CONNECT for https://)
counts what it carried; an emulated comparison over every provider runs with HTTP_PROXY and
HTTPS_PROXY set and no NO_PROXY, so even 127.0.0.1 goes through the proxy (httpx and genai's
httpx2 bypass only what NO_PROXY names).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
from _runner_support import FAST, ROUTE_OF

from abebeats_lab import Settings
from abebeats_lab.emulator import EMULATED_PROVIDERS, Emulators, Scenario
from abebeats_lab.run.api import compare

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_CHUNK = 64 * 1024
_HOP_BY_HOP = (b"connection:", b"keep-alive:", b"proxy-")


class ForwardProxy:
    """One request per client connection, relayed to the origin; ``carried`` lists each one
    as (method, host:port, path)."""

    def __init__(self) -> None:
        self.carried: list[tuple[str, str, str]] = []
        self.url = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ForwardProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server:
            yield self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head[:-4].split(b"\r\n")
            method, target, version = request_line.decode("ascii").split(" ")
            if method == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(method, target, version, lines, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        self.carried.append(("CONNECT", target, ""))
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def _forward(
        self,
        method: str,
        target: str,
        version: str,
        lines: list[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        url = urllib.parse.urlsplit(target)
        assert url.scheme == "http" and url.hostname, f"not an absolute-form request: {target}"
        headers = [line for line in lines if not line.lower().startswith(_HOP_BY_HOP)]
        assert not any(line.lower().startswith(b"transfer-encoding:") for line in headers)
        length = next(
            (
                int(line.split(b":")[1])
                for line in headers
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        body = await reader.readexactly(length) if length else b""
        self.carried.append((method, url.netloc, url.path))
        path = url.path + (f"?{url.query}" if url.query else "")
        upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            request = f"{method} {path} {version}\r\n".encode() + b"\r\n".join(
                [*headers, b"Connection: close"]
            )
            upstream_writer.write(request + b"\r\n\r\n" + body)
            await upstream_writer.drain()
            answer = await upstream_reader.readuntil(b"\r\n\r\n")
            kept = [
                line
                for line in answer[:-4].split(b"\r\n")
                if not line.lower().startswith(_HOP_BY_HOP)
            ]
            # One request per connection: the client must not reuse it.
            writer.write(b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n")
            await _pipe(upstream_reader, writer)  # to the end: the origin closes after it
        finally:
            upstream_writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while chunk := await source.read(_CHUNK):
        sink.write(chunk)
        await sink.drain()


@pytest.fixture
def emulators() -> Iterator[Emulators]:
    with Emulators(EMULATED_PROVIDERS, Scenario.fast()) as running:
        yield running


async def test_every_provider_and_download_goes_through_the_proxy(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in emulators.env().items():
        monkeypatch.setenv(name, value)
    async with ForwardProxy().running() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        comparison = await compare(
            "a lighthouse at dawn",
            [ROUTE_OF[name] for name in EMULATED_PROVIDERS],
            Settings(duration_s=5, aspect_ratio="16:9", resolution="720p"),
            policy=FAST,
            adapt=True,
        )
    rows = comparison.rows
    assert sorted(row.provider for row in rows) == sorted(EMULATED_PROVIDERS)
    assert all(row.state == "succeeded" for row in rows), [row.error for row in rows]
    for name in EMULATED_PROVIDERS:
        origin = f"127.0.0.1:{emulators.servers[name].port}"
        carried = Counter((m, path) for m, host, path in proxy.carried if host == origin)
        received = Counter((r.method, r.path) for r in emulators.states[name].requests)
        assert received, f"{name}: the emulator saw no request"
        assert not received - carried, f"{name}: requests that bypassed the proxy"
        downloads = [r for r in emulators.states[name].requests if r.kind == "download"]
        if name not in ("veo", "gemini"):  # both return the video inline: nothing to download
            assert downloads, f"{name}: no download reached the emulator"
