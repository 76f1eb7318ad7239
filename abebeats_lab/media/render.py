"""The procedural renderer behind the ``local`` route and the emulators' outputs.

Frames come deterministically from the prompt, the seed and a style name: each word of the
prompt becomes a coloured disc on its own orbit over a drifting gradient, with the prompt
drawn as a caption. Encoded as H.264 (and optional AAC tones) with PyAV, no system ffmpeg.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from abebeats_lab.media._font import draw_text

__all__ = ["FPS", "RenderStopped", "frame_size", "render_video"]

FPS = 24
_SCALE = 4  # frames are drawn this many times smaller and scaled up by swscale: fast enough
_AUDIO_RATE = 48_000
_LINES = {"240p": 240, "360p": 360, "480p": 480, "720p": 720, "1080p": 1080, "4k": 2160}


class RenderStopped(Exception):
    """A render was abandoned because its job was cancelled."""


def frame_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """Width and height for a ratio like ``16:9`` and a resolution like ``720p`` (short side)."""
    width_part, _, height_part = aspect_ratio.partition(":")
    ratio = float(width_part) / float(height_part)
    short = float(_LINES.get(resolution.lower(), 720))
    width, height = (short * ratio, short) if ratio >= 1 else (short, short / ratio)
    return _even(width), _even(height)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _digest(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


def _frames(
    prompt: str, seed: int, style: str, width: int, height: int, count: int
) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(_digest(prompt, seed, style))
    words = [w for w in prompt.split() if w.strip()][:12] or ["video"]
    gw, gh = -(-width // _SCALE), -(-height // _SCALE)
    ys, xs = np.mgrid[0:gh, 0:gw].astype(np.float32)
    base = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    discs = []
    for word in words:
        word_rng = np.random.default_rng(_digest(word, seed, style))
        colour = word_rng.uniform(60, 255, size=3).astype(np.float32)
        radius = word_rng.uniform(0.06, 0.16) * min(gw, gh)
        orbit = word_rng.uniform(0.1, 0.4, size=2) * (gw, gh)
        speed = word_rng.uniform(0.2, 1.2) * word_rng.choice([-1.0, 1.0])
        phase = word_rng.uniform(0, 2 * np.pi)
        discs.append((colour, radius, orbit, speed, phase))
    caption = prompt.upper()[:48]
    rows, wave = ys / gh, xs / gw * 3.0
    for index in range(count):
        t = index / FPS
        mix = (rows + 0.25 * np.sin(t * 0.8 + wave))[..., None]
        grid = base[0] * (1 - mix) + base[1] * mix
        for colour, radius, orbit, speed, phase in discs:
            cx = gw / 2 + orbit[0] * np.cos(phase + speed * t)
            cy = gh / 2 + orbit[1] * np.sin(phase + 1.3 * speed * t)
            _blend_disc(grid, xs, ys, cx, cy, radius, colour)
        frame = np.clip(grid, 0, 255).astype(np.uint8)
        draw_text(frame, caption, x=max(1, gw // 40), y=gh - gh // 8, scale=max(1, gh // 180))
        yield frame


def _blend_disc(
    grid: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    cx: float,
    cy: float,
    r: float,
    colour: np.ndarray,
) -> None:
    # Only the disc's bounding box is touched: most of the frame is not under any disc.
    top, bottom = max(0, int(cy - r)), min(grid.shape[0], int(cy + r) + 1)
    left, right = max(0, int(cx - r)), min(grid.shape[1], int(cx + r) + 1)
    if top >= bottom or left >= right:
        return
    box = grid[top:bottom, left:right]
    inside = (xs[top:bottom, left:right] - cx) ** 2 + (ys[top:bottom, left:right] - cy) ** 2 < r * r
    box[inside] = 0.35 * box[inside] + 0.65 * colour


def _tones(prompt: str, seed: int, duration_s: float) -> np.ndarray:
    rng = np.random.default_rng(_digest("audio", prompt, seed))
    samples = int(duration_s * _AUDIO_RATE)
    t = np.arange(samples, dtype=np.float32) / _AUDIO_RATE
    notes = rng.choice([220.0, 261.6, 293.7, 329.6, 392.0, 440.0], size=max(1, int(duration_s * 2)))
    freq = np.repeat(notes, -(-samples // len(notes)))[:samples]
    envelope = 0.5 - 0.5 * np.cos(2 * np.pi * (t * 2 % 1))
    mono = 0.2 * np.sin(2 * np.pi * freq * t) * envelope
    return np.stack([mono, mono]).astype(np.float32)


def render_video(
    *,
    prompt: str,
    seed: int = 0,
    duration_s: float = 5,
    width: int = 1280,
    height: int = 720,
    audio: bool = False,
    style: str = "procedural",
    stop: threading.Event | None = None,
) -> bytes:
    """Render an MP4 (H.264, 24 fps, optional AAC) and return its bytes. Deterministic.

    Setting ``stop`` from another thread abandons the render with `RenderStopped`.
    """
    import av  # heavy: imported only when something is rendered

    if width % 2 or height % 2:
        raise ValueError(f"H.264 needs even dimensions, got {width}x{height}")
    count = max(1, round(duration_s * FPS))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "26"}
        # One thread keeps the bitstream identical from run to run.
        video.codec_context.thread_count = 1
        sound = container.add_stream("aac", rate=_AUDIO_RATE, layout="stereo") if audio else None
        for frame in _frames(prompt, seed, style, width, height, count):
            if stop is not None and stop.is_set():
                raise RenderStopped("render stopped")
            small = av.VideoFrame.from_ndarray(frame, format="rgb24")
            full = small.reformat(
                width=width, height=height, format="yuv420p", interpolation="BILINEAR"
            )
            for packet in video.encode(full):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            _encode_audio(container, sound, _tones(prompt, seed, count / FPS))
    return buffer.getvalue()


def _encode_audio(container: object, stream: object, pcm: np.ndarray) -> None:
    import av

    chunk = 1024
    for start in range(0, pcm.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm[:, start : start + chunk]), format="fltp", layout="stereo"
        )
        frame.sample_rate = _AUDIO_RATE
        frame.pts = start
        frame.time_base = Fraction(1, _AUDIO_RATE)
        for packet in stream.encode(frame):  # type: ignore[attr-defined]
            container.mux(packet)  # type: ignore[attr-defined]
    for packet in stream.encode(None):  # type: ignore[attr-defined]
        container.mux(packet)  # type: ignore[attr-defined]
