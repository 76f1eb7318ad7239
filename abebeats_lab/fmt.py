"""Numbers for people: the one way every view (CLI, report, panel, plan) writes a figure.

Seconds get two decimals and ``s``, money ``$0.40``, prices ``$0.040/s``; an unknown price is
``unknown`` (never ``$0.00``), any other missing figure is a dash. NaN, the way pandas says
"missing", is treated as missing everywhere, so a view can never print ``nan`` or ``None``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MISSING",
    "UNKNOWN",
    "money",
    "number",
    "rate",
    "seconds",
    "size",
    "table",
    "value",
]

MISSING = "–"
"""A figure that does not exist (a failed job has no duration)."""
UNKNOWN = "unknown"
"""A price nobody knows: shown as such, never as zero."""
COLUMN_GAP = "  "
MIN_WRAP_WIDTH = 8
"""A wrapped column never gets narrower than this, even if the table then overflows."""
_BREAK_AFTER = re.compile(r"[^\s/:]*(?:[/:]|\s+|$)")
"""A wrapped cell's pieces: each ends where a line may break (after a space, ``/`` or ``:``,
so a route such as ``pika:fal-ai/pika/v2.2/text-to-video`` breaks between its parts)."""


def number(raw: Any) -> float | None:
    """``raw`` as a finite float, or None for None, NaN, booleans and text that is no number."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        result = float(raw)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def seconds(raw: Any) -> str:
    """``2.36s``, or a dash when missing."""
    figure = number(raw)
    return MISSING if figure is None else f"{figure:.2f}s"


def money(raw: Any) -> str:
    """``$0.40``, or ``unknown`` when missing."""
    figure = number(raw)
    return UNKNOWN if figure is None else f"${figure:.2f}"


def rate(raw: Any) -> str:
    """A price per second of video, ``$0.040/s``, ``free`` at zero, or ``unknown`` when missing."""
    figure = number(raw)
    if figure is None:
        return UNKNOWN
    return "free" if figure == 0 else f"${figure:.3f}/s"


def size(width: Any, height: Any) -> str:
    """``1280×720`` (whole pixels, whatever type the numbers arrived as), or a dash."""
    w, h = number(width), number(height)
    return MISSING if w is None or h is None else f"{round(w)}×{round(h)}"


def value(raw: Any) -> str:
    """Any other setting or figure: whole floats without ``.0``, yes/no, a dash when missing."""
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    if raw is None or raw == "" or (isinstance(raw, float) and not math.isfinite(raw)):
        return MISSING
    if isinstance(raw, float):
        return str(round(raw)) if raw.is_integer() else f"{raw:.2f}"
    return str(raw)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    max_width: int,
    right: Sequence[int] = (),
    wrap: int = 0,
) -> list[str]:
    """A plain-text table no wider than ``max_width``: column ``wrap`` is wrapped to fit.

    ``right`` lists the columns aligned right (figures). Returns the lines, header first.
    """
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    overflow = sum(widths) + len(COLUMN_GAP) * (len(widths) - 1) - max_width
    if overflow > 0:
        widths[wrap] = max(MIN_WRAP_WIDTH, widths[wrap] - overflow)
    lines = []
    for row in [headers, *rows]:
        pieces = _wrapped(str(row[wrap]), widths[wrap])
        for depth, piece in enumerate(pieces):
            cells = [
                piece if i == wrap else (str(c) if depth == 0 else "") for i, c in enumerate(row)
            ]
            padded = [
                c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                for i, c in enumerate(cells)
            ]
            lines.append(COLUMN_GAP.join(padded).rstrip())
    return lines


def _wrapped(text: str, width: int) -> list[str]:
    """``text`` as lines of at most ``width``, broken after a space, ``/`` or ``:`` (never
    inside a name); a part longer than ``width`` on its own is cut, the only way it fits."""
    lines: list[str] = []
    current = ""
    for part in _BREAK_AFTER.findall(text):
        if current and len(current + part.rstrip()) > width:
            lines.append(current.rstrip())
            current = part.lstrip()
        else:
            current += part
        while len(current.rstrip()) > width:
            lines.append(current[:width])
            current = current[width:]
    if current.strip():
        lines.append(current.rstrip())
    return lines or [""]
