"""The one retry policy, against a real loopback server with scripted answers, and the shared
client's lifetime."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from abebeats_lab import http as _http
from abebeats_lab.emulator.core import drop_connection
from abebeats_lab.emulator.server import RunningServer, serve
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    ProtocolError,
    ProviderHTTPError,
    ProviderTransportError,
)

FAST = _http.RetryPolicy(max_attempts=4, base_delay_s=0.01, backoff_cap_s=0.02)


class Script:
    """Answers to hand out in order; the last one repeats."""

    def __init__(self) -> None:
        self.answers: list[Response] = []
        self.calls = 0

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if answer.status_code == 599:
            return await drop_connection()
        return answer


@pytest.fixture
def scripted() -> Iterator[tuple[Script, RunningServer]]:
    script = Script()

    async def endpoint(request: Request) -> Response:
        return await script(request)

    with serve(Starlette(routes=[Route("/x", endpoint, methods=["GET", "POST"])])) as server:
        yield script, server


def _ok() -> Response:
    return JSONResponse({"ok": True})


async def _send(server: RunningServer, *, idempotent: bool, method: str = "GET") -> httpx.Response:
    async with _http.new_client() as client:
        return await _http.send(
            client, method, f"{server.url}/x", provider="test", idempotent=idempotent, policy=FAST
        )


async def test_429_with_retry_after_then_success(scripted: tuple[Script, RunningServer]) -> None:
    script, server = scripted
    script.answers = [Response(status_code=429, headers={"Retry-After": "0.05"}), _ok()]
    response = await _send(server, idempotent=False, method="POST")
    assert response.json() == {"ok": True} and script.calls == 2


async def test_5xx_burst_is_bounded(scripted: tuple[Script, RunningServer]) -> None:
    script, server = scripted
    script.answers = [Response("down", status_code=503)]
    with pytest.raises(ProviderHTTPError) as caught:
        await _send(server, idempotent=True)
    assert caught.value.status_code == 503 and script.calls == FAST.max_attempts


async def test_a_status_request_is_sent_once(scripted: tuple[Script, RunningServer]) -> None:
    """`SEND_ONCE` (status reads: the wait loop owns their retries) never retries, even a
    dropped connection or a 503 with a hint."""
    script, server = scripted
    for answer in (
        Response(status_code=503, headers={"Retry-After": "0"}),
        Response(status_code=599),
    ):
        script.answers, script.calls = [answer, _ok()], 0
        async with _http.new_client() as client:
            with pytest.raises((ProviderHTTPError, ProviderTransportError)):
                await _http.send(
                    client, "GET", f"{server.url}/x", provider="test", idempotent=True,
                    policy=_http.SEND_ONCE,
                )  # fmt: skip
        assert script.calls == 1


async def test_4xx_is_not_retried_and_keeps_the_body(
    scripted: tuple[Script, RunningServer],
) -> None:
    script, server = scripted
    script.answers = [JSONResponse({"error": "ratio: must be 1280:720"}, status_code=400)]
    with pytest.raises(ProviderHTTPError, match="ratio") as caught:
        await _send(server, idempotent=False, method="POST")
    assert caught.value.status_code == 400 and script.calls == 1


async def test_server_can_forbid_a_retry(scripted: tuple[Script, RunningServer]) -> None:
    script, server = scripted
    script.answers = [Response(status_code=503, headers={"x-should-retry": "false"})]
    with pytest.raises(ProviderHTTPError):
        await _send(server, idempotent=True)
    assert script.calls == 1


async def test_dropped_create_is_ambiguous_and_never_repeated(
    scripted: tuple[Script, RunningServer],
) -> None:
    script, server = scripted
    script.answers = [Response(status_code=599), _ok()]
    with pytest.raises(AmbiguousSubmitError):
        await _send(server, idempotent=False, method="POST")
    assert script.calls == 1


async def test_dropped_read_is_retried_when_idempotent(
    scripted: tuple[Script, RunningServer],
) -> None:
    script, server = scripted
    script.answers = [Response(status_code=599), _ok()]
    assert (await _send(server, idempotent=True)).json() == {"ok": True}
    assert script.calls == 2


async def test_connection_refused_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with _http.new_client() as client:
        with pytest.raises(ProviderTransportError):
            await _http.send(
                client,
                "POST",
                f"http://127.0.0.1:{port}/x",
                provider="test",
                idempotent=False,
                policy=FAST,
            )


def _response(
    status: int = 429, headers: dict[str, str] | None = None, body: object = None
) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, json=body)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"retry-after": "3"}, None, 3.0),
        ({"retry-after": "0"}, None, 0.0),
        ({"retry-after": "61"}, None, None),
        ({"retry-after": "-1"}, None, None),
        ({"retry-after": "soon"}, None, None),
        ({"retry-after-ms": "250"}, None, 0.25),
        ({}, {"detail": "throttled", "retry_after": 7}, 7.0),
        ({}, {"error": {"code": 429, "details": [{"retryDelay": "12s"}]}}, 12.0),
        ({}, {"error": "nope"}, None),
        ({}, None, None),
    ],
)
def test_retry_hints(headers: dict[str, str], body: object, expected: float | None) -> None:
    assert _http.retry_hint(_response(headers=headers, body=body)) == expected


def test_retry_after_as_http_date() -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    hint = _http.retry_hint(_response(headers={"retry-after": when}))
    assert hint is not None and 8 <= hint <= 10


def test_backoff_is_bounded_and_jittered() -> None:
    delays = [_http.retry_delay(n, None) for n in range(1, 12)]
    assert all(0 < d <= _http.DEFAULT_RETRY.backoff_cap_s for d in delays)
    assert _http.retry_delay(1, 4.0) == 4.0


async def test_one_shared_client_per_loop_closed_by_its_last_user() -> None:
    lease = _http.Lease()
    async with _http.leased() as first, _http.leased() as second:
        assert first is second is lease.client()
    assert not first.is_closed  # the lease still holds it
    await lease.release()
    assert first.is_closed
    async with _http.leased() as fresh:
        assert fresh is not first and not fresh.is_closed


def test_each_event_loop_gets_its_own_shared_client() -> None:
    lease = _http.Lease()

    async def use() -> httpx.AsyncClient:
        return lease.client()

    loops = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        clients = [loop.run_until_complete(use()) for loop in loops]
        assert clients[0] is not clients[1]
        for loop in loops:
            loop.run_until_complete(_release_all(lease))
        assert all(client.is_closed for client in clients)
    finally:
        for loop in loops:
            loop.close()


async def _release_all(lease: _http.Lease) -> None:
    lease.client()
    await lease.release()


# -- answers are read under a cap -----------------------------------------------------------

SMALL_CAP = 64 * 1024
MIB = 1024**2
GZIP_WBITS = 31


async def _gzip_zeros(total: int) -> AsyncIterator[bytes]:
    """``total`` zeros, gzip-compressed as they are sent (about total / 1000 on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, GZIP_WBITS)
    for _ in range(total // MIB):
        yield packer.compress(bytes(MIB))
    yield packer.flush()


async def _spaces(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // MIB):
        yield b" " * MIB


@pytest.mark.parametrize("status", [200, 503])
async def test_a_gzip_bomb_stops_at_the_cap(
    scripted: tuple[Script, RunningServer], status: int
) -> None:
    """64 MiB of zeros as about 64 KB of gzip: the decoded bytes are counted, not the wire's;
    an error answer is read under the same cap (and not retried as a 503 would be)."""
    script, server = scripted
    script.answers = [
        StreamingResponse(
            _gzip_zeros(64 * MIB), status_code=status, headers={"content-encoding": "gzip"}
        )
    ]
    async with _http.new_client() as client:
        with pytest.raises(ProtocolError, match=f"{SMALL_CAP}-byte cap"):
            await _http.send(
                client, "GET", f"{server.url}/x", provider="test", idempotent=True,
                policy=FAST, max_bytes=SMALL_CAP,
            )  # fmt: skip
    assert script.calls == 1


async def test_a_plain_answer_over_the_cap_is_refused(
    scripted: tuple[Script, RunningServer],
) -> None:
    script, server = scripted
    script.answers = [StreamingResponse(_spaces(8 * MIB))]  # chunked: no length declared
    async with _http.new_client() as client:
        with pytest.raises(ProtocolError, match="cap on provider answers"):
            await _http.send(
                client, "GET", f"{server.url}/x", provider="test", idempotent=True,
                max_bytes=SMALL_CAP,
            )  # fmt: skip


async def test_an_answer_under_the_cap_reads_as_before(
    scripted: tuple[Script, RunningServer],
) -> None:
    script, server = scripted
    body = b'{"ok": true, "pad": "' + b"x" * 1000 + b'"}'
    script.answers = [
        Response(zlib.compress(body, wbits=GZIP_WBITS), headers={"content-encoding": "gzip"})
    ]
    response = await _send(server, idempotent=True)
    assert _http.json_body(response, "test")["ok"] is True


async def test_an_encoding_that_inflates_without_bound_is_refused(
    scripted: tuple[Script, RunningServer],
) -> None:
    script, server = scripted
    script.answers = [Response(b"\x00" * 10, headers={"content-encoding": "br"})]
    with pytest.raises(ProtocolError, match="content encoding 'br'"):
        await _send(server, idempotent=True)


def test_deeply_nested_json_is_a_protocol_error() -> None:
    nested = httpx.Response(200, content=b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ProtocolError, match="nested too deeply"):
        _http.json_body(nested, "test")
    assert _http.retry_hint(httpx.Response(429, content=nested.content)) is None
