"""One video's figures: one decode pass that samples frames, meters loudness and checks
conformance.

The pass decodes every video frame (inter-coded streams need that) but analyses only a
sample: every ``step``-th frame (``step = round(fps / 8)``, so about `SAMPLE_FPS` per second)
and the frame right after it. Sampled frames are scaled (swscale, area filter) to luma at a
common short side of `ANALYSIS_SHORT_SIDE` pixels (never up), so routes with different
resolutions are measured at the same scale; motion uses a smaller copy (`MOTION_SHORT_SIDE`).
`figures` computes what each sample gives. Audio is read whole and metered by FFmpeg's
``ebur128`` filter (EBU R128 integrated loudness) through PyAV, so no extra package is needed.
``clip_score`` (prompt alignment, `quality.clip`) uses frames of the same pass.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from abebeats_lab._types import VideoRequest
from abebeats_lab.quality import clip as _clip
from abebeats_lab.quality.catalogue import METRICS, Value
from abebeats_lab.quality.figures import (
    ANALYSIS_SHORT_SIDE,
    MOTION_SHORT_SIDE,
    SAMPLE_FPS,
    Clock,
    Figures,
    frame_figures,
    pair_figures,
)

__all__ = ["measure", "profile"]

_DEFAULT_FPS = 24.0


def measure(
    path: Path | str, request: VideoRequest | None = None, *, clip: Path | None = None
) -> dict[str, Value]:
    """Every metric of `METRICS` for one video file (``conforms`` needs the ``request`` with
    its duration, ratio and resolution).

    ``clip_score`` needs ``clip``, the folder of CLIP weights (`quality.clip.prepare`), and
    the request's prompt; without them it is None. Raises
    `abebeats_lab.errors.DownloadError` for a file PyAV cannot read as a video.
    """
    return profile(path, request, clip=clip)[0]


def profile(
    path: Path | str, request: VideoRequest | None = None, *, clip: Path | None = None
) -> tuple[dict[str, Value], dict[str, float]]:
    """`measure`, plus the CPU seconds each step took (``decode`` is the shared part)."""
    import av

    from abebeats_lab.errors import DownloadError

    clock = Clock()
    path = Path(path)
    prompt = request.prompt if request is not None else ""
    model = _clip.load(str(clip)) if clip is not None and prompt else None
    clock.lap("clip")  # loading the towers (once per process)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DownloadError(f"{path.name}: no video stream")
            values = _read(container, clock, model, prompt)
    except av.error.FFmpegError as exc:
        raise DownloadError(f"{path.name}: not a playable video ({exc})") from exc
    values["conforms"] = _conforms(path, request)
    clock.lap("conformance")
    return {name: values.get(name) for name in METRICS}, clock.spent


def _read(
    container: Any, clock: Clock, model: _clip.ClipModel | None, prompt: str
) -> dict[str, Value]:
    video = container.streams.video[0]
    # One thread: a process pool already spreads clips over the cores.
    video.codec_context.thread_count = 1
    rate = video.average_rate or video.guessed_rate
    figures = Figures(fps=float(rate) if rate else _DEFAULT_FPS)
    audio = container.streams.audio[0] if container.streams.audio else None
    meter = _LoudnessMeter(audio) if audio is not None else None
    streams = [video] if audio is None else [video, audio]
    sampler = (
        _clip.FrameSampler(model.preprocess, _frame_count(container, video, figures.fps))
        if model is not None
        else None
    )
    frames = _video_frames(figures, clock, sampler)
    next(frames)
    clock.lap("decode")
    for packet in container.demux(streams):
        if packet.stream.type == "audio":
            assert meter is not None
            meter.feed(packet.decode())
            clock.lap("loudness")
            continue
        for frame in packet.decode():
            frames.send(frame)
    values = figures.values()
    values["has_audio"] = audio is not None
    values["loudness_lufs"] = meter.integrated() if meter is not None else None
    clock.lap("loudness")
    values["clip_score"] = model.score(sampler.crops(), prompt) if model and sampler else None
    clock.lap("clip")
    return values


def _frame_count(container: Any, video: Any, fps: float) -> int:
    """Frames in the stream: the container's count, else duration × rate (0: unknown)."""
    if video.frames:
        return int(video.frames)
    if video.duration is not None and video.time_base is not None:
        return round(float(video.duration * video.time_base) * fps)
    microseconds = 1e6
    return round(container.duration / microseconds * fps) if container.duration else 0


def _video_frames(
    figures: Figures, clock: Clock, sampler: _clip.FrameSampler | None
) -> Generator[None, Any, None]:
    """A coroutine fed decoded frames: samples them and updates ``figures`` stage by stage."""
    step = max(1, round(figures.fps / SAMPLE_FPS))
    index = 0
    previous: tuple[int, np.ndarray, np.ndarray] | None = None
    sizes: tuple[tuple[int, int], tuple[int, int]] | None = None
    while True:
        frame = yield
        if sampler is not None:
            clock.lap("decode")
            sampler.offer(index, frame)
            clock.lap("clip")
        phase = index % step
        if step == 1 or phase <= 1:
            if sizes is None:
                sizes = (_scaled(frame, ANALYSIS_SHORT_SIDE), _scaled(frame, MOTION_SHORT_SIDE))
                figures.motion_short = min(sizes[1])
            luma = _luma(frame, sizes[0])
            small = _luma(frame, sizes[1])
            clock.lap("decode")
            if phase == 0:
                frame_figures(figures, luma, clock)
            if previous is not None and previous[0] == index - 1:
                pair_figures(figures, previous[1], luma, previous[2], small, clock)
            previous = (index, luma, small)
        else:
            clock.lap("decode")
        index += 1


def _scaled(frame: Any, short_side: int) -> tuple[int, int]:
    width, height = int(frame.width), int(frame.height)
    scale = min(1.0, short_side / max(1, min(width, height)))
    return max(2, round(width * scale)), max(2, round(height * scale))


def _luma(frame: Any, size: tuple[int, int]) -> np.ndarray:
    gray = frame.reformat(width=size[0], height=size[1], format="gray", interpolation="AREA")
    return np.asarray(gray.to_ndarray(), dtype=np.float32)


class _LoudnessMeter:
    """EBU R128 integrated loudness through FFmpeg's ``ebur128`` filter (gated, LUFS)."""

    _KEY = "lavfi.r128.I"

    def __init__(self, stream: Any) -> None:
        import av.filter

        self._graph = av.filter.Graph()
        source = self._graph.add_abuffer(template=stream)
        meter = self._graph.add("ebur128", metadata="1")
        sink = self._graph.add("abuffersink")
        source.link_to(meter)
        meter.link_to(sink)
        self._graph.configure()
        self._latest: float | None = None

    def feed(self, frames: Sequence[Any]) -> None:
        for frame in frames:
            self._graph.push(frame)
            self._drain()

    def integrated(self) -> float | None:
        self._graph.push(None)
        self._drain()
        return self._latest

    def _drain(self) -> None:
        import av

        while True:
            try:
                out = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            value = out.metadata.get(self._KEY)
            if value is not None:
                self._latest = float(value)


def _conforms(path: Path, request: VideoRequest | None) -> bool | None:
    if request is None or None in (request.duration_s, request.aspect_ratio, request.resolution):
        return None  # nothing asked to conform to (no request, or one with only a prompt)
    from abebeats_lab.media.conformance import conformance
    from abebeats_lab.media.probe import probe

    return all(conformance(probe(path), request))
