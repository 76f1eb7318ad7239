"""What the control panel shows about jobs: progress lines, figures tables, the video grid.

Text is built here as small HTML fragments (escaped), widgets are assembled in `panel`.
Every figure from an emulated route carries the ``emulated`` label.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from abebeats_lab import fmt
from abebeats_lab.fmt import number as _num
from abebeats_lab.fmt import seconds
from abebeats_lab.views.comparison import job_cost_text
from abebeats_lab.views.plots import EMULATED_LABEL

__all__ = ["figures_html", "job_head_html", "progress_html", "video_path"]

_PROMPT_CHARS = 40
_PERCENT = 100
_BADGE = (
    '<span class="abebeats-emulated" style="background:#fff3cd;color:#7a5b00;'
    'border:1px solid #e6c65c;border-radius:8px;padding:0 6px;font-size:11px">'
    f"{EMULATED_LABEL}</span>"
)
_STATE_COLOURS = {"succeeded": "#137333", "failed": "#a00000", "canceled": "#7a5b00"}
KEY_METRICS = ("motion", "flicker", "sharpness", "black_fraction")
"""The automatic metrics shown under each video, when the run has been scored."""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def badge(emulated: Any) -> str:
    """The ``emulated`` label where it applies."""
    return f" {_BADGE}" if emulated is True or (_num(emulated) or 0) > 0 else ""


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


def job_head_html(row: Mapping[str, Any]) -> str:
    """The caption above one video: route, repeat, emulated label."""
    return (
        f'<div style="font-size:12px"><code>{_e(row.get("route"))}</code>'
        f"{badge(row.get('emulated'))} · repeat {_e(row.get('repeat'))}</div>"
    )


def _check(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return "✓" if bool(value) else "✗"


def figures_html(row: Mapping[str, Any]) -> str:
    """The figures table under one video (or the reason it has none)."""
    conformance = " ".join(
        f"{name} {_check(row.get(f'{name}_ok'))}" for name in ("duration", "ratio", "resolution")
    )
    lines = [
        ("state", _e(row.get("state"))),
        ("total", seconds(row.get("total_s"))),
        ("queue", seconds(row.get("queue_s"))),
        ("run", seconds(row.get("run_s"))),
        ("cost", _e(job_cost_text(row))),
        (
            "output",
            f"{fmt.size(row.get('width'), row.get('height'))}, {seconds(row.get('duration_s'))}",
        ),
        ("conformance", _e(conformance)),
    ]
    lines += _quality_lines(row)
    if row.get("error"):
        lines.append(("error", f'<span style="color:#a00000">{_e(row.get("error"))}</span>'))
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:8px">{k}</th><td>{v}</td></tr>'
        for k, v in lines
    )
    caption = f"<caption>figures{badge(row.get('emulated'))}</caption>"
    return f'<table class="abebeats-figures" style="font-size:12px">{caption}{body}</table>'


def _quality_lines(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Key metrics (when scored) and the route's blind-vote rating (when voted on)."""
    lines = []
    figures = [(n, _num(row.get(n))) for n in KEY_METRICS]
    shown = " · ".join(f"{n.replace('_', ' ')} {v:.3g}" for n, v in figures if v is not None)
    if shown:
        lines.append(("quality", _e(shown)))
    rating, low, high = (_num(row.get(c)) for c in ("rating", "rating_low", "rating_high"))
    if rating is not None:
        interval = f" (95% {low:.0f}–{high:.0f})" if low is not None and high is not None else ""
        votes = _num(row.get("rating_votes"))
        count = f", {votes:.0f} votes" if votes is not None else ""
        lines.append(("rating", _e(f"{rating:.0f}{interval}{count}")))
    return lines


def video_path(row: Mapping[str, Any], run_dir: Path) -> Path | None:
    """The job's video file on disk, if it has one (store paths are relative to the run)."""
    value = row.get("output_path")
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    path = path if path.is_absolute() else run_dir / path
    return path if path.is_file() else None
