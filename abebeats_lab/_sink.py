"""A streamed body written to a file: hashed and written off the event loop, double-buffered,
and past the page cache where the filesystem allows it (``O_DIRECT``).

Why past the page cache: on small VMs, copying a 1 GiB video into the page cache and writing
it back costs more CPU than receiving it, and a verified output is read back once at most.
Filesystems that refuse ``O_DIRECT`` (tmpfs, some FUSE mounts, other systems) get ordinary
buffered writes; the bytes on disk are the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import mmap
import os
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["BUFFER_BYTES", "BodySink"]

BUFFER_BYTES = 4 * 1024 * 1024
"""Each of the two buffers: one fills from the socket while the other is hashed and written."""
_BLOCK = 4096
"""``O_DIRECT`` wants block-aligned lengths; mmap buffers are page-aligned already."""
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
_DIRECT = getattr(os, "O_DIRECT", 0)


class BodySink:
    """Collect chunks, hand full buffers to a worker thread, return the SHA-256 at the end.

    Use as ``async with BodySink(path) as sink: await sink.write(chunk) ...; await
    sink.finish()``. Leaving the block early, cancelled or not, never closes the file under
    a write still running in the worker: the last one out (loop or worker) closes it.
    """

    def __init__(self, path: Path) -> None:
        self._fd, self._direct = _open(path)
        self._buffers = (mmap.mmap(-1, BUFFER_BYTES), mmap.mmap(-1, BUFFER_BYTES))
        self._current = 0
        self._fill = 0
        self._pending: asyncio.Future[None] | None = None
        self._lock = threading.Lock()
        self._writing = False  # a buffer is with the worker (the thread's truth, not a future's)
        self._closing = False
        self._closed = False
        self._digest = hashlib.sha256()
        self.size = 0
        """Bytes accepted so far."""

    async def write(self, data: bytes) -> None:
        """Copy ``data`` into the current buffer; a full buffer goes to the worker."""
        view = memoryview(data)
        self.size += len(view)
        while view:
            take = min(BUFFER_BYTES - self._fill, len(view))
            self._buffers[self._current][self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == BUFFER_BYTES:
                await self._hand_over()

    async def finish(self) -> str:
        """Write what is left, set the exact length, and return the hex SHA-256."""
        if self._fill:
            await self._hand_over()
        await self._drain()
        os.ftruncate(self._fd, self.size)  # drops the zero padding of a direct last block
        return self._digest.hexdigest()

    async def _hand_over(self) -> None:
        await self._drain()
        buffer, length = self._buffers[self._current], self._fill
        with self._lock:
            self._writing = True
        self._pending = asyncio.ensure_future(asyncio.to_thread(self._store, buffer, length))
        self._current ^= 1
        self._fill = 0

    async def _drain(self) -> None:
        """Wait for the worker's write; its error, if any, is raised here."""
        if self._pending is not None:
            await asyncio.shield(self._pending)
            self._pending = None

    def _store(self, buffer: mmap.mmap, length: int) -> None:
        """Worker thread: hash and write one buffer (both release the GIL)."""
        try:
            end = length
            if self._direct and length % _BLOCK:
                end = length + _BLOCK - length % _BLOCK
            # Every view is released on the way out, an error included: a live view would
            # keep the buffer from closing.
            with memoryview(buffer) as whole, whole[:length] as data, whole[:end] as block:
                self._digest.update(data)
                if end > length:
                    whole[length:end] = bytes(end - length)
                self._write_all(block)
        finally:
            with self._lock:
                self._writing = False
                close_now = self._closing
            if close_now:
                self._close()

    def _write_all(self, data: memoryview) -> None:
        """``os.write`` until done. A filesystem may still reject an aligned direct write
        (allowed, if rare): then ``O_DIRECT`` goes off for the rest of the file."""
        offset = 0
        while offset < len(data):
            try:
                offset += os.write(self._fd, data[offset:])
            except OSError as exc:
                if not (self._direct and exc.errno == errno.EINVAL):
                    raise
                import fcntl  # only systems with O_DIRECT get here, and they all have fcntl

                flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
                fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~_DIRECT)
                self._direct = False

    async def __aenter__(self) -> BodySink:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._closing = True
            busy = self._writing
        if not busy:
            self._close()
        # else: the worker closes the file when its write returns (see `_store`)

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.close(self._fd)
        for buffer in self._buffers:
            # A traceback being raised may still hold a view of it; it is freed with that.
            with contextlib.suppress(BufferError):
                buffer.close()


def _open(path: Path) -> tuple[int, bool]:
    binary = getattr(os, "O_BINARY", 0)
    if _DIRECT:
        try:
            return os.open(path, _FLAGS | binary | _DIRECT, 0o600), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, _FLAGS | binary, 0o600), False
