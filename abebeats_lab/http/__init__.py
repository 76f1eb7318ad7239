"""The HTTP client (stock httpx, one per event loop) and the one retry policy.

Runway, Pika, Replicate's SDK and downloads all send through one plain `httpx.AsyncClient` per
event loop (`trust_env` on, so ``HTTP(S)_PROXY``/``NO_PROXY`` apply; one `LIMITS`; explicit
timeouts). How many jobs run at once is the runner's per-route limiters' business, not a pool's.

Retry rules (DESIGN.md "Reliability contract"): 408/409/429/5xx and connection errors are
retried, honouring ``x-should-retry``, ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP
date), a JSON body's ``retry_after`` (Replicate) and Google's ``RetryInfo.retryDelay``;
attempts and total sleep are bounded (`RetryPolicy`); delays carry jitter. Each kind of
request has exactly one retrier, so retries never multiply:

================================  ===========================================================
request                           who retries it
================================  ===========================================================
status while waiting (GET, SSE)   the wait loop (`waiting.wait`: a bounded count of errors,
                                  honouring hints); the transport sends it once (`SEND_ONCE`)
other idempotent requests         `send` / `retry_errors` with the provider's `RetryPolicy`
(result fetch, cancel, lookups)   (Replicate's transport sends once; its provider wraps the
                                  call in `retry_errors`). SDK retries are off: genai's
                                  ``HttpRetryOptions(attempts=1)``; Replicate's
                                  ``RetryTransport`` never sees an error answer to retry
creates (paid, not idempotent)    retried only when refused: never sent (connect errors), or
                                  answered 408/409/429/5xx; anything after sending raises
                                  `AmbiguousSubmitError` and is reconciled, never resent
cancel                            one helper, `waiting.cancel_remote`, one timeout, over the
                                  provider's policy above
downloads                         `run.job` fetches a cut-off body again (`DOWNLOAD_ATTEMPTS`)
================================  ===========================================================

Every answer body is read with a cap on its decoded size (`MAX_ANSWER_BYTES`, `read_answer`):
a hostile or broken server cannot make this process hold a gigabyte because it sent a
megabyte of gzip. Past the cap the request fails as that provider's `ProtocolError`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from abebeats_lab import __version__
from abebeats_lab._types import EMULATOR_HEADER
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    ProtocolError,
    ProviderHTTPError,
    ProviderTransportError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "LIMITS",
    "MAX_ANSWER_BYTES",
    "SEND_ONCE",
    "Lease",
    "RetryPolicy",
    "from_emulator",
    "is_http_error",
    "json_body",
    "leased",
    "never_sent",
    "new_client",
    "read_answer",
    "retry_delay",
    "retry_errors",
    "retry_hint",
    "send",
    "should_retry",
]

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0, pool=None)
"""No pool timeout: a request waiting for a free connection is bounded by its job's deadline,
not failed because held requests (fal's status streams, Replicate's held creates) are busy."""
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own defaults, stated: the runner's per-route limiters, not the pool, bound how many
jobs are in flight (a few per route)."""
USER_AGENT = f"abebeats-lab/{__version__}"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_HINT_S = 60.0
_HTTPX_PACKAGES = frozenset({"httpx", "httpx2"})
"""httpx and its drop-in fork httpx2 (google-genai's default), recognised by package name."""
_NOT_SENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})
"""Errors raised before a single byte of the request left this machine."""
MAX_ANSWER_BYTES = 8 * 1024**2
"""Cap on a provider's JSON answer once decoded: statuses and errors are a few KB, and no
provider we speak to puts video bytes in them (Veo does; it has its own cap)."""
BOUNDED_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
"""Content encodings whose expansion per network chunk is bounded (about 1000:1); others
(``br``, ``zstd``, if their decoders are installed) can inflate one chunk without limit."""
_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


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
SEND_ONCE = RetryPolicy(max_attempts=1)
"""No retry: for status requests, whose retries the wait loop owns (see the table above)."""


def new_client() -> httpx.AsyncClient:
    """A stock AsyncClient: our User-Agent, explicit timeouts and limits, proxies from the
    environment, no implicit redirects."""
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT}, timeout=DEFAULT_TIMEOUT, limits=LIMITS, trust_env=True
    )


class _Shared:
    __slots__ = ("client", "users")

    def __init__(self) -> None:
        self.client = new_client()
        self.users = 0


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shared] = weakref.WeakKeyDictionary()
"""The running loop's client: connections belong to the loop that opened them."""


def _acquire() -> httpx.AsyncClient:
    shared = _SHARED.get(loop := asyncio.get_running_loop())
    if shared is None or shared.client.is_closed:
        shared = _SHARED[loop] = _Shared()
    shared.users += 1
    return shared.client


async def _release(client: httpx.AsyncClient) -> None:
    shared = _SHARED.get(asyncio.get_running_loop())
    if shared is None or shared.client is not client:
        return
    shared.users -= 1
    if shared.users <= 0:
        del _SHARED[asyncio.get_running_loop()]
        await client.aclose()


@asynccontextmanager
async def leased() -> AsyncIterator[httpx.AsyncClient]:
    """The running loop's shared client for the block; the last user out closes it."""
    client = _acquire()
    try:
        yield client
    finally:
        await _release(client)


class Lease:
    """A long-lived user's hold on the shared client (a provider): taken in each event loop
    it is used from, on first use; given back, per loop, by `release`."""

    def __init__(self) -> None:
        self._held: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def client(self) -> httpx.AsyncClient:
        """The running loop's shared client."""
        loop = asyncio.get_running_loop()
        client = self._held.get(loop)
        if client is None or client.is_closed:
            client = self._held[loop] = _acquire()
        return client

    async def release(self) -> None:
        """Give the running loop's client back (a no-op if this lease never took it)."""
        client = self._held.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await _release(client)


def from_emulator(headers: Any) -> bool:
    """Whether a response's headers say a built-in emulator answered (any httpx flavour)."""
    return bool(headers.get(EMULATOR_HEADER))


def _httpx_names(exc: BaseException) -> set[str]:
    return {
        cls.__name__
        for cls in type(exc).__mro__
        if cls.__module__.partition(".")[0] in _HTTPX_PACKAGES
    }


def is_http_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an `httpx.HTTPError`, from httpx or from google-genai's httpx2
    (whose classes share httpx's names but not its types; abebeats_lab never imports it)."""
    return "HTTPError" in _httpx_names(exc)


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` failed before the request left this machine (so no job can exist)."""
    return bool(_httpx_names(exc) & _NOT_SENT)


def retry_hint(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait, from headers or the error body; None if none."""
    hint = header_hint(response.headers)
    return hint if hint is not None else _body_hint(response)


def header_hint(headers: httpx.Headers) -> float | None:
    """Seconds the ``Retry-After``/``retry-after-ms`` headers ask for (a streamed answer's
    body is not read, so this is all a download can go by); None if none."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return _sane(float(ms) / 1000)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        return _parse_retry_after(value)
    return None


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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
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


def too_large(limit: int, provider: str) -> ProtocolError:
    """The error for an answer over the cap (the message names the cap)."""
    return ProtocolError(
        f"answer larger than the {limit}-byte cap on provider answers (decoded); "
        "stopped reading it",
        provider=provider,
    )


def check_encoding(headers: Any, provider: str) -> None:
    """Refuse an answer whose content encoding could inflate without bound."""
    encodings = str(headers.get("content-encoding", "")).lower().split(",")
    unbounded = [e.strip() for e in encodings if e.strip() not in BOUNDED_ENCODINGS]
    if unbounded:
        raise ProtocolError(
            f"answer in content encoding {', '.join(unbounded)!r}, which is not read "
            "(only identity, gzip and deflate)",
            provider=provider,
        )


async def read_answer(
    response: httpx.Response, *, provider: str, limit: int = MAX_ANSWER_BYTES
) -> httpx.Response:
    """Read a streamed answer's body, decoded, up to ``limit`` bytes; return a response that
    holds it (headers kept, minus those of the encoding now undone). The stream is closed.

    Past ``limit`` it raises `ProtocolError` without reading further.
    """
    try:
        check_encoding(response.headers, provider)
        declared = response.headers.get("content-length", "")
        plain = not response.headers.get("content-encoding")
        if plain and declared.isdigit() and int(declared) > limit:
            raise too_large(limit, provider)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise too_large(limit, provider)
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _BODY_HEADERS]
    return httpx.Response(
        response.status_code, headers=headers, content=bytes(body), request=response.request
    )


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
    observe: Callable[[httpx.Response], None] | None = None,
    max_bytes: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> httpx.Response:
    """Send with the retry policy; return a 2xx/3xx response or raise our error types.

    ``observe`` sees every response, errors included (how a provider notices an emulator).
    The body is read with `read_answer`'s cap of ``max_bytes``.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            streamed = await client.send(client.build_request(method, url, **kwargs), stream=True)
            if observe is not None:
                observe(streamed)
            response = await read_answer(streamed, provider=provider, limit=max_bytes)
        except httpx.HTTPError as exc:
            if not idempotent and not never_sent(exc):
                raise AmbiguousSubmitError(
                    f"{method} {url} was sent but no answer came back ({type(exc).__name__})",
                    provider=provider,
                ) from exc
            error: Exception = ProviderTransportError(
                f"{type(exc).__name__}: {exc}", provider=provider
            )
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
    except RecursionError as exc:  # json's C parser recurses once per bracket
        raise ProtocolError("answer nested too deeply to read", provider=provider) from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}", provider=provider)
    return data
