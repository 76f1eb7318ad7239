"""The control panel's progress lines (escaped HTML; widgets are assembled in `panel`).

A finished job's cell is `views.rows`, the renderer the notebook view and the report use too.
"""

from __future__ import annotations

import html
from typing import Any

from abebeats_lab.fmt import number as _num
from abebeats_lab.fmt import seconds
from abebeats_lab.views.rows import badge, video_path

__all__ = ["progress_html", "video_path"]

_PROMPT_CHARS = 40
_PERCENT = 100
_STATE_COLOURS = {"succeeded": "#137333", "failed": "#a00000", "canceled": "#7a5b00"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def progress_html(event: Any, emulated: bool) -> str:
    """One progress line: route, prompt, state, queue position or progress, elapsed."""
    state = str(getattr(event, "state", ""))
    detail = ""
    if getattr(event, "queue_position", None) is not None:
        detail = f"queue position {event.queue_position}"
    elif (progress := _num(getattr(event, "progress", None))) is not None:
        detail = f"{progress * _PERCENT:.0f}%"
    prompt = str(getattr(event, "prompt", ""))
    short = prompt if len(prompt) <= _PROMPT_CHARS else prompt[: _PROMPT_CHARS - 1] + "…"
    colour = _STATE_COLOURS.get(state, "#1d1d1f")
    error = getattr(event, "error", None)
    parts = [
        f"<code>{_e(event.route)}</code>{badge(emulated)}",
        f"<i>{_e(short)}</i>",
        f'<b class="abebeats-state" style="color:{colour}">{_e(state)}</b>',
        _e(detail),
        f"elapsed {seconds(getattr(event, 'elapsed_s', None))}",
    ]
    line = " · ".join(p for p in parts if p)
    if error:
        line += f'<div class="abebeats-error" style="color:#a00000">{_e(error)}</div>'
    return f'<div class="abebeats-progress">{line}</div>'
