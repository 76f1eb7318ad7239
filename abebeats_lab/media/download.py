"""Fetching outputs: a budgeted stream to disk, retries of a busy host, expired URLs refreshed.

Every output lands through `save_output`: streamed (through the event loop's shared httpx
client, `http`) to a temporary name in the target folder with its SHA-256 computed on the
way, checked and placed by `media.probe` (non-empty, MP4/QuickTime signature, a clean PyAV
probe, run off the event loop), flushed to disk with ``fsync``, then renamed. A failed check
leaves nothing behind.

A download has its own time budget (`DownloadBudget`: a minimum average throughput after a
grace period, and a ceiling), because a host that sends one byte now and then would keep the
read timeout from ever firing. Which hosts may serve an output is `media.hosts`' call (no
loopback, link-local or private address but the provider's own). Downloads never carry a
provider's key. A storage host that answers 408/429/5xx (busy, not gone), or that cannot be
reached or drops the connection before answering (`DownloadUnreachable`), is asked again under
`http`'s one retry policy, honouring ``Retry-After``; an expired URL (401/403/404/410) goes
to ``refresh``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from abebeats_lab._types import Output, OutputRef
from abebeats_lab.errors import DownloadError
from abebeats_lab.http import DEFAULT_RETRY, header_hint, leased, retry_delay, should_retry
from abebeats_lab.media.hosts import IPAddress, check_host, trusted_addresses
from abebeats_lab.media.probe import (
    DEFAULT_MAX_BYTES,
    save_bytes,
    temporary_beside,
    verify_and_place,
)

__all__ = [
    "BUDGET_ENV",
    "DownloadBudget",
    "DownloadHTTPError",
    "DownloadStalled",
    "DownloadTruncated",
    "DownloadUnreachable",
    "download",
    "save_output",
]

MAX_REDIRECTS = 5
MIN_BYTES_PER_S = 64 * 1024
"""A download must average at least this after `GRACE_S` (a 20 MB clip then takes ≤ 5 min)."""
GRACE_S = 30.0
MAX_DOWNLOAD_S = 30 * 60.0
"""Ceiling on one download attempt, however fast the bytes come."""
BUDGET_ENV = {
    "min_bytes_per_s": "ABEBEATS_LAB_DOWNLOAD_MIN_BYTES_PER_S",
    "grace_s": "ABEBEATS_LAB_DOWNLOAD_GRACE_S",
    "max_s": "ABEBEATS_LAB_DOWNLOAD_MAX_S",
}
"""Variables that override the download budget (a slow link, a test)."""


def _decode_data_url(url: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep:
        raise DownloadError("malformed data: URL")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=True)
        return urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise DownloadError(f"malformed data: URL ({exc})") from exc


@dataclass(frozen=True, slots=True)
class DownloadBudget:
    """How long one download attempt may take: from the request to the last byte, the body
    must average ``min_bytes_per_s`` once ``grace_s`` have passed, and end within ``max_s``."""

    min_bytes_per_s: float = MIN_BYTES_PER_S
    grace_s: float = GRACE_S
    max_s: float = MAX_DOWNLOAD_S

    @classmethod
    def from_env(cls) -> DownloadBudget:
        """The defaults, with any of the `BUDGET_ENV` variables that are set."""
        values: dict[str, float] = {}
        for field_name, variable in BUDGET_ENV.items():
            text = os.environ.get(variable, "").strip()
            if text:
                try:
                    values[field_name] = float(text)
                except ValueError:
                    raise DownloadError(f"{variable}={text!r} is not a number") from None
        return cls(**values)

    def allowed_s(self, received: int) -> float:
        """Seconds from the start by which the attempt must have moved past ``received``."""
        return min(self.max_s, max(self.grace_s, received / self.min_bytes_per_s))


class _Pace:
    """Keeps one attempt's `asyncio.timeout` at the moment the budget runs out."""

    def __init__(self, budget: DownloadBudget, limit: asyncio.Timeout) -> None:
        self.budget, self._limit = budget, limit
        self._start = asyncio.get_running_loop().time()
        self.received = 0
        self.advance(0)

    def advance(self, received: int) -> None:
        self.received = received
        self._limit.reschedule(self._start + self.budget.allowed_s(received))

    def reason(self) -> str:
        elapsed = asyncio.get_running_loop().time() - self._start
        budget = self.budget
        if elapsed >= budget.max_s:
            return f"download stopped at the {budget.max_s:g} s ceiling ({self.received} bytes)"
        return (
            f"download too slow: {self.received} bytes in {elapsed:.1f} s, under "
            f"{budget.min_bytes_per_s:g} bytes/s after the {budget.grace_s:g} s grace"
        )


def _check_scheme(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(f"refusing to download a {scheme or 'schemeless'}: URL; only http(s)")


@dataclass(frozen=True, slots=True)
class _Rules:
    """What one download must respect besides the URL."""

    max_bytes: int
    headers: dict[str, str]
    trusted: set[IPAddress] | None


async def _stream_to(
    client: httpx.AsyncClient, url: str, tmp: Path, rules: _Rules, pace: _Pace
) -> str:
    """Write the body to ``tmp``; return its SHA-256, computed while streaming (one pass)."""
    max_bytes, headers = rules.max_bytes, rules.headers
    for _ in range(MAX_REDIRECTS + 1):
        _check_scheme(url)
        await check_host(url, rules.trusted)
        async with client.stream("GET", url, headers=headers, follow_redirects=False) as response:
            if response.is_redirect:
                url = str(response.url.join(response.headers.get("location", "")))
                continue
            if response.status_code != 200:
                busy = should_retry(response)
                hint = header_hint(response.headers) if busy else None
                raise DownloadHTTPError(response.status_code, url, busy=busy, hint=hint)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(f"declared size {declared} is over the {max_bytes} byte cap")
            with tmp.open("wb") as handle:
                sha256, size = await _write_body(response, handle, max_bytes, pace)
                # fsync before the rename: a crash never leaves a renamed, short file.
                await asyncio.to_thread(os.fsync, handle.fileno())
            if declared and declared.isdigit() and size != int(declared):
                raise DownloadTruncated(f"truncated: got {size} of {declared} bytes")
            return sha256
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects")


async def _write_body(
    response: httpx.Response, handle: BinaryIO, max_bytes: int, pace: _Pace
) -> tuple[str, int]:
    """Chunks as they come off the socket, hashed and written; the hex SHA-256 and size."""
    digest, size = hashlib.sha256(), 0
    try:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError(f"body is over the {max_bytes} byte cap")
            pace.advance(size)
            digest.update(chunk)
            handle.write(chunk)
    except httpx.HTTPError as exc:
        raise DownloadTruncated(f"truncated: connection lost after {size} bytes ({exc})") from exc
    handle.flush()
    return digest.hexdigest(), size


class DownloadTruncated(DownloadError):
    """The body stopped short: the URL is likely still good, so fetching again may succeed."""


class DownloadStalled(DownloadTruncated):
    """The attempt ran out of its `DownloadBudget`; the URL may be fine, so it is worth
    fetching again (now, or by `resume` later)."""


class DownloadUnreachable(DownloadError):
    """No answer from the output host (connection refused or dropped, no headers in time):
    the URL may be fine, so it is worth fetching again (now, or by `resume` later)."""


class DownloadHTTPError(DownloadError):
    """The output URL answered with an error status (expired URLs give 401/403/404; a busy
    host 429/5xx, with ``busy`` set and its ``Retry-After`` in ``hint``)."""

    def __init__(
        self, status_code: int, url: str, *, busy: bool = False, hint: float | None = None
    ) -> None:
        self.status_code, self.busy, self.hint = status_code, busy, hint
        host = urllib.parse.urlsplit(url).netloc
        super().__init__(f"HTTP {status_code} fetching output from {host}")

    @property
    def expired(self) -> bool:
        """True for the statuses an expired signed URL gives."""
        return self.status_code in (401, 403, 404, 410)


async def download(
    url: str,
    dest: Path,
    *,
    client: httpx.AsyncClient | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    headers: dict[str, str] | None = None,
    budget: DownloadBudget | None = None,
    origin: str | None = None,
) -> Output:
    """Stream an http(s) URL to ``dest`` through a temporary file, verify it, rename it.

    Without ``client``, the event loop's shared client (proxies from the environment apply).
    ``budget`` bounds the time (default `DownloadBudget.from_env`). ``origin`` is the base
    URL of the provider whose answer gave ``url``: then the URL may not point at a loopback,
    link-local or private address other than the provider's own (see the module docstring);
    without it the caller chose the URL and it is fetched as given. ``headers`` are sent as
    given: never pass a provider's auth headers.
    """
    _check_scheme(url)
    if client is None:
        async with leased() as shared:
            return await download(
                url, dest, client=shared, max_bytes=max_bytes, headers=headers, budget=budget,
                origin=origin,
            )  # fmt: skip
    rules = _Rules(max_bytes, headers or {}, await trusted_addresses(origin))
    started, attempt = time.monotonic(), 1
    while True:
        try:
            return await _attempt(client, url, dest, rules, budget)
        except DownloadHTTPError as exc:
            delay = retry_delay(attempt, exc.hint)
            if not exc.busy or DEFAULT_RETRY.gives_up(attempt, started, delay):
                raise
        except DownloadUnreachable:
            delay = retry_delay(attempt, None)
            if DEFAULT_RETRY.gives_up(attempt, started, delay):
                raise
        await asyncio.sleep(delay)
        attempt += 1


async def _attempt(
    client: httpx.AsyncClient, url: str, dest: Path, rules: _Rules, budget: DownloadBudget | None
) -> Output:
    """One fetch of ``url`` under its own time budget, verified and placed at ``dest``."""
    with temporary_beside(dest) as tmp:
        try:
            async with asyncio.timeout(None) as limit:
                pace = _Pace(budget or DownloadBudget.from_env(), limit)
                sha256 = await _stream_to(client, url, tmp, rules, pace)
        except TimeoutError as exc:
            if not limit.expired():
                raise
            raise DownloadStalled(pace.reason()) from exc
        except httpx.HTTPError as exc:  # before the body (`_write_body` handles a cut-off one)
            raise DownloadUnreachable(f"download failed: {type(exc).__name__}: {exc}") from exc
        return await asyncio.to_thread(verify_and_place, tmp, dest, sha256)


async def save_output(
    ref: OutputRef,
    dest: Path,
    *,
    client: httpx.AsyncClient | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    refresh: Callable[[], Awaitable[OutputRef | None]] | None = None,
    budget: DownloadBudget | None = None,
    origin: str | None = None,
) -> Output:
    """Place one output at ``dest``: inline bytes, a ``data:`` URL, or an http(s) URL.

    ``refresh`` is called once when a URL turns out expired (401/403/404/410) and may return
    a fresh reference (Runway: fetch the task again for new signed URLs). ``budget`` and
    ``origin`` are `download`'s.
    """
    if ref.data is not None:
        return await asyncio.to_thread(save_bytes, ref.data, dest, max_bytes=max_bytes)
    if not ref.url:
        raise DownloadError("output has neither a URL nor bytes")
    if ref.url.startswith("data:"):
        data = _decode_data_url(ref.url)
        return await asyncio.to_thread(save_bytes, data, dest, max_bytes=max_bytes)
    try:
        return await download(
            ref.url, dest, client=client, max_bytes=max_bytes, budget=budget, origin=origin
        )
    except DownloadHTTPError as exc:
        if not (exc.expired and refresh):
            raise
        fresh = await refresh()
        if fresh is None:
            raise
        return await save_output(
            fresh, dest, client=client, max_bytes=max_bytes, budget=budget, origin=origin
        )
