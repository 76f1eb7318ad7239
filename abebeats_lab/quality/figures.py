"""The picture and motion figures of sampled frames: what one frame and one frame pair give.

Frames arrive as luma arrays at a common scale (`ANALYSIS_SHORT_SIDE`, and
`MOTION_SHORT_SIDE` for block matching), about `SAMPLE_FPS` a second; `Figures` gathers the
per-frame figures (black, sharpness, exposure) and per-pair ones (flicker, frozen, motion)
and reduces them to `METRICS` values. Plain numpy, no decoding: `measure` feeds it. `Clock`
charges the CPU time of each step to it, for `measure.profile`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from abebeats_lab.quality.catalogue import Value

__all__ = [
    "ANALYSIS_SHORT_SIDE",
    "MOTION_SHORT_SIDE",
    "SAMPLE_FPS",
    "Clock",
    "Figures",
    "block_motion",
    "frame_figures",
    "pair_figures",
]

SAMPLE_FPS = 8
"""Frames analysed per second of video (VBench samples dynamic degree at 8 fps too)."""
ANALYSIS_SHORT_SIDE = 360
"""Short side, in pixels, of the luma every metric but motion is computed on."""
MOTION_SHORT_SIDE = 144
"""Short side of the luma block matching runs on (its coarse level is half of it)."""

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
_STENCIL = 3
"""The Laplacian needs a 3×3 neighbourhood."""
_MIN_BLOCK = 2


class Clock:
    """CPU seconds (this process, all threads) spent per stage, lap by lap."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._last = time.process_time()

    def lap(self, stage: str) -> None:
        now = time.process_time()
        self.spent[stage] = self.spent.get(stage, 0.0) + now - self._last
        self._last = now


@dataclass
class Figures:
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


def frame_figures(figures: Figures, luma: np.ndarray, clock: Clock) -> None:
    figures.black.append(bool(np.mean(luma <= _BLACK_PIXEL_LEVEL) >= _BLACK_PICTURE_FRACTION))
    clock.lap("black")
    figures.sharpness.append(_laplacian_variance(luma))
    clock.lap("sharpness")
    figures.luma.append(float(luma.mean()) / _LEVELS)
    figures.contrast.append(float(luma.std()) / _LEVELS)
    figures.clipped.append(float(np.mean((luma <= _CLIP_LOW) | (luma >= _CLIP_HIGH))))
    clock.lap("exposure")


def pair_figures(
    figures: Figures,
    before: np.ndarray,
    after: np.ndarray,
    small_before: np.ndarray,
    small_after: np.ndarray,
    clock: Clock,
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
