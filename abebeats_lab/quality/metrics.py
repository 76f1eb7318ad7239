"""Weight-free automatic metrics from decoded frames: PyAV and numpy only, no model weights.

One pass over a file decodes every video frame (inter-coded streams need that) but analyses
only a sample: every ``step``-th frame (``step = round(fps / 8)``, so about 8 per second) and
the frame right after it. Sampled frames are scaled (swscale, area filter) to luma at a common
short side of `ANALYSIS_SHORT_SIDE` pixels (never up), so routes with different resolutions
are measured at the same scale; motion uses a smaller copy (`MOTION_SHORT_SIDE`). Audio is
read whole and metered by FFmpeg's ``ebur128`` filter (EBU R128 integrated loudness) through
PyAV, so no extra package is needed.

`measure(path)` gives one video's figures; `score(run_dir)` gives them for every succeeded
row of a run, through a `concurrent.futures.Executor` (a process pool by default), and keeps
them in ``quality.sqlite`` in the run folder (not in ``run.sqlite``), keyed by run id and job
key. `METRICS` describes each figure: definition, reference, direction, unit and its measured
CPU cost per second of 720p video (``benchmarks/metrics.py``).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from abebeats_lab._types import JobState, VideoRequest

if TYPE_CHECKING:
    import pandas as pd

    from abebeats_lab.store import JobRow

__all__ = [
    "ANALYSIS_SHORT_SIDE",
    "METRICS",
    "MOTION_SHORT_SIDE",
    "QUALITY_DB",
    "SAMPLE_FPS",
    "STAGE_CPU_S_PER_VIDEO_S",
    "Metric",
    "Value",
    "load_scores",
    "measure",
    "profile",
    "score",
    "score_async",
]

Value = float | bool | None
Direction = Literal["higher", "lower", "neither"]

SAMPLE_FPS = 8
"""Frames analysed per second of video (VBench samples dynamic degree at 8 fps too)."""
ANALYSIS_SHORT_SIDE = 360
"""Short side, in pixels, of the luma every metric but motion is computed on."""
MOTION_SHORT_SIDE = 144
"""Short side of the luma block matching runs on (its coarse level is half of it)."""
QUALITY_DB = "quality.sqlite"
"""The run folder's metrics store; ``run.sqlite`` is left to the runner."""

_LEVELS = 255.0
_BLACK_PIXEL_LEVEL = 0.10 * _LEVELS
_BLACK_PICTURE_FRACTION = 0.98
"""A frame is black when 98 % of its pixels are at most 10 % luma (FFmpeg blackdetect)."""
_FROZEN_BLOCK = 16
_FROZEN_BLOCK_MAD = 1.0
"""A pair is frozen when no 16×16 block changed by more than one luma level on average."""
_CLIP_LOW, _CLIP_HIGH = 2, 253
_MOTION_BLOCK = 16
_COARSE_RADIUS = 4
"""Coarse search ±4 px at half size: displacements up to ±9 px at `MOTION_SHORT_SIDE`."""
_ZERO_BIAS = 0.02
_ZERO_BIAS_LEVEL = 0.25
"""Keep a block still unless a shift beats standing still by 2 % plus 1/4 level a pixel."""
_TEXTURE_MIN_STD = 2.0
"""Blocks flatter than this (luma levels) carry no usable motion and count as still."""
_TOP_FRACTION = 0.05
_DYNAMIC_SHORT_SIDES_PER_S = 6.0 / 256.0 * SAMPLE_FPS
"""VBench: a frame pair moves when its top-5 % flow exceeds 6 px at a 256 px short side
between frames 1/8 s apart, i.e. 0.1875 short sides per second."""
_DEFAULT_FPS = 24.0
_STENCIL = 3
"""The Laplacian needs a 3×3 neighbourhood."""
_MIN_BLOCK = 2


@dataclass(frozen=True, slots=True)
class Metric:
    """What one figure means: its definition and reference, which way is better, its cost."""

    name: str
    version: int
    definition: str
    reference: str
    direction: Direction
    unit: str
    stage: str
    """The step of `measure` that computes it (metrics of one step share its cost)."""

    @property
    def cpu_s_per_video_s(self) -> float:
        """Measured CPU seconds on one core per second of 720p 24 fps video for this metric's
        step, not counting the shared ``decode`` step (see `STAGE_CPU_S_PER_VIDEO_S`)."""
        return STAGE_CPU_S_PER_VIDEO_S[self.stage]


STAGE_CPU_S_PER_VIDEO_S: dict[str, float] = {
    "decode": 0.25979,
    "flicker": 0.00359,
    "motion": 0.04043,
    "frozen": 0.00255,
    "black": 0.00209,
    "sharpness": 0.00699,
    "exposure": 0.00386,
    "loudness": 0.01202,
    "conformance": 2e-05,
}
"""CPU seconds per second of video, per step of `measure`, as ``benchmarks/metrics.py``
measured them on its harder clip (720p 24 fps at 17 Mbit/s, x264 preset fast, AAC stereo;
median of 5 runs on a shared 2-core x86-64): 0.3309 s in all, against
0.0934 s for the ``local`` route's 0.8 Mbit/s render. ``decode`` (demux, decode every frame,
scale the sampled ones) is shared by all video metrics and grows with the bitrate; the rest
hardly moves. ``has_audio`` is listed with the audio step that reads the stream."""


def _metric(*args: Any) -> tuple[str, Metric]:
    record = Metric(*args)
    return record.name, record


METRICS: dict[str, Metric] = dict(
    [
        _metric(
            "flicker",
            1,
            "mean absolute luma difference between consecutive frames, 0–255 levels",
            "VBench temporal_flickering (Huang et al., CVPR 2024), which reports "
            "(255 − this) / 255 and applies it to static scenes only",
            "lower",
            "levels",
            "flicker",
        ),
        _metric(
            "motion",
            1,
            "mean over frame pairs of the largest 5 % block-matching displacements, in "
            "short sides of the frame per second",
            "VBench dynamic_degree's top-5 % flow magnitude, with block matching (Jain & "
            "Jain 1981) in place of RAFT optical flow",
            "neither",
            "short sides/s",
            "motion",
        ),
        _metric(
            "dynamic_degree",
            1,
            "fraction of frame pairs whose top-5 % motion exceeds 0.1875 short sides/s",
            "VBench dynamic_degree threshold (6 px at 256 px, 8 fps); VBench calls a video "
            "dynamic when this is at least 0.25",
            "neither",
            "fraction",
            "motion",
        ),
        _metric(
            "frozen_fraction",
            1,
            "fraction of consecutive frame pairs in which no 16×16 block changed by more "
            "than one luma level",
            "after FFmpeg freezedetect, per frame pair instead of per 2 s span",
            "lower",
            "fraction",
            "frozen",
        ),
        _metric(
            "black_fraction",
            1,
            "fraction of sampled frames with 98 % of pixels at most 10 % luma",
            "FFmpeg blackdetect defaults (pix_th 0.10, picture_black_ratio_th 0.98)",
            "lower",
            "fraction",
            "black",
        ),
        _metric(
            "sharpness",
            1,
            "median over sampled frames of the variance of the 4-neighbour Laplacian of "
            "luma at a 360 px short side",
            "variance of Laplacian (Pech-Pacheco et al., ICPR 2000)",
            "higher",
            "levels²",
            "sharpness",
        ),
        _metric(
            "mean_luma",
            1,
            "mean luma of sampled frames, 0 (black) to 1 (white)",
            "full-range luma as swscale converts it",
            "neither",
            "fraction",
            "exposure",
        ),
        _metric(
            "rms_contrast",
            1,
            "mean over sampled frames of the standard deviation of luma, 0–1",
            "RMS contrast (Peli, JOSA A 1990)",
            "neither",
            "fraction",
            "exposure",
        ),
        _metric(
            "clipped_fraction",
            1,
            "fraction of sampled pixels at luma ≤ 2 or ≥ 253 of 255 (crushed or blown)",
            "highlight/shadow clipping as in a waveform monitor",
            "lower",
            "fraction",
            "exposure",
        ),
        _metric(
            "has_audio",
            1,
            "the file has an audio stream",
            "container streams as PyAV reads them",
            "neither",
            "bool",
            "loudness",
        ),
        _metric(
            "loudness_lufs",
            1,
            "integrated loudness of the whole audio track (gated; −70 for silence); None "
            "without audio",
            "EBU R128 / ITU-R BS.1770-4, metered by FFmpeg's ebur128 filter",
            "neither",
            "LUFS",
            "loudness",
        ),
        _metric(
            "conforms",
            1,
            "duration, aspect ratio and resolution all match the request; None without one",
            "the run's own check (comparison.conformance), the same every run row gets",
            "higher",
            "bool",
            "conformance",
        ),
    ]
)


class _Clock:
    """CPU seconds (this process, all threads) spent per stage, lap by lap."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._last = time.process_time()

    def lap(self, stage: str) -> None:
        now = time.process_time()
        self.spent[stage] = self.spent.get(stage, 0.0) + now - self._last
        self._last = now


@dataclass
class _Figures:
    """Per-frame and per-pair figures, gathered while decoding; reduced at the end."""

    fps: float
    motion_short: int = 0
    flicker: list[float] = field(default_factory=list)
    frozen: list[bool] = field(default_factory=list)
    motion: list[float] = field(default_factory=list)
    black: list[bool] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    luma: list[float] = field(default_factory=list)
    contrast: list[float] = field(default_factory=list)
    clipped: list[float] = field(default_factory=list)

    def values(self) -> dict[str, Value]:
        per_s = self.fps / self.motion_short if self.motion_short else 0.0
        moves = [m * per_s for m in self.motion]
        return {
            "flicker": _mean(self.flicker),
            "motion": _mean(moves),
            "dynamic_degree": _mean([m > _DYNAMIC_SHORT_SIDES_PER_S for m in moves]),
            "frozen_fraction": _mean(self.frozen),
            "black_fraction": _mean(self.black),
            "sharpness": float(np.median(self.sharpness)) if self.sharpness else None,
            "mean_luma": _mean(self.luma),
            "rms_contrast": _mean(self.contrast),
            "clipped_fraction": _mean(self.clipped),
        }


def _mean(values: Sequence[float | bool]) -> float | None:
    return float(np.mean(values)) if values else None


def measure(path: Path | str, request: VideoRequest | None = None) -> dict[str, Value]:
    """Every metric of `METRICS` for one video file (``conforms`` needs the ``request``).

    Raises `abebeats_lab.errors.DownloadError` for a file PyAV cannot read as a video.
    """
    return profile(path, request)[0]


def profile(
    path: Path | str, request: VideoRequest | None = None
) -> tuple[dict[str, Value], dict[str, float]]:
    """`measure`, plus the CPU seconds each step took (``decode`` is the shared part)."""
    import av

    from abebeats_lab.errors import DownloadError

    clock = _Clock()
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DownloadError(f"{path.name}: no video stream")
            values = _read(container, clock)
    except av.error.FFmpegError as exc:
        raise DownloadError(f"{path.name}: not a playable video ({exc})") from exc
    values["conforms"] = _conforms(path, request)
    clock.lap("conformance")
    return {name: values.get(name) for name in METRICS}, clock.spent


def _read(container: Any, clock: _Clock) -> dict[str, Value]:
    video = container.streams.video[0]
    # One thread: a process pool already spreads clips over the cores.
    video.codec_context.thread_count = 1
    rate = video.average_rate or video.guessed_rate
    figures = _Figures(fps=float(rate) if rate else _DEFAULT_FPS)
    audio = container.streams.audio[0] if container.streams.audio else None
    meter = _LoudnessMeter(audio) if audio is not None else None
    streams = [video] if audio is None else [video, audio]
    frames = _video_frames(figures, clock)
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
    return values


def _video_frames(figures: _Figures, clock: _Clock) -> Generator[None, Any, None]:
    """A coroutine fed decoded frames: samples them and updates ``figures`` stage by stage."""
    step = max(1, round(figures.fps / SAMPLE_FPS))
    index = 0
    previous: tuple[int, np.ndarray, np.ndarray] | None = None
    sizes: tuple[tuple[int, int], tuple[int, int]] | None = None
    while True:
        frame = yield
        phase = index % step
        if step == 1 or phase <= 1:
            if sizes is None:
                sizes = (_scaled(frame, ANALYSIS_SHORT_SIDE), _scaled(frame, MOTION_SHORT_SIDE))
                figures.motion_short = min(sizes[1])
            luma = _luma(frame, sizes[0])
            small = _luma(frame, sizes[1])
            clock.lap("decode")
            if phase == 0:
                _frame_figures(figures, luma, clock)
            if previous is not None and previous[0] == index - 1:
                _pair_figures(figures, previous[1], luma, previous[2], small, clock)
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


def _frame_figures(figures: _Figures, luma: np.ndarray, clock: _Clock) -> None:
    figures.black.append(bool(np.mean(luma <= _BLACK_PIXEL_LEVEL) >= _BLACK_PICTURE_FRACTION))
    clock.lap("black")
    figures.sharpness.append(_laplacian_variance(luma))
    clock.lap("sharpness")
    figures.luma.append(float(luma.mean()) / _LEVELS)
    figures.contrast.append(float(luma.std()) / _LEVELS)
    figures.clipped.append(float(np.mean((luma <= _CLIP_LOW) | (luma >= _CLIP_HIGH))))
    clock.lap("exposure")


def _pair_figures(
    figures: _Figures,
    before: np.ndarray,
    after: np.ndarray,
    small_before: np.ndarray,
    small_after: np.ndarray,
    clock: _Clock,
) -> None:
    difference = np.abs(after - before)
    figures.flicker.append(float(difference.mean()))
    clock.lap("flicker")
    figures.frozen.append(_largest_block_mean(difference, _FROZEN_BLOCK) <= _FROZEN_BLOCK_MAD)
    clock.lap("frozen")
    figures.motion.append(block_motion(small_before, small_after))
    clock.lap("motion")


def _laplacian_variance(luma: np.ndarray) -> float:
    if min(luma.shape) < _STENCIL:
        return 0.0
    centre = luma[1:-1, 1:-1]
    laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * centre
    return float(laplacian.var())


def _blocks(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` cut into whole ``size``×``size`` blocks: shape (rows, cols, size, size)."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    cropped = image[: rows * size, : cols * size]
    return cropped.reshape(rows, size, cols, size).transpose(0, 2, 1, 3)


def _largest_block_mean(image: np.ndarray, size: int) -> float:
    blocks = _blocks(image, min(size, *image.shape))
    return float(blocks.mean(axis=(2, 3)).max()) if blocks.size else 0.0


def block_motion(before: np.ndarray, after: np.ndarray) -> float:
    """Mean of the largest 5 % block displacements from ``before`` to ``after``, in pixels.

    Two-level block matching (sum of absolute differences): a full ±4 px search at half
    size, refined ±1 px at full size with a parabolic sub-pixel fit. A shift must beat
    standing still by a margin, and textureless blocks count as still, so noise, fades and
    strobes read as no motion.
    """
    block = min(_MOTION_BLOCK, *before.shape) // 2 * 2
    if block < _MIN_BLOCK:
        return 0.0
    coarse = _full_search(_half(before), _half(after), block // 2, _COARSE_RADIUS)
    dy, dx = _refine(before, after, block, 2 * coarse)
    textured = _blocks(after, block).std(axis=(2, 3)) >= _TEXTURE_MIN_STD
    magnitude = np.hypot(dy, dx) * textured
    flat = np.sort(magnitude.ravel())[::-1]
    count = max(1, math.ceil(_TOP_FRACTION * flat.size))
    return float(flat[:count].mean())


def _half(image: np.ndarray) -> np.ndarray:
    rows, cols = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    cropped = image[:rows, :cols]
    halved: np.ndarray = cropped.reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))
    return halved


def _full_search(before: np.ndarray, after: np.ndarray, block: int, radius: int) -> np.ndarray:
    """Per block of ``after``: the integer (dy, dx) such that after[p] ≈ before[p - d]."""
    height, width = after.shape
    padded = np.pad(before, radius, mode="edge")
    target = _blocks(after, block)
    shifts = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    costs = np.stack(
        [
            np.abs(
                target
                - _blocks(
                    padded[radius - dy : radius - dy + height, radius - dx : radius - dx + width],
                    block,
                )
            ).sum(axis=(2, 3))
            for dy, dx in shifts
        ]
    )
    best = costs.argmin(axis=0)
    still = shifts.index((0, 0))
    best = np.where(costs[still] <= _still_margin(costs.min(axis=0), block), still, best)
    vectors = np.asarray(shifts, dtype=np.int64)[best]
    return np.moveaxis(vectors, -1, 0)  # (2, rows, cols)


def _refine(
    before: np.ndarray, after: np.ndarray, block: int, guess: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """±1 px around each block's ``guess`` at full size, then a sub-pixel parabola per axis."""
    target = _blocks(after, block)
    rows, cols = target.shape[:2]
    guess = guess[:, :rows, :cols]
    pad = int(np.abs(guess).max()) + 1
    padded = np.pad(before, pad, mode="edge")
    offsets = np.arange(block)
    top = np.arange(rows)[:, None, None, None] * block + offsets[None, None, :, None] + pad
    left = np.arange(cols)[None, :, None, None] * block + offsets[None, None, None, :] + pad
    costs = np.empty((3, 3, rows, cols), dtype=np.float32)
    for i, oy in enumerate((-1, 0, 1)):
        for j, ox in enumerate((-1, 0, 1)):
            dy = (guess[0] + oy)[:, :, None, None]
            dx = (guess[1] + ox)[:, :, None, None]
            costs[i, j] = np.abs(target - padded[top - dy, left - dx]).sum(axis=(2, 3))
    flat = costs.reshape(9, rows, cols)
    best = flat.argmin(axis=0)
    by, bx = best // 3, best % 3
    ry, rx = np.indices((rows, cols))
    dy = guess[0] + by - 1 + _parabola(costs, by, bx, ry, rx, axis=0)
    dx = guess[1] + bx - 1 + _parabola(costs, by, bx, ry, rx, axis=1)
    # Standing still wins ties here too, so a still block gets no sub-pixel jitter.
    still_cost = np.abs(target - _blocks(before, block)).sum(axis=(2, 3))
    still = still_cost <= _still_margin(flat.min(axis=0), block)
    return np.where(still, 0.0, dy), np.where(still, 0.0, dx)


def _still_margin(best: np.ndarray, block: int) -> np.ndarray:
    """The cost below which standing still is chosen over the best shift."""
    return best * (1 + _ZERO_BIAS) + _ZERO_BIAS_LEVEL * block * block


def _parabola(
    costs: np.ndarray, by: np.ndarray, bx: np.ndarray, ry: np.ndarray, rx: np.ndarray, axis: int
) -> np.ndarray:
    """Sub-pixel offset of a cost minimum along one axis (0 where it sits on the window edge)."""
    centre = by if axis == 0 else bx
    inner = centre == 1
    if axis == 0:
        low, mid, high = costs[0, bx, ry, rx], costs[1, bx, ry, rx], costs[2, bx, ry, rx]
    else:
        low, mid, high = costs[by, 0, ry, rx], costs[by, 1, ry, rx], costs[by, 2, ry, rx]
    curve = low - 2 * mid + high
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(inner & (curve > 0), (low - high) / (2 * curve), 0.0)
    return np.clip(offset, -0.5, 0.5)


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
    if request is None:
        return None
    from abebeats_lab.media.download import probe
    from abebeats_lab.views.comparison import conformance

    return all(conformance(probe(path), request))


# -- a run ---------------------------------------------------------------------------------

_KEY_COLUMNS = ("run_id", "prompt_index", "route", "repeat")


def score(
    run_dir: Path | str,
    *,
    run_id: str | None = None,
    executor: Executor | None = None,
    refresh: bool = False,
) -> pd.DataFrame:
    """`measure` every succeeded row of a run (default: the latest), store and return them.

    Clips go through ``executor`` (yours is used and left open; a Dask
    ``Client().get_executor()`` works too). Without one, several clips use a process pool
    of ``os.cpu_count()`` workers and a single clip runs in this process. Figures already
    in ``quality.sqlite`` for the same file (hash) and metric versions are reused unless
    ``refresh``. A clip that cannot be read gets an ``error`` and no figures. Blocks until
    done; on an event loop use `score_async`.
    """
    plan = _Plan(Path(run_dir), run_id, refresh)
    pool, own = _pool(executor, len(plan.jobs))
    try:
        if pool is None:
            results = [_measure_job(*job) for job in plan.jobs]
        else:
            results = [f.result() for f in [pool.submit(_measure_job, *j) for j in plan.jobs]]
    finally:
        if own and pool is not None:
            pool.shutdown(wait=True)
    return plan.finish(results)


async def score_async(
    run_dir: Path | str,
    *,
    run_id: str | None = None,
    executor: Executor | None = None,
    refresh: bool = False,
) -> pd.DataFrame:
    """`score` for code on an event loop: clips run in the executor (or a thread), the loop
    only awaits them, so the next job of a run is never delayed."""
    plan = _Plan(Path(run_dir), run_id, refresh)
    pool, own = _pool(executor, len(plan.jobs))
    try:
        if pool is None:
            results = [await asyncio.to_thread(_measure_job, *job) for job in plan.jobs]
        else:
            futures: list[Future[dict[str, Any]]] = [
                pool.submit(_measure_job, *job) for job in plan.jobs
            ]
            results = list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
    finally:
        if own and pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True)
    return plan.finish(results)


class _Plan:
    """Which rows of a run to measure (the rest are stored and current), and their storage."""

    def __init__(self, directory: Path, run_id: str | None, refresh: bool) -> None:
        self.directory = directory
        self.run_id, self.rows = _succeeded_rows(directory, run_id)
        with _MetricsStore(directory) as store:
            stored = {} if refresh else store.read(self.run_id)
        self.todo = [r for r in self.rows if not _current(stored.get(r.key), r.sha256)]
        self.jobs = [(str(directory / str(r.output_path)), dict(r.settings)) for r in self.todo]

    def finish(self, results: Sequence[dict[str, Any]]) -> pd.DataFrame:
        with _MetricsStore(self.directory) as store:
            store.write(self.run_id, list(zip(self.todo, results, strict=True)))
            return _frame(self.rows, store.read(self.run_id))


def _pool(executor: Executor | None, clips: int) -> tuple[Executor | None, bool]:
    """The executor to use, and whether it is ours to shut down (None: in this process)."""
    if executor is not None or clips <= 1:
        return executor, False
    # spawn: a fork of a threaded process (an event loop, an emulator) can deadlock.
    pool = ProcessPoolExecutor(
        max_workers=min(clips, os.cpu_count() or 1),
        mp_context=multiprocessing.get_context("spawn"),
    )
    return pool, True


def _current(record: _Stored | None, sha256: str | None) -> bool:
    if record is None or record.sha256 != sha256:
        return False
    return all(record.versions.get(name) == m.version for name, m in METRICS.items())


def _measure_job(path: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """One clip in a worker: figures, or an ``error`` line (never an exception to pickle)."""
    from abebeats_lab.errors import LabError

    known = {f.name for f in fields(VideoRequest)}
    try:
        request = VideoRequest(**{k: v for k, v in settings.items() if k in known})
        return {"values": measure(path, request), "error": None}
    except (LabError, OSError, ValueError, TypeError) as exc:
        return {"values": {}, "error": f"{type(exc).__name__}: {exc}"}


def _frame(rows: Sequence[JobRow], stored: Mapping[tuple[int, str, int], _Stored]) -> pd.DataFrame:
    import pandas as pd

    records = []
    for row in rows:
        record = stored.get(row.key)
        values = record.values if record is not None else {}
        records.append(
            {
                "run_id": row.run_id,
                "prompt_index": row.prompt_index,
                "route": row.route,
                "repeat": row.repeat,
                "output_path": row.output_path,
                **{name: values.get(name) for name in METRICS},
                "error": record.error if record is not None else None,
            }
        )
    columns = [*_KEY_COLUMNS, "output_path", *METRICS, "error"]
    return pd.DataFrame(records, columns=columns)


def load_scores(run_dir: Path | str, run_id: str | None = None) -> pd.DataFrame:
    """The stored figures of a run (default: the latest) without measuring anything."""
    directory = Path(run_dir)
    found_id, rows = _succeeded_rows(directory, run_id)
    with _MetricsStore(directory) as store:
        return _frame(rows, store.read(found_id))


def _succeeded_rows(directory: Path, run_id: str | None) -> tuple[str, list[JobRow]]:
    """The run's id and its rows with a verified output, read from the run store.

    Read through `RunStore` rather than ``runner.load_run``: quality sits below run/ in
    DESIGN.md's layers.
    """
    from abebeats_lab.errors import LabError
    from abebeats_lab.store import DB_NAME, RunStore

    if not (directory / DB_NAME).is_file():
        raise LabError(f"no run store in {directory} (expected {DB_NAME})")
    with RunStore(directory) as store:
        runs = {info.run_id: info for info in store.runs()}
        info = store.latest_run() if run_id is None else runs.get(run_id)
        if info is None:
            raise LabError(f"no run {run_id or ''} in {directory}")
        rows = store.rows(info.run_id)
    return info.run_id, [r for r in rows if r.state is JobState.SUCCEEDED and r.output_path]


@dataclass(frozen=True, slots=True)
class _Stored:
    sha256: str | None
    values: dict[str, Value]
    versions: dict[str, int]
    error: str | None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (
  run_id TEXT NOT NULL, prompt_index INTEGER NOT NULL, route TEXT NOT NULL,
  repeat INTEGER NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, value REAL,
  sha256 TEXT, error TEXT, measured_at TEXT NOT NULL,
  PRIMARY KEY (run_id, prompt_index, route, repeat, name)
);
"""
_BUSY_TIMEOUT_S = 10.0
_ERROR_NAME = "error"
"""A clip that could not be measured is one row under this name, with its message."""


class _MetricsStore:
    """``quality.sqlite``: one row per (run, job key, metric), with the metric's version."""

    def __init__(self, run_dir: Path) -> None:
        self._db = sqlite3.connect(run_dir / QUALITY_DB, timeout=_BUSY_TIMEOUT_S)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._db:
            self._db.executescript(_SCHEMA)

    def __enter__(self) -> _MetricsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def write(self, run_id: str, results: Sequence[tuple[JobRow, dict[str, Any]]]) -> None:
        now = datetime.now(UTC).isoformat()
        with self._db:
            for row, result in results:
                key = (run_id, *row.key)
                self._db.execute(
                    "DELETE FROM metrics WHERE run_id=? AND prompt_index=? AND route=? "
                    "AND repeat=?",
                    key,
                )
                entries = [
                    (name, METRICS[name].version, _to_real(value), None)
                    for name, value in result["values"].items()
                ]
                if result["error"]:
                    entries = [(_ERROR_NAME, 0, None, result["error"])]
                self._db.executemany(
                    "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*key, *entry[:3], row.sha256, entry[3], now) for entry in entries],
                )

    def read(self, run_id: str) -> dict[tuple[int, str, int], _Stored]:
        found: dict[tuple[int, str, int], _Stored] = {}
        query = (
            "SELECT prompt_index, route, repeat, name, version, value, sha256, error "
            "FROM metrics WHERE run_id=?"
        )
        for index, route, repeat, name, version, value, sha256, error in self._db.execute(
            query, (run_id,)
        ):
            record = found.setdefault((index, route, repeat), _Stored(sha256, {}, {}, None))
            if name == _ERROR_NAME:
                found[(index, route, repeat)] = _Stored(sha256, {}, {}, error)
            elif name in METRICS:
                record.values[name] = _from_real(name, value)
                record.versions[name] = version
        return found


def _to_real(value: Value) -> float | None:
    return None if value is None else float(value)


def _from_real(name: str, value: float | None) -> Value:
    if value is None:
        return None
    return bool(value) if METRICS[name].unit == "bool" else float(value)
