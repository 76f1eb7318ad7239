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

    monkeypatch.setattr(os, "write", picky_write)
    body = random.Random(3).randbytes(2 * BUFFER_BYTES + 999)
    digest, direct = asyncio.run(_write(tmp_path / "c.bin", body, random.Random(3)))
    assert refused and direct is False
    assert (tmp_path / "c.bin").read_bytes() == body
    assert digest == hashlib.sha256(body).hexdigest()


@needs_direct
def test_disk_writes_bypass_the_page_cache(tmp_path: Path) -> None:
    try:
        os.close(os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
    except OSError:
        pytest.skip("the folder pytest gave refuses O_DIRECT; the buffered path is tested above")
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
