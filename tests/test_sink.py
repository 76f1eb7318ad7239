"""The download sink: exact bytes and hash for any length and chunking, on direct and buffered
filesystems alike, and nothing left open when the writer stops early."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
from pathlib import Path

import pytest

from abebeats_lab._sink import BUFFER_BYTES, BodySink

SIZES = [0, 1, 4095, 4096, 4097, BUFFER_BYTES, BUFFER_BYTES + 1, 2 * BUFFER_BYTES + 12_345]


async def _write(path: Path, body: bytes, rng: random.Random) -> tuple[str, bool]:
    async with BodySink(path) as sink:
        at = 0
        while at < len(body):
            step = rng.choice([1, 7, 4096, 65_536, 1_000_003])
            await sink.write(body[at : at + step])
            at += step
        digest = await sink.finish()
        return digest, sink._direct


@pytest.mark.parametrize("size", SIZES)
def test_any_length_and_chunking_lands_byte_exact(tmp_path: Path, size: int) -> None:
    rng = random.Random(size)
    body = rng.randbytes(size)
    digest, _ = asyncio.run(_write(tmp_path / "body.bin", body, rng))
    assert (tmp_path / "body.bin").read_bytes() == body
    assert digest == hashlib.sha256(body).hexdigest()


def _skip_unless_direct(folder: Path) -> None:
    try:
        os.close(os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
    except OSError:
        pytest.skip("the folder pytest gave refuses O_DIRECT; the buffered path is tested above")


needs_direct = pytest.mark.skipif(
    not hasattr(os, "O_DIRECT"), reason="no O_DIRECT here: the sink always writes buffered"
)


@needs_direct
def test_a_filesystem_refusing_o_direct_at_open_gets_buffered_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refusing_open(path: object, flags: int, *args: object) -> int:
        if flags & os.O_DIRECT:  # what tmpfs on older kernels and some FUSE mounts answer
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    body = random.Random(2).randbytes(BUFFER_BYTES + 5)
    digest, direct = asyncio.run(_write(tmp_path / "b.bin", body, random.Random(2)))
    assert direct is False
    assert (tmp_path / "b.bin").read_bytes() == body
    assert digest == hashlib.sha256(body).hexdigest()


@needs_direct
def test_a_direct_write_refused_midway_carries_on_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    real_write = os.write
    refused = []

    def picky_write(fd: int, data: object) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT and not refused:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)  # type: ignore[arg-type]

    _skip_unless_direct(tmp_path)
    monkeypatch.setattr(os, "write", picky_write)
    body = random.Random(3).randbytes(2 * BUFFER_BYTES + 999)
    digest, direct = asyncio.run(_write(tmp_path / "c.bin", body, random.Random(3)))
    assert refused and direct is False
    assert (tmp_path / "c.bin").read_bytes() == body
    assert digest == hashlib.sha256(body).hexdigest()


@needs_direct
def test_disk_writes_bypass_the_page_cache(tmp_path: Path) -> None:
    _skip_unless_direct(tmp_path)
    _, direct = asyncio.run(_write(tmp_path / "disk.bin", b"x" * 10_000, random.Random(1)))
    assert direct is True


def test_leaving_early_closes_the_file(tmp_path: Path) -> None:
    async def stop_midway() -> int:
        with pytest.raises(RuntimeError):
            async with BodySink(tmp_path / "partial.bin") as sink:
                await sink.write(bytes(BUFFER_BYTES + 10))  # one buffer is with the worker
                fd = sink._fd
                raise RuntimeError("connection lost")
        return fd

    fd = asyncio.run(stop_midway())
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_cancelled_writer_never_closes_the_file_under_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while the worker is inside a slow write: the task ends cancelled, the file
    stays open until that write returns, then it is closed (by the worker)."""
    import threading

    real_write = os.write
    entered, release = threading.Event(), threading.Event()

    def slow_write(fd: int, data: object) -> int:
        entered.set()
        release.wait(timeout=30)
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "write", slow_write)
    seen: dict[str, int] = {}

    async def scenario() -> None:
        async def writer() -> None:
            async with BodySink(tmp_path / "slow.bin") as sink:
                seen["fd"] = sink._fd
                await sink.write(bytes(BUFFER_BYTES))  # one full buffer: the worker takes it
                await sink.finish()

        task = asyncio.create_task(writer())
        await asyncio.to_thread(entered.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        os.fstat(seen["fd"])  # still open: the worker is mid-write
        release.set()
        for _ in range(300):  # the worker closes it as soon as its write returns
            try:
                os.fstat(seen["fd"])
            except OSError:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the file was never closed")

    asyncio.run(scenario())


def test_a_failing_write_raises_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)

    async def scenario() -> None:
        async with BodySink(tmp_path / "full.bin") as sink:
            await sink.write(b"x" * 10_000)
            await sink.finish()

    with pytest.raises(OSError) as caught:
        asyncio.run(scenario())
    assert caught.value.errno == errno.ENOSPC
