"""Small MP4s with known properties, written with PyAV and numpy (no renderer of ours)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 24
WIDTH, HEIGHT = 160, 90
SECONDS = 2
AUDIO_RATE = 48_000
TONE_HZ = 1000.0
_CHUNK = 1024


def write_clip(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    tone_amplitude: float | None = None,
    layout: str = "mono",
) -> Path:
    """Encode RGB frames as near-lossless H.264, with an optional 1 kHz sine track."""
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "1", "preset": "ultrafast"}
        # Every stream is added before the first packet: the header is written then.
        audio = (
            None
            if tone_amplitude is None
            else container.add_stream("aac", rate=AUDIO_RATE, layout=layout)
        )
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None and tone_amplitude is not None:
            _write_tone(container, audio, tone_amplitude, len(frames) / FPS, layout)
    return path


def _write_tone(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    amplitude: float,
    seconds: float,
    layout: str,
) -> None:
    samples = int(seconds * AUDIO_RATE)
    t = np.arange(samples) / AUDIO_RATE
    mono = (amplitude * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    channels = 1 if layout == "mono" else 2
    pcm = np.repeat(mono[None], channels, axis=0)
    for start in range(0, samples, _CHUNK):
        chunk = np.ascontiguousarray(pcm[:, start : start + _CHUNK])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        frame.time_base = Fraction(1, AUDIO_RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def count() -> int:
    return FPS * SECONDS


def texture(seed: int = 0, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A still, detailed picture: smoothed noise in mid greys (nothing clipped)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(40, 215, size=(height // 2, width // 2, 3))
    return np.repeat(np.repeat(noise, 2, axis=0), 2, axis=1).astype(np.uint8)


def static_frames() -> list[np.ndarray]:
    still = texture()
    return [still] * count()


def strobe_frames() -> list[np.ndarray]:
    black = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    white = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    return [white if i % 2 else black for i in range(count())]


def black_frames() -> list[np.ndarray]:
    return [np.zeros((HEIGHT, WIDTH, 3), np.uint8)] * count()


SQUARE = 20
SQUARE_PX_PER_FRAME = 2


def moving_square_frames() -> list[np.ndarray]:
    """A textured square sliding right by 2 px a frame over a dark grey background."""
    patch = texture(seed=1, height=SQUARE, width=SQUARE)
    frames = []
    for i in range(count()):
        frame = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
        left = 10 + SQUARE_PX_PER_FRAME * i
        top = (HEIGHT - SQUARE) // 2
        frame[top : top + SQUARE, left : left + SQUARE] = patch
        frames.append(frame)
    return frames
