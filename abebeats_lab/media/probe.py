"""Video files on disk: probe them, check them, place them atomically, name them safely.

A file is placed by `verify_and_place`: a temporary name beside its destination
(`temporary_beside`), checked (non-empty, MP4/QuickTime signature, a clean PyAV probe),
then renamed, so a failed check leaves nothing behind. `save_bytes` does it for inline bytes;
`media.download` for streamed ones. The checks block: run them off the event loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from abebeats_lab._types import Output, Probe
from abebeats_lab.errors import DownloadError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "looks_like_mp4",
    "output_name",
    "probe",
    "safe_name",
    "save_bytes",
    "temporary_beside",
    "verify_and_place",
]

DEFAULT_MAX_BYTES = 2 * 1024**3
"""Refuse outputs above 2 GiB: a 10 s 4K clip is far smaller; anything bigger is a fault."""
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
NAME_CHARS = 120
"""The longest name `safe_name` builds: far under a file system's 255 bytes, with room left for
`temporary_beside`'s prefix and suffix."""
ROUTE_HEAD_CHARS = 64
"""What `output_name` keeps of a route too long to fit whole; a digest of the route follows."""
ROUTE_DIGEST_CHARS = 8


def safe_name(*parts: object, max_len: int = NAME_CHARS) -> str:
    """A file name built from untrusted strings: no separators, no dots in front, bounded."""
    return _cleaned(*parts)[:max_len]


def output_name(route: str, prompt_index: int, repeat: int, tag: str) -> str:
    """The file name (without suffix) of one job's video: route, prompt index, repeat and a short
    tag (content hash or attempt ref). Only the route part is ever cut, so two jobs never share
    a name; a route that fits keeps the name it always had (stored rows point at their files)."""
    whole = _cleaned(route, prompt_index, repeat, tag)
    if len(whole) <= NAME_CHARS:
        return whole
    # Routes differing only past the head (a Replicate version hash) still get distinct names.
    digest = hashlib.sha256(route.encode()).hexdigest()[:ROUTE_DIGEST_CHARS]
    head = _cleaned(safe_name(route, max_len=ROUTE_HEAD_CHARS))
    return _cleaned(head, digest, prompt_index, repeat, tag)


def _cleaned(*parts: object) -> str:
    text = "_".join(str(p) for p in parts if p is not None and str(p) != "")
    return _UNSAFE.sub("-", text).strip(".-_") or "output"


def looks_like_mp4(head: bytes) -> bool:
    """True when the bytes start with an ISO-BMFF / QuickTime box."""
    return len(head) >= 8 and head[4:8] in _MP4_BOXES


def probe(path: Path | str) -> Probe:
    """Duration, size, frame rate, codec and audio presence, as PyAV reads them."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DownloadError(f"{path.name}: no video stream")
            video = container.streams.video[0]
            if container.duration is not None:
                duration = container.duration / av.time_base
            elif video.duration is not None and video.time_base is not None:
                duration = float(video.duration * video.time_base)
            else:
                duration = 0.0
            rate = video.average_rate or video.guessed_rate
            return Probe(
                duration_s=round(float(duration), 3),
                width=video.codec_context.width,
                height=video.codec_context.height,
                fps=round(float(rate), 3) if rate else 0.0,
                codec=video.codec_context.name,
                has_audio=bool(container.streams.audio),
                bytes=path.stat().st_size,
            )
    except av.error.FFmpegError as exc:
        raise DownloadError(f"{path.name}: not a playable video ({exc})") from exc


def verify_and_place(tmp: Path, dest: Path, sha256: str) -> Output:
    """Check, probe and rename a complete file (blocking: run it off the event loop)."""
    with tmp.open("rb") as handle:
        head = handle.read(12)
    if not head:
        raise DownloadError(f"{dest.name}: empty body")
    if not looks_like_mp4(head):
        raise DownloadError(f"{dest.name}: not an MP4/QuickTime file (starts {head[:8]!r})")
    info = probe(tmp)
    tmp.replace(dest)
    return Output(path=dest, probe=info, sha256=sha256)


@contextlib.contextmanager
def temporary_beside(dest: Path) -> Iterator[Path]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def save_bytes(data: bytes, dest: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Output:
    """Verify inline bytes and place them at ``dest`` atomically."""
    if len(data) > max_bytes:
        raise DownloadError(f"{dest.name}: {len(data)} bytes is over the {max_bytes} byte cap")
    with temporary_beside(dest) as tmp:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return verify_and_place(tmp, dest, hashlib.sha256(data).hexdigest())
