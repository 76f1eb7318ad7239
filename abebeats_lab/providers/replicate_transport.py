"""The transport the Replicate SDK sends through: the shared client, the answer cap, and the
SDK's only retrier (creates refused with 429/5xx or never sent; see `providers.replicate`).

Kept apart from the provider because it speaks httpx, not Replicate's predictions: it turns
error answers into `ProviderHTTPError` so the SDK's own ``RetryTransport`` never retries them,
and sets the timeouts the SDK leaves unset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from replicate.exceptions import ReplicateError

from abebeats_lab.errors import ProviderHTTPError
from abebeats_lab.http import (
    Lease,
    RetryPolicy,
    never_sent,
    read_answer,
    retry_delay,
    retry_hint,
    should_retry,
)

__all__ = ["HOLD_READ_MARGIN_S", "SdkTransport", "answered", "problem_text"]

HOLD_READ_MARGIN_S = 15.0
"""Extra read time past the hold: the SDK allows only 0.5 s, which a busy server overruns, and
a read timeout on a create is ambiguous (the prediction exists, the answer is lost)."""


class SdkTransport(httpx.AsyncBaseTransport):
    """The SDK's transport: each request sent by the running loop's shared client, and the
    SDK's only retrier (see `providers.replicate`'s docstring).

    An error answer is raised as `ProviderHTTPError` (with its retry hint), never returned,
    so the SDK's ``RetryTransport`` around this one has nothing to retry. Only POSTs (creates)
    are retried here: when the server refused them with 429/5xx (honouring hints) or they
    never left. A POST that failed after it was sent is not: the caller turns that into
    `AmbiguousSubmitError`. Every response is shown to ``observe`` first.
    """

    def __init__(
        self,
        lease: Lease,
        policy: RetryPolicy,
        timeout: httpx.Timeout,
        observe: Callable[[httpx.Response], None],
    ) -> None:
        self._lease = lease
        self._policy = policy
        self._timeout = timeout
        self._observe = observe

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return answered(await self.send_once(request))
        bound_timeout(request, self._timeout)
        widen_hold_timeout(request)
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                response = await self.send_once(request)
            except httpx.HTTPError as exc:
                delay = retry_delay(attempt, None, self._policy)
                if not never_sent(exc) or self._policy.gives_up(attempt, started, delay):
                    raise
            else:
                if response.status_code < httpx.codes.BAD_REQUEST or not should_retry(response):
                    return answered(response)
                delay = retry_delay(attempt, retry_hint(response), self._policy)
                if self._policy.gives_up(attempt, started, delay):
                    return answered(response)
            await asyncio.sleep(delay)

    async def send_once(self, request: httpx.Request) -> httpx.Response:
        """Send on the running loop's shared client, observed and read under the cap."""
        sent = await self._lease.client().send(request, stream=True)
        self._observe(sent)
        # The body read here under the cap, decoded, into a fresh response (the SDK's client
        # binds a response to itself).
        return await read_answer(sent, provider="replicate")


def answered(response: httpx.Response) -> httpx.Response:
    """A success as it is; an error answer raised as `ProviderHTTPError` (see `SdkTransport`),
    with Replicate's problem text and any retry hint (``Retry-After``, body ``retry_after``)."""
    if response.status_code < httpx.codes.BAD_REQUEST:
        return response
    raise ProviderHTTPError(
        provider="replicate",
        status_code=response.status_code,
        body=problem_text(ReplicateError.from_response(response)),
        retry_after_s=retry_hint(response),
    )


def bound_timeout(request: httpx.Request, timeout: httpx.Timeout) -> None:
    """Fill in the timeouts the SDK left unset: without ``Prefer: wait`` it sends a create
    with ``timeout=None``, and a create that never answers would hang for ever."""
    current = dict(request.extensions.get("timeout", {}))
    for phase, value in timeout.as_dict().items():
        if current.get(phase) is None:
            current[phase] = value
    request.extensions["timeout"] = current


def widen_hold_timeout(request: httpx.Request) -> None:
    """Give a ``Prefer: wait=N`` create N + margin to answer, and no pool deadline."""
    prefer = request.headers.get("prefer", "")
    if not prefer.startswith("wait"):
        return
    _, _, seconds = prefer.partition("=")
    hold = float(seconds) if seconds.strip().isdigit() else 60.0
    timeout = dict(request.extensions.get("timeout", {}))
    timeout["read"] = hold + HOLD_READ_MARGIN_S
    timeout["pool"] = None
    request.extensions["timeout"] = timeout


def problem_text(exc: ReplicateError) -> str:
    """Replicate's problem title and detail, as one line."""
    parts = [p for p in (exc.title, exc.detail) if p]
    return ": ".join(parts)
