"""Model weight files fetched once per user: over HTTP into a cache folder, checked, with a bar.

`fetch` streams one URL to a temporary name beside its destination, hashing it on the way,
checks the size (the server's ``Content-Length`` and the size we expect, where known) and the
SHA-256 (where known), then renames it into place: a file in the cache is always whole. A
rich progress bar shows the transfer on a terminal (stderr). Blocking on purpose: weights
are fetched once, before a pool of metric workers starts, not on an event loop.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from abebeats_lab.errors import DownloadError

__all__ = ["WeightFile", "fetch"]

CHUNK_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
"""A stalled read gives up after a minute; a slow but moving transfer goes on."""


@dataclass(frozen=True, slots=True)
class WeightFile:
    """One file of a model: where it goes (relative to the model's folder) and what it is."""

    name: str
    url: str
    size: int | None = None
    """Bytes, where known; a different size is refused."""
    sha256: str | None = None
    """Hex digest, where known; a different digest is refused."""


def fetch(file: WeightFile, folder: Path, *, progress: bool = True) -> Path:
    """Download ``file`` into ``folder`` (kept as is when already there); returns its path.

    Raises `DownloadError` with one line saying why (no connection, an HTTP status, a size or
    digest that does not match). Proxies from the environment apply (httpx ``trust_env``).
    """
    dest = folder / file.name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per fetch: two threads (two scored runs in one kernel) or two
    # processes fetching at once never write, rename or delete each other's file.
    handle, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(handle)
    partial = Path(name)
    try:
        digest = _stream(file, partial, progress)
        _check(file, partial, digest)
        partial.replace(dest)
    except httpx.HTTPError as exc:
        raise DownloadError(f"{file.url}: {type(exc).__name__}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return dest


def _stream(file: WeightFile, partial: Path, progress: bool) -> str:
    """Write the body to ``partial``; returns its SHA-256."""
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    digest = hashlib.sha256()
    with (
        httpx.Client(follow_redirects=True, timeout=timeout) as client,
        client.stream("GET", file.url) as response,
    ):
        if response.status_code != httpx.codes.OK:
            raise DownloadError(f"{file.url}: HTTP {response.status_code}")
        encoded = response.headers.get("content-encoding", "identity") != "identity"
        # A compressed body's Content-Length counts the compressed bytes, not the file's.
        announced = (
            None if encoded else int(response.headers.get("content-length", 0))
        ) or file.size
        with _bar(file.name, announced, progress) as advance, partial.open("wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                advance(len(chunk))
        if announced and partial.stat().st_size != announced:
            got = partial.stat().st_size
            raise DownloadError(f"{file.url}: got {got} bytes of {announced}: cut off")
    return digest.hexdigest()


def _check(file: WeightFile, partial: Path, digest: str) -> None:
    size = partial.stat().st_size
    if file.size is not None and size != file.size:
        raise DownloadError(f"{file.url}: {size} bytes, expected {file.size}")
    if file.sha256 is not None and digest != file.sha256.lower():
        raise DownloadError(f"{file.url}: SHA-256 {digest}, expected {file.sha256}")


class _bar:
    """A rich progress bar for one transfer (nothing when ``show`` is false)."""

    def __init__(self, name: str, total: int | None, show: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            disable=not show,
            transient=False,
        )
        self._task = self._progress.add_task(f"fetching {name}", total=total)

    def __enter__(self) -> _bar:
        self._progress.start()
        return self

    def __call__(self, count: int) -> None:
        self._progress.advance(self._task, count)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
