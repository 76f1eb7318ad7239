"""A 5x7 bitmap font, so the renderer can caption frames without Pillow or system fonts."""

from __future__ import annotations

import functools

import numpy as np

# Each glyph is seven rows of five bits, most significant bit on the left.
_GLYPHS: dict[str, tuple[int, ...]] = {
    "A": (14, 17, 17, 31, 17, 17, 17),
    "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14),
    "D": (30, 17, 17, 17, 17, 17, 30),
    "E": (31, 16, 16, 30, 16, 16, 31),
    "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15),
    "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14),
    "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17),
    "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17),
    "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14),
    "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13),
    "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30),
    "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14),
    "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10),
    "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 10, 4, 4, 4, 4),
    "Z": (31, 1, 2, 4, 8, 16, 31),
    "0": (14, 17, 19, 21, 25, 17, 14),
    "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2),
    "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14),
    "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12),
    ".": (0, 0, 0, 0, 0, 12, 12),
    ",": (0, 0, 0, 0, 12, 4, 8),
    "!": (4, 4, 4, 4, 4, 0, 4),
    "?": (14, 17, 1, 2, 4, 0, 4),
    "-": (0, 0, 0, 31, 0, 0, 0),
    "'": (4, 4, 8, 0, 0, 0, 0),
    ":": (0, 12, 12, 0, 12, 12, 0),
    " ": (0, 0, 0, 0, 0, 0, 0),
}
_UNKNOWN = (31, 17, 17, 17, 17, 17, 31)


@functools.cache
def _mask(char: str) -> np.ndarray:
    rows = _GLYPHS.get(char, _UNKNOWN)
    return np.array([[(row >> (4 - col)) & 1 for col in range(5)] for row in rows], dtype=bool)


@functools.lru_cache(maxsize=32)
def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """The pixels of ``text`` at ``scale``: one bool array, 6 px per glyph cell, 7 px high."""
    cells = [np.pad(_mask(char), ((0, 0), (0, 1))) for char in text] or [np.zeros((7, 6), bool)]
    line = np.concatenate(cells, axis=1)
    return np.kron(line, np.ones((scale, scale), dtype=bool))


def draw_text(frame: np.ndarray, text: str, *, x: int, y: int, scale: int = 1) -> None:
    """Draw ``text`` in white with a dark shadow onto an RGB frame, in place, clipped."""
    mask = text_mask(text, scale)
    height, width = frame.shape[:2]
    for offset, value in ((scale, 0), (0, 255)):
        top, left = y + offset, x + offset
        if top < 0 or left < 0 or top >= height or left >= width:
            continue
        region = frame[top : top + mask.shape[0], left : left + mask.shape[1]]
        region[mask[: region.shape[0], : region.shape[1]]] = value
