"""The HTTP client: stock httpx, one per event loop, and how to recognise its errors.

Runway, Pika, Replicate's SDK and downloads all send through one plain `httpx.AsyncClient` per
event loop (`trust_env` on, so ``HTTP(S)_PROXY``/``NO_PROXY`` apply; one `LIMITS`; explicit
timeouts). How many jobs run at once is the runner's per-route limiters' business, not a pool's.
A provider holds the client with a `Lease`; a one-off user borrows it with `leased`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from abebeats_lab import __version__
from abebeats_lab._types import EMULATOR_HEADER

__all__ = [
    "DEFAULT_TIMEOUT",
    "LIMITS",
    "USER_AGENT",
    "Lease",
    "from_emulator",
    "is_http_error",
    "leased",
    "never_sent",
    "new_client",
]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0, pool=None)
"""No pool timeout: a request waiting for a free connection is bounded by its job's deadline,
not failed because held requests (fal's status streams, Replicate's held creates) are busy."""
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own defaults, stated: the runner's per-route limiters, not the pool, bound how many
jobs are in flight (a few per route)."""
USER_AGENT = f"abebeats-lab/{__version__}"
_HTTPX_PACKAGES = frozenset({"httpx", "httpx2"})
"""httpx and its drop-in fork httpx2 (google-genai's default), recognised by package name."""
_NOT_SENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})
"""Errors raised before a single byte of the request left this machine."""


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
