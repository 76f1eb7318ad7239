"""The HTTP client every httpx-based provider uses, and the one retry policy.

Retry rules (DESIGN.md "Reliability contract"): 408/409/429/5xx and connection errors are
retried, honouring ``x-should-retry``, ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP
date), a JSON body's ``retry_after`` (Replicate) and Google's ``RetryInfo.retryDelay``;
attempts and total sleep are bounded; delays carry jitter. A request that is not idempotent
(a paid create) is retried only when it provably never reached the server (connect errors)
or the server answered with a retryable status; any other failure after sending raises
`AmbiguousSubmitError`, because the job may exist.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from abebeats_lab import __version__
from abebeats_lab._net import asyncio_transport
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    ProtocolError,
    ProviderHTTPError,
    ProviderTransportError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "BoundedTransport",
    "RetryPolicy",
    "SpreadTransport",
    "bounded_transport",
    "build_client",
    "held_transport",
    "json_body",
    "retry_delay",
    "retry_errors",
    "retry_hint",
    "send",
    "should_retry",
    "spread_transport",
]

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
USER_AGENT = f"abebeats-lab/{__version__}"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_HINT_S = 60.0
# Errors raised before a single byte of the request left this machine.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
MAX_IN_FLIGHT = 64
"""Requests inside the pools at once; the rest wait on a semaphore (`BoundedTransport`)."""
POOL_WIDTH = 16
"""Connections per pool, all kept alive. httpcore 1.0 closes an idle connection whenever its
pool holds more connections than the keep-alive limit (it counts them all, not the idle
ones), and with the limit at the width it walks the pool once per idle connection on every
request: narrow pools at full keep-alive avoid both the reconnects and the long walks."""
MAX_KEEPALIVE = 20
"""Idle connections kept across a `held_transport`'s pools."""
HELD_SHARDS = 16
"""Pools behind `held_transport`: 1,000 held connections become walks of about 60."""


class RetryPolicy:
    """Bounds for retries: attempts, per-delay cap, total sleep; constants, not magic numbers."""

    __slots__ = ("backoff_cap_s", "base_delay_s", "max_attempts", "max_total_s")

    def __init__(
        self,
        *,
        max_attempts: int = 4,
        base_delay_s: float = 0.5,
        backoff_cap_s: float = 8.0,
        max_total_s: float = 120.0,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.backoff_cap_s = backoff_cap_s
        self.max_total_s = max_total_s

    def gives_up(self, attempt: int, started: float, delay: float) -> bool:
        """True when retry ``attempt`` + 1 would exceed the attempts or the time budget."""
        elapsed = time.monotonic() - started
        return attempt >= self.max_attempts or elapsed + delay > self.max_total_s


DEFAULT_RETRY = RetryPolicy()


def build_client(
    *,
    base_url: str,
    headers: Mapping[str, str] | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient with our User-Agent, explicit timeouts and no implicit redirects."""
    merged = {"User-Agent": USER_AGENT, **(headers or {})}
    return httpx.AsyncClient(
        base_url=base_url, headers=merged, timeout=timeout, transport=transport
    )


def bounded_transport() -> httpx.AsyncBaseTransport:
    """`MAX_IN_FLIGHT` connections behind a semaphore, in pools of `POOL_WIDTH` (short calls:
    creates, polls, results)."""
    return BoundedTransport(
        spread_transport(MAX_IN_FLIGHT, MAX_IN_FLIGHT, MAX_IN_FLIGHT // POOL_WIDTH), MAX_IN_FLIGHT
    )


class BoundedTransport(httpx.AsyncBaseTransport):
    """At most ``limit`` requests inside the wrapped pool; the rest queue on a semaphore.

    Why: httpcore rescans every queued request against every connection each time a request
    starts or ends, so a burst of hundreds (every job polling in the same second) costs
    quadratic CPU, while a semaphore queues in O(1). The wait keeps the pool timeout's
    meaning: past it, `httpx.PoolTimeout` (the request never left, so it may be retried).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, limit: int) -> None:
        self._inner = inner
        self._slots = asyncio.Semaphore(limit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._slots.locked():
            pool_s = request.extensions.get("timeout", {}).get("pool")
            try:
                async with asyncio.timeout(pool_s):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("no free connection slot", request=request) from None
        else:
            await self._slots.acquire()  # a free slot: taken at once, no timer to arm
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._slots.release()
            raise
        # The slot is held until the body is read or closed, like a pooled connection.
        response.stream = _Releasing(response.stream, self._slots.release)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def held_transport(max_connections: int, max_keepalive: int) -> SpreadTransport:
    """A wide pool for requests held open for minutes (Replicate's held creates, fal's SSE
    streams), spread over `HELD_SHARDS` narrow ones."""
    return spread_transport(max_connections, max_keepalive, HELD_SHARDS)


def spread_transport(max_connections: int, max_keepalive: int, pools: int) -> SpreadTransport:
    """``max_connections`` over ``pools`` pools on the asyncio backend, sharing one TLS context."""
    width = -(-max_connections // pools)
    keep = -(-max_keepalive // pools)
    limits = httpx.Limits(max_connections=width, max_keepalive_connections=keep)
    context = httpx.create_ssl_context()
    return SpreadTransport([asyncio_transport(limits, context) for _ in range(pools)])


class SpreadTransport(httpx.AsyncBaseTransport):
    """Sends each request through the least busy of several connection pools.

    Why: httpcore walks every connection of its pool each time a request starts or ends. With
    hundreds of requests in one pool, that walk is quadratic CPU; across N pools each walk is
    N times shorter. A pool that is full is skipped
    for as long as another has room, so together they hold as many requests as one wide pool.
    """

    def __init__(self, pools: list[httpx.AsyncBaseTransport]) -> None:
        self._pools = pools
        self._busy = [0] * len(pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = self._busy.index(min(self._busy))
        self._busy[index] += 1
        try:
            response = await self._pools[index].handle_async_request(request)
        except BaseException:
            self._busy[index] -= 1
            raise
        response.stream = _Releasing(response.stream, lambda: self._done(index))
        return response

    def _done(self, index: int) -> None:
        self._busy[index] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _Releasing(httpx.AsyncByteStream):
    """A response stream that gives its slot back once, when closed."""

    def __init__(self, inner: Any, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> AsyncIterator[bytes]:
        # The inner iterator itself: no generator of ours between every chunk and its reader.
        iterator: AsyncIterator[bytes] = self._inner.__aiter__()
        return iterator

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def retry_hint(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait, from headers or the error body; None if none."""
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return _sane(float(ms) / 1000)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        parsed = _parse_retry_after(value)
        if parsed is not None:
            return parsed
    return _body_hint(response)


def _parse_retry_after(value: str) -> float | None:
    try:
        return _sane(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _sane((when - datetime.now(UTC)).total_seconds())


def _body_hint(response: httpx.Response) -> float | None:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("retry_after"), int | float):
        return _sane(float(body["retry_after"]))
    error = body.get("error")
    details = error.get("details", []) if isinstance(error, dict) else []
    for detail in details if isinstance(details, list) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return _sane(float(delay[:-1]))
            except ValueError:
                continue
    return None


def _sane(seconds: float) -> float | None:
    return seconds if 0 <= seconds <= _MAX_HINT_S else None


def should_retry(response: httpx.Response) -> bool:
    """The server's ``x-should-retry`` wins; else the retryable status set."""
    explicit = str(response.headers.get("x-should-retry", ""))
    if explicit in ("true", "false"):
        return explicit == "true"
    return int(response.status_code) in RETRY_STATUSES


def retry_delay(attempt: int, hint: float | None, policy: RetryPolicy = DEFAULT_RETRY) -> float:
    """Delay before retry number ``attempt`` (1-based): the hint, else jittered backoff."""
    if hint is not None:
        return hint
    backoff = min(policy.base_delay_s * 2.0 ** (attempt - 1), policy.backoff_cap_s)
    return float(backoff * (1 - 0.25 * random.random()))


def error_from(response: httpx.Response, provider: str) -> ProviderHTTPError:
    """A ProviderHTTPError carrying status, body, request id and any retry hint."""
    request_id = response.headers.get("x-request-id") or response.headers.get("x-fal-request-id")
    return ProviderHTTPError(
        provider=provider,
        status_code=response.status_code,
        body=response.text,
        request_id=request_id,
        retry_after_s=retry_hint(response),
    )


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    idempotent: bool,
    policy: RetryPolicy = DEFAULT_RETRY,
    **kwargs: Any,
) -> httpx.Response:
    """Send with the retry policy; return a 2xx/3xx response or raise our error types."""
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await client.request(method, url, **kwargs)
        except _NOT_SENT as exc:
            error: Exception = ProviderTransportError(
                f"{type(exc).__name__}: {exc}", provider=provider
            )
            hint = None
        except httpx.HTTPError as exc:
            if not idempotent:
                raise AmbiguousSubmitError(
                    f"{method} {url} was sent but no answer came back ({type(exc).__name__})",
                    provider=provider,
                ) from exc
            error = ProviderTransportError(f"{type(exc).__name__}: {exc}", provider=provider)
            hint = None
        else:
            if response.status_code < 400:
                return response
            error = error_from(response, provider)
            if not should_retry(response):
                raise error
            hint = retry_hint(response)
        delay = retry_delay(attempt, hint, policy)
        if policy.gives_up(attempt, started, delay):
            raise error
        await asyncio.sleep(delay)


async def retry_errors(
    call: Callable[[], Awaitable[T]], *, policy: RetryPolicy = DEFAULT_RETRY
) -> T:
    """Retry a call that raises our error types (an SDK call wrapped by its provider).

    The same rules as `send`: a retryable status (honouring its hint) or a request that never
    left (`ProviderTransportError`); an `AmbiguousSubmitError` is never retried.
    """
    started, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        try:
            return await call()
        except ProviderHTTPError as exc:
            if exc.status_code not in RETRY_STATUSES:
                raise
            error: Exception = exc
            delay = retry_delay(attempt, exc.retry_after_s, policy)
        except ProviderTransportError as exc:
            error, delay = exc, retry_delay(attempt, None, policy)
        if policy.gives_up(attempt, started, delay):
            raise error
        await asyncio.sleep(delay)


def json_body(response: httpx.Response, provider: str) -> dict[str, Any]:
    """The response's JSON object, or a ProtocolError that says what was wrong."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        snippet = response.text[:80]
        raise ProtocolError(f"expected JSON, got {snippet!r}", provider=provider) from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}", provider=provider)
    return data
