"""Assembly with PyAV alone (no system ffmpeg): conform clips, cut them on beats, mux the audio.

`assemble` takes shots (a clip and the output frames it fills), conforms every clip to one
resolution and `FPS` (scale and centre-crop, nearest-earlier frame for other rates, the last
frame held if a clip is short), and writes one H.264/AAC MP4 whose audio is the original
track re-encoded in full. `click_track` and `write_audio` make test audio in any format the
pipeline reads, so tests need no stored media.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from abebeats_lab.errors import ValidationError
from abebeats_lab.media.render import FPS
from abebeats_lab.musicvideo.beats import probe_audio

__all__ = [
    "FPS",
    "AssembledVideo",
    "Shot",
    "assemble",
    "click_track",
    "frame_index",
    "write_audio",
]

CLICK_RATE = 44_100
CLICK_S = 0.03
"""Each click rings for about this long."""
ACCENT_GAIN = 1.0
BEAT_GAIN = 0.6
DRONE_GAIN = 0.08
AAC_RATES = (
    96_000,
    88_200,
    64_000,
    48_000,
    44_100,
    32_000,
    24_000,
    22_050,
    16_000,
    12_000,
    11_025,
    8_000,
)
FALLBACK_AUDIO_RATE = 48_000
AUDIO_CHUNK = 1024
X264_PRESET = "veryfast"
X264_CRF = "20"
_AUDIO_FORMATS = {
    # suffix: (container format, codec, sample format)
    ".wav": ("wav", "pcm_s16le", "s16"),
    ".flac": ("flac", "flac", "s16"),
    ".mp3": ("mp3", "libmp3lame", "s16p"),
    ".m4a": ("ipod", "aac", "fltp"),
}
_INT16 = 32_767


@dataclass(frozen=True, slots=True)
class Shot:
    """One cut: ``clip`` fills output frames ``[start_frame, end_frame)`` from its own start."""

    clip: Path
    start_frame: int
    end_frame: int

    @property
    def frames(self) -> int:
        """Output frames this shot fills."""
        return self.end_frame - self.start_frame


@dataclass(frozen=True, slots=True)
class AssembledVideo:
    """What `assemble` wrote."""

    path: Path
    frames: int
    width: int
    height: int
    audio_samples: int
    audio_rate: int
    held_frames: tuple[int, ...]
    """Per shot, frames that repeat the clip's last frame because the clip was too short."""


def frame_index(seconds: float, fps: int = FPS) -> int:
    """The output frame a time falls on (nearest boundary), so a cut is within half a frame."""
    return round(seconds * fps)


# ---------------------------------------------------------------------------- test audio


def _click(
    freq: float, rate: int, noise: bool, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    t = np.arange(int(CLICK_S * rate)) / rate
    tone = rng.uniform(-1, 1, len(t)) if noise else np.sin(2 * np.pi * freq * t)
    return np.asarray(tone * np.exp(-t / (CLICK_S / 5)))


def click_track(
    bpm: float,
    duration_s: float,
    *,
    sample_rate: int = CLICK_RATE,
    offset_s: float = 0.0,
    beats_per_bar: int = 4,
    changes: Sequence[float] = (),
) -> npt.NDArray[np.float32]:
    """A metronome: a click every beat from ``offset_s``, the first of each bar louder.

    At each time in ``changes`` the sound switches between two timbres (pitched clicks over
    a low drone, then noise clicks over a bright drone), giving sections to detect.
    """
    rng = np.random.default_rng(int(bpm * 1000))
    total = round(duration_s * sample_rate)
    t = np.arange(total) / sample_rate
    style = np.searchsorted(np.asarray(sorted(changes), dtype=np.float64), t, side="right") % 2
    out = DRONE_GAIN * np.where(
        style == 0, np.sin(2 * np.pi * 110 * t), np.sign(np.sin(2 * np.pi * 880 * t))
    )
    clicks = {
        (s, a): _click(1500.0 if a else 1000.0, sample_rate, s == 1, rng)
        for s in (0, 1)
        for a in (0, 1)
    }
    beat = 0
    while (when := offset_s + beat * 60 / bpm) < duration_s:
        start = round(when * sample_rate)
        accent = int(beat % beats_per_bar == 0)
        sound = clicks[(int(style[start]), accent)] * (ACCENT_GAIN if accent else BEAT_GAIN)
        end = min(total, start + len(sound))
        out[start:end] += sound[: end - start]
        beat += 1
    return np.clip(out, -1, 1).astype(np.float32)


def write_audio(
    path: Path | str, samples: npt.NDArray[np.floating[Any]], sample_rate: int = CLICK_RATE
) -> Path:
    """Encode mono or (channels, samples) audio to wav, flac, mp3 or m4a, chosen by suffix."""
    import av

    path = Path(path)
    if path.suffix.lower() not in _AUDIO_FORMATS:
        raise ValidationError("path", path.name, "a .wav, .flac, .mp3 or .m4a file name")
    fmt, codec, sample_format = _AUDIO_FORMATS[path.suffix.lower()]
    pcm = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    layout = "mono" if pcm.shape[0] == 1 else "stereo"
    options = {"movie_timescale": str(sample_rate)} if fmt == "ipod" else {}
    with av.open(str(path), "w", format=fmt, options=options) as container:
        stream: Any = container.add_stream(codec, rate=sample_rate, layout=layout)
        for start in range(0, pcm.shape[1], AUDIO_CHUNK):
            chunk = pcm[:, start : start + AUDIO_CHUNK]
            frame = _audio_frame(chunk, sample_format, layout, sample_rate, start)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _audio_frame(
    chunk: npt.NDArray[np.float32], sample_format: str, layout: str, rate: int, pts: int
) -> Any:
    import av

    if sample_format.startswith("s16"):
        data: npt.NDArray[Any] = np.round(chunk * _INT16).astype(np.int16)
        if sample_format == "s16":  # packed: channels interleaved in one row
            data = data.T.reshape(1, -1)
    else:
        data = chunk
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data), format=sample_format, layout=layout
    )
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame


# ---------------------------------------------------------------------------- assembly


def assemble(
    shots: Sequence[Shot], audio: Path | str, out: Path | str, *, width: int, height: int
) -> AssembledVideo:
    """Write ``shots`` back to back over the whole of ``audio`` as one H.264/AAC MP4.

    The shots must tile the output from frame 0 without gaps. The file is written beside
    ``out`` under a temporary name and renamed, so a failure leaves nothing half-written.
    """
    import av

    _check_tiling(shots, width, height)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    rate, layout, samples = _audio_plan(Path(audio))
    options = {"movie_timescale": str(rate), "movflags": "+faststart"}
    try:
        with av.open(str(tmp), "w", format="mp4", options=options) as container:
            video = _video_stream(container, width, height)
            feed = _AudioFeed(Path(audio), container, rate, layout, samples)
            held = []
            for shot in shots:
                held.append(_write_shot(container, video, shot, width, height))
                feed.until(shot.end_frame / FPS)
            for packet in video.encode(None):
                container.mux(packet)
            feed.finish()
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    total = shots[-1].end_frame
    return AssembledVideo(out, total, width, height, samples, rate, tuple(held))


def _check_tiling(shots: Sequence[Shot], width: int, height: int) -> None:
    if width % 2 or height % 2 or width <= 0 or height <= 0:
        raise ValidationError("size", f"{width}x{height}", "positive even width and height (H.264)")
    if not shots:
        raise ValidationError("shots", [], "at least one shot")
    expected = 0
    for index, shot in enumerate(shots):
        if shot.start_frame != expected or shot.frames <= 0:
            raise ValidationError(
                f"shots[{index}]", shot, f"a non-empty shot starting at frame {expected}"
            )
        expected = shot.end_frame


def _audio_plan(audio: Path) -> tuple[int, str, int]:
    """Output rate, layout and exact sample count for the re-encoded track."""
    info = probe_audio(audio)
    rate = info.sample_rate if info.sample_rate in AAC_RATES else FALLBACK_AUDIO_RATE
    layout = "mono" if info.channels == 1 else "stereo"
    return rate, layout, round(info.duration_s * rate)


def _video_stream(container: Any, width: int, height: int) -> Any:
    video = container.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.options = {"preset": X264_PRESET, "crf": X264_CRF}
    return video


def _write_shot(container: Any, video: Any, shot: Shot, width: int, height: int) -> int:
    """Encode one shot's frames; returns how many repeat the clip's last frame."""
    held = 0
    for offset, (frame, beyond) in enumerate(_clip_frames(shot.clip, shot.frames)):
        conformed = _conform(frame, width, height)
        conformed.pts, conformed.time_base = shot.start_frame + offset, Fraction(1, FPS)
        for packet in video.encode(conformed):
            container.mux(packet)
        held += beyond
    return held


def _clip_frames(clip: Path, count: int) -> Iterator[tuple[Any, bool]]:
    """``count`` frames at `FPS` from the clip's start: the latest source frame shown at each
    output time, and whether that time is already past the clip's end."""
    import av

    try:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            step = 1 / float(stream.average_rate or stream.guessed_rate or FPS)
            source = container.decode(stream)
            current = next(source)
            upcoming = next(source, None)
            start = current.time or 0.0
            for index in range(count):
                now = start + index / FPS
                while upcoming is not None and (upcoming.time or 0.0) <= now + _EPS_S:
                    current, upcoming = upcoming, next(source, None)
                beyond = upcoming is None and now >= (current.time or 0.0) + step - _EPS_S
                yield current, beyond
    except (av.error.FFmpegError, StopIteration, IndexError) as exc:
        raise ValidationError(
            "clip", clip.name, "a playable video with at least one frame"
        ) from exc


_EPS_S = 1e-6
_RATIO_TOLERANCE = 0.01


def _conform(frame: Any, width: int, height: int) -> Any:
    """Scale to the output size; centre-crop first when the aspect ratio differs."""
    import av

    if abs(frame.width / frame.height - width / height) > _RATIO_TOLERANCE * width / height:
        pixels = frame.to_ndarray(format="rgb24")
        rows, cols = pixels.shape[:2]
        keep_cols = min(cols, round(rows * width / height))
        keep_rows = min(rows, round(cols * height / width))
        top, left = (rows - keep_rows) // 2, (cols - keep_cols) // 2
        frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(pixels[top : top + keep_rows, left : left + keep_cols]),
            format="rgb24",
        )
    return frame.reformat(width=width, height=height, format="yuv420p", interpolation="BILINEAR")


class _AudioFeed:
    """Re-encodes the original track to AAC, interleaved with the video as it is written."""

    def __init__(self, source: Path, container: Any, rate: int, layout: str, samples: int) -> None:
        self.container = container
        self.stream = container.add_stream("aac", rate=rate, layout=layout)
        self.rate, self.layout, self.total = rate, layout, samples
        self.channels = 1 if layout == "mono" else 2
        self.chunks = _pcm_chunks(source, rate, layout)
        self.buffer = np.zeros((self.channels, 0), np.float32)
        self.written = 0

    def until(self, seconds: float) -> None:
        """Encode everything up to ``seconds`` (capped at the track's end)."""
        target = min(self.total, round(seconds * self.rate))
        while self.written < target:
            size = min(AUDIO_CHUNK, target - self.written)
            self._encode(self._take(size))

    def finish(self) -> None:
        """Encode the rest of the track and drain the encoder."""
        self.until(self.total / self.rate)
        for packet in self.stream.encode(None):
            self.container.mux(packet)

    def _take(self, size: int) -> npt.NDArray[np.float32]:
        while self.buffer.shape[1] < size:
            chunk = next(self.chunks, None)
            if chunk is None:  # a decoder that came up short: pad with silence
                chunk = np.zeros((self.channels, size), np.float32)
            self.buffer = np.concatenate([self.buffer, chunk], axis=1)
        taken, self.buffer = self.buffer[:, :size], self.buffer[:, size:]
        return taken

    def _encode(self, pcm: npt.NDArray[np.float32]) -> None:
        frame = _audio_frame(pcm, "fltp", self.layout, self.rate, self.written)
        self.written += pcm.shape[1]
        for packet in self.stream.encode(frame):
            self.container.mux(packet)


def _pcm_chunks(source: Path, rate: int, layout: str) -> Iterator[npt.NDArray[np.float32]]:
    """Planar float PCM from the first audio stream, resampled to ``rate`` and ``layout``."""
    import av

    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    with av.open(str(source)) as container:
        for frame in container.decode(container.streams.audio[0]):
            for converted in resampler.resample(frame):
                yield np.asarray(converted.to_ndarray(), dtype=np.float32)
        for converted in resampler.resample(None):
            yield np.asarray(converted.to_ndarray(), dtype=np.float32)
