"""What the providers that speak HTTP through httpx (Runway, Pika) share: key, base URL, client.

The SDK-backed providers (Replicate, Veo) get the same from their official SDKs.
"""

from __future__ import annotations

import abc
from typing import Any

import httpx

from abebeats_lab import config
from abebeats_lab.http import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    Lease,
    RetryPolicy,
    from_emulator,
    send,
)
from abebeats_lab.providers.base import Provider
from abebeats_lab.secret import Secret

__all__ = ["HttpxProvider"]


class HttpxProvider(Provider):
    """A provider client on the event loop's shared httpx client (or a caller's own), with
    the shared retry policy."""

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        emulated: bool = False,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        key = config.key_for(self.name, api_key)
        assert key is not None  # required=True raises instead of returning None
        self._key = key
        self._base = config.base_url_for(self.name, base_url)
        self._timeout = timeout
        self._given = http_client
        self._lease = Lease()
        self._retry = retry
        self.emulated = emulated
        self._setup()

    def _setup(self) -> None:
        """Subclass state beyond the shared plumbing (keeps one typed constructor)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base!r}, emulated={self.emulated})"

    @abc.abstractmethod
    def _headers(self) -> dict[str, str]:
        """Authentication (and version) headers; built per call so the key stays in `Secret`."""

    @property
    def base_url(self) -> str | None:
        return self._base

    def _client(self) -> httpx.AsyncClient:
        return self._given or self._lease.client()

    def _observe(self, response: httpx.Response) -> None:
        """An emulator's answer makes this client emulated, however it was pointed there."""
        if from_emulator(response.headers):
            self.emulated = True

    async def _call(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        policy: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request with the retry policy (``policy``, else the provider's; `SEND_ONCE`
        for a status request, whose retries the wait loop owns); a path starting with ``/``
        joins the base URL."""
        target = f"{self._base}{url}" if url.startswith("/") else url
        return await send(
            self._client(),
            method,
            target,
            provider=self.name,
            idempotent=idempotent,
            policy=policy or self._retry,
            observe=self._observe,
            headers=self._headers(),
            timeout=self._timeout,
            **kwargs,
        )

    async def aclose(self) -> None:
        await self._lease.release()
