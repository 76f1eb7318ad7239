"""The one retry policy, against a real loopback server with scripted answers."""

from __future__ import annotations

import asyncio
import email.utils
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from abebeats_lab import _http
from abebeats_lab.emulator.core import drop_connection
from abebeats_lab.emulator.server import RunningServer, serve
from abebeats_lab.errors import AmbiguousSubmitError, ProviderHTTPError, ProviderTransportError

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
    async with _http.build_client(base_url=server.url) as client:
        return await _http.send(
            client, method, "/x", provider="test", idempotent=idempotent, policy=FAST
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
    async with _http.build_client(base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(ProviderTransportError):
            await _http.send(client, "POST", "/x", provider="test", idempotent=False, policy=FAST)


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


class _Concurrency:
    """Counts requests being served at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def __call__(self, request: Request) -> Response:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.1)
            return _ok()
        finally:
            self.now -= 1


@pytest.fixture
def counted() -> Iterator[tuple[_Concurrency, RunningServer]]:
    counter = _Concurrency()

    async def endpoint(request: Request) -> Response:
        return await counter(request)

    with serve(Starlette(routes=[Route("/slow", endpoint)])) as server:
        yield counter, server


async def test_bounded_transport_caps_requests_in_flight(
    counted: tuple[_Concurrency, RunningServer],
) -> None:
    counter, server = counted
    transport = _http.BoundedTransport(httpx.AsyncHTTPTransport(), 2)
    async with httpx.AsyncClient(base_url=server.url, transport=transport) as client:
        answers = await asyncio.gather(*(client.get("/slow") for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert counter.peak == 2


async def test_bounded_transport_pool_timeout_and_slot_release(
    counted: tuple[_Concurrency, RunningServer],
) -> None:
    _, server = counted
    transport = _http.BoundedTransport(httpx.AsyncHTTPTransport(), 1)
    timeout = httpx.Timeout(5.0, pool=0.05)
    async with httpx.AsyncClient(
        base_url=server.url, transport=transport, timeout=timeout
    ) as client:
        async with client.stream("GET", "/slow") as held:
            with pytest.raises(httpx.PoolTimeout):
                await client.get("/slow")
            await held.aread()
        # The held response is closed: its slot is free again.
        assert (await client.get("/slow")).status_code == 200


class _CountingPool(httpx.AsyncBaseTransport):
    """A real pool that also counts the requests it was given."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=2))
        self.given = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.given += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_spread_transport_holds_as_many_as_its_pools_together(
    counted: tuple[_Concurrency, RunningServer],
) -> None:
    counter, server = counted
    pools = [_CountingPool() for _ in range(3)]
    transport = _http.SpreadTransport(list(pools))
    async with httpx.AsyncClient(base_url=server.url, transport=transport) as client:
        answers = await asyncio.gather(*(client.get("/slow") for _ in range(6)))
        # Each held request goes to the least busy pool: 2 each, all 6 at once.
        assert [a.status_code for a in answers] == [200] * 6
        assert [p.given for p in pools] == [2, 2, 2]
        assert counter.peak == 6
        # Bodies read, slots free: the next request goes to the first pool again.
        await client.get("/slow")
        assert [p.given for p in pools] == [3, 2, 2]


async def test_spread_transport_frees_a_slot_when_a_request_fails() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    pools = [_CountingPool() for _ in range(2)]
    transport = _http.SpreadTransport(list(pools))
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/")
    # Nothing stayed counted as busy, so the first pool was chosen every time.
    assert [p.given for p in pools] == [3, 0]


def test_held_transport_spreads_over_narrow_pools_on_the_asyncio_backend() -> None:
    transport = _http.held_transport(1000, 100)
    pools = transport._pools
    assert len(pools) == _http.HELD_SHARDS
    widths = [p._pool._max_connections for p in pools]  # type: ignore[attr-defined]
    assert sum(widths) >= 1000 and max(widths) <= 1000 // _http.HELD_SHARDS + 1
    # One TLS context for all of them (each costs a CA bundle load).
    assert len({id(p._pool._ssl_context) for p in pools}) == 1  # type: ignore[attr-defined]


def test_short_calls_use_narrow_pools_that_keep_every_connection() -> None:
    # httpcore 1.0 would close an idle connection whenever a pool holds more connections than
    # its keep-alive limit; pools as wide as their keep-alive never reconnect for that.
    spread = _http.bounded_transport()._inner  # type: ignore[attr-defined]
    pools = [p._pool for p in spread._pools]
    assert sum(p._max_connections for p in pools) == _http.MAX_IN_FLIGHT
    assert all(p._max_keepalive_connections == p._max_connections for p in pools)
