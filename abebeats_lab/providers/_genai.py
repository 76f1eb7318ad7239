"""What the two routes on google-genai (Gemini, Veo) share: the client, its hooks, its errors.

Both use genai's HTTP client as shipped (its own pool, proxies from the environment, its mTLS
handling), one client per event loop, with genai's own retries off
(``HttpRetryOptions(attempts=1)``): a refused create is retried by `retry_errors`, a status
read by the wait loop (`abebeats_lab.http`). Only event hooks are added: to notice the
emulator, and, where a route sets `GenaiProvider.answer_cap`, to bound answers. genai 3.x runs
on ``httpx2``, whose errors and responses are recognised by name (`http.is_http_error`), never
imported.

Answer size: genai reads bodies itself, so the cap is enforced from the hooks: requests ask
for ``Accept-Encoding: identity``, an answer in another encoding is refused, a declared length
over the cap is refused, and the body stream is wrapped so reading stops at the cap. With
identity encoding the bytes counted are the decoded bytes.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from abebeats_lab.errors import LabError, ProtocolError, ProviderHTTPError
from abebeats_lab.http import (
    RetryPolicy,
    from_emulator,
    is_http_error,
    never_sent,
    retry_hint,
    too_large,
)
from abebeats_lab.providers.base import Provider, transport_failure, unreadable_answer

__all__ = ["GenaiProvider", "http_error"]

T = TypeVar("T")
_MS = 1000
_ONE_ATTEMPT = 1
"""genai's own retries off: each kind of request has one retrier (`abebeats_lab.http`)."""


class GenaiProvider(Provider):
    """A provider that drives google-genai; subclasses build the client for their service."""

    api_version: ClassVar[str | None] = None
    """The API version genai sends; None keeps genai's default."""
    answer_cap: ClassVar[int | None] = None
    """When set, every answer is asked unencoded and refused past this many bytes."""

    def __init__(
        self, *, base_url: str | None, emulated: bool, timeout_s: float, retry: RetryPolicy
    ) -> None:
        self._base_url = base_url
        self.emulated = emulated
        self._timeout_s = timeout_s
        self._retry = retry
        self._genai: genai.Client | None = None
        self._genai_loop: asyncio.AbstractEventLoop | None = None

    @abc.abstractmethod
    def _new_client(self, options: types.HttpOptions) -> genai.Client:
        """A genai client for this route's service, with these HTTP options."""

    def _client(self) -> genai.Client:
        # One genai client per event loop, as genai itself keeps without a transport argument:
        # pooled connections belong to the loop that opened them.
        loop = asyncio.get_running_loop()
        if self._genai is None or self._genai_loop is not loop:
            self._genai_loop = loop
            self._genai = self._new_client(self._http_options())
        return self._genai

    def _http_options(self) -> types.HttpOptions:
        hooks: dict[str, list[Callable[[Any], Awaitable[None]]]] = {"response": [self._observe]}
        if self.answer_cap is not None:
            hooks["request"] = [_ask_identity]
        return types.HttpOptions(
            base_url=self._base_url,
            api_version=self.api_version,
            timeout=int(self._timeout_s * _MS),
            retry_options=types.HttpRetryOptions(attempts=_ONE_ATTEMPT),
            async_client_args={"event_hooks": hooks},
        )

    async def _observe(self, response: Any) -> None:
        """genai's response hook: an emulator's answer makes this client emulated; with
        `answer_cap`, the answer's body is bounded (see the module docstring)."""
        if from_emulator(response.headers):
            self.emulated = True
        if self.answer_cap is not None:
            _bound_body(response, self.answer_cap, self.name)

    async def _call(self, make: Callable[[], Awaitable[T]], *, creating: bool = False) -> T:
        """Run one genai call and translate whatever it raises into our error types."""
        try:
            return await make()
        except Exception as exc:
            error = self._translate(exc, creating=creating)
            if error is None:
                raise
            raise error from exc

    def _translate(self, exc: Exception, *, creating: bool) -> LabError | None:
        """Our error for what genai's models client raised, or None to let it pass as it is.

        A subclass that uses another genai surface maps that surface's errors first.
        """
        if isinstance(exc, genai_errors.APIError):
            return http_error(self.name, exc.code, f"{exc.status or ''} {exc.message or ''}", exc)
        if isinstance(exc, (ValueError, TypeError, RecursionError)):
            # bad JSON (nested past the parser's depth too); a body genai's models reject
            return unreadable_answer(exc, provider=self.name)
        if is_http_error(exc):  # genai's httpx2 errors, recognised without importing httpx2
            sent = creating and not never_sent(exc)
            return transport_failure(exc, provider=self.name, sent=sent)
        return None

    async def aclose(self) -> None:
        if self._genai is not None:
            client, self._genai = self._genai, None
            await client.aio.aclose()


def http_error(provider: str, status_code: int, text: str, raised: Any) -> ProviderHTTPError:
    """A ProviderHTTPError with the status, Google's words and any retry hint of the answer
    that ``raised`` (a genai error) carries."""
    hint = None
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        # genai's response is an httpx2 one (or aiohttp's): read its hint (Retry-After,
        # RetryInfo.retryDelay) with the one shared parser, through a plain httpx copy.
        response = raised.response
        mirror = httpx.Response(
            response.status_code, headers=list(response.headers.items()), content=response.content
        )
        hint = retry_hint(mirror)
    return ProviderHTTPError(
        provider=provider, status_code=status_code, body=text.strip(), retry_after_s=hint
    )


async def _ask_identity(request: Any) -> None:
    """genai's request hook: ask for an unencoded answer, so its size is its decoded size."""
    request.headers["Accept-Encoding"] = "identity"


def _bound_body(response: Any, limit: int, provider: str) -> None:
    """Refuse an encoded or declared-too-large answer; wrap the rest to stop at ``limit``.

    ``response`` is genai's (httpx2) response before its body is read; its stream must stay
    an instance of that library's ``AsyncByteStream``, found by name (httpx2 is never imported).
    """
    encoding = str(response.headers.get("content-encoding", "identity")).strip().lower()
    if encoding not in ("", "identity"):
        raise ProtocolError(
            f"answer in content encoding {encoding!r} though identity was asked", provider=provider
        )
    declared = str(response.headers.get("content-length", ""))
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit, provider)
    base = next((c for c in type(response.stream).__mro__ if c.__name__ == "AsyncByteStream"), None)
    if base is not None:
        response.stream = _capped_stream(base, response.stream, limit, provider)


def _capped_stream(base: type, inner: Any, limit: int, provider: str) -> Any:
    """An ``AsyncByteStream`` (of ``base``'s library) that raises past ``limit`` bytes."""

    class Capped(base):  # type: ignore[misc]
        async def __aiter__(self) -> AsyncIterator[bytes]:
            seen = 0
            async for chunk in inner:
                seen += len(chunk)
                if seen > limit:
                    raise too_large(limit, provider)
                yield chunk

        async def aclose(self) -> None:
            await inner.aclose()

    return Capped()
