"""The one retry policy: when to ask again, how long to wait, and the two retriers.

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
downloads                         `media.download` asks a busy (408/429/5xx) or unreachable
                                  host again under `DEFAULT_RETRY`; `run.job` fetches a cut-off
                                  body again (`DOWNLOAD_ATTEMPTS`); what still fails is left
                                  to `resume`
================================  ===========================================================

`error_from` lives here rather than with the answers because the error it builds carries the
answer's retry hint.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from abebeats_lab.errors import AmbiguousSubmitError, ProviderHTTPError, ProviderTransportError
from abebeats_lab.http.answers import MAX_ANSWER_BYTES, read_answer
from abebeats_lab.http.client import never_sent

__all__ = [
    "DEFAULT_RETRY",
    "RETRY_STATUSES",
    "SEND_ONCE",
    "RetryPolicy",
    "error_from",
    "header_hint",
    "retry_delay",
    "retry_errors",
    "retry_hint",
    "send",
    "should_retry",
]

T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_HINT_S = 60.0


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
