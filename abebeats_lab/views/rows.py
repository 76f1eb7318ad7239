"""One job row as HTML (caption, video, figures table): the one renderer behind the notebook
view, the panel and the report, so they show the same figures. Provider strings are escaped.
The caller says where the video comes from, or (the panel) puts its own video widget between
`head_html` and `figures_html`.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from abebeats_lab import fmt
from abebeats_lab.run import costs

__all__ = ["badge", "figures_html", "head_html", "job_cost_text", "row_html", "video_path"]

EMULATED_LABEL = "emulated"
BADGE = (
    '<span class="abebeats-emulated badge" style="background:#fff3cd;color:#7a5b00;'
    'border:1px solid #e6c65c;border-radius:8px;padding:0 6px;font-size:11px">'
    f"{EMULATED_LABEL}</span>"
)
ERROR_CHARS = 300
"""An error longer than this is cut (the whole text stays in the tooltip and the store)."""
VIDEO_WIDTH_PX = 320
KEY_METRICS = ("motion", "flicker", "sharpness", "black_fraction")
"""The automatic metrics shown under each video, when the run has been scored."""
_TIMES = (("total", "total_s"), ("queue", "queue_s"), ("run", "run_s"),
          ("detect lag", "detect_lag_s"), ("download", "download_s"))  # fmt: skip
_CHECKS = ("duration", "ratio", "resolution")
_ERROR_STYLE = "color:#a00000"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def plain(row: Any) -> dict[str, Any]:
    """A `JobRow`, a pandas row or a dict as a plain dict, with NaN read as missing."""
    items = row.to_dict() if hasattr(row, "to_dict") else dict(row)
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in items.items()}


def badge(emulated: Any) -> str:
    """The ``emulated`` label where it applies (NaN and missing mean no)."""
    return f" {BADGE}" if emulated is True or (fmt.number(emulated) or 0) > 0 else ""


def job_cost_text(row: Mapping[str, Any]) -> str:
    """One job's cost for a person: ``$0.00 (emulated: not charged); price $0.120/s``, then
    what the provider reported the job used, where it did (``; reported predict_time 48.20s``)."""
    cost = costs.route_cost([row])
    note = f" ({cost.note})" if cost.note else ""
    used = costs.usage_text(cost.usage)
    return f"{fmt.money(cost.charged_usd)}{note}; price {cost.price_text()}" + (
        f"; {used}" if used else ""
    )


def video_path(row: Mapping[str, Any], run_dir: Path) -> Path | None:
    """The job's video file on disk, if it has one (store paths are relative to the run)."""
    value = row.get("output_path")
    if not isinstance(value, str | os.PathLike) or not str(value):
        return None
    path = Path(value)
    path = path if path.is_absolute() else run_dir / path
    return path if path.is_file() else None


def head_html(row: Any) -> str:
    """The caption of one job: route, ``emulated`` badge, repeat."""
    job = plain(row)
    return (
        f'<div class="abebeats-cell-head" style="font-size:12px"><code>{_e(job.get("route"))}'
        f"</code>{badge(job.get('emulated'))} · repeat {_e(fmt.value(job.get('repeat')))}</div>"
    )


def _check(value: Any) -> str:
    return fmt.MISSING if value is None else ("✓" if bool(value) else "✗")


def _error(text: str) -> str:
    short = text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"
    return (
        f'<span class="abebeats-error" style="{_ERROR_STYLE}" title="{_e(text)}">{_e(short)}</span>'
    )


def _quality(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Key metrics (when scored) and the route's blind-vote rating (when voted on)."""
    lines = []
    found = [(n, fmt.number(job.get(n))) for n in KEY_METRICS]
    shown = " · ".join(f"{n.replace('_', ' ')} {v:.3g}" for n, v in found if v is not None)
    if shown:
        lines.append(("quality", _e(shown)))
    rating, low, high = (fmt.number(job.get(c)) for c in ("rating", "rating_low", "rating_high"))
    if rating is not None:
        interval = f" (95% {low:.0f}–{high:.0f})" if low is not None and high is not None else ""
        votes = fmt.number(job.get("rating_votes"))
        count = f", {votes:.0f} votes" if votes is not None else ""
        lines.append(("rating", _e(f"{rating:.0f}{interval}{count}")))
    return lines


def figure_lines(row: Any) -> list[tuple[str, str]]:
    """``(label, HTML)`` per figure of one job, in the order every view shows them."""
    job = plain(row)
    lines = [("state", _e(job.get("state")))]
    if job.get("error"):
        lines.append(("error", _error(str(job["error"]))))
    for label, name in _TIMES:
        source = job.get(f"{name}_source")
        small = f" <small>{_e(source)}</small>" if source else ""
        lines.append((label, fmt.seconds(job.get(name)) + small))
    lines.append(("polls", _e(fmt.value(job.get("polls")))))
    lines.append(("cost", _e(job_cost_text(job))))
    if fmt.number(job.get("width")) is not None:
        output = (
            f"{fmt.size(job.get('width'), job.get('height'))}, {fmt.value(job.get('fps'))} fps, "
            f"{fmt.seconds(job.get('duration_s'))}"
        )
        lines.append(("output", _e(output)))
        checks = " ".join(f"{name} {_check(job.get(f'{name}_ok'))}" for name in _CHECKS)
        lines.append(("conformance", _e(checks)))
    return lines + _quality(job)


def figures_html(row: Any) -> str:
    """The figures table of one job (or the reason it has none)."""
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:8px">{label}</th><td>{value}</td></tr>'
        for label, value in figure_lines(row)
    )
    caption = f"<caption>figures{badge(plain(row).get('emulated'))}</caption>"
    return f'<table class="abebeats-figures" style="font-size:12px">{caption}{body}</table>'


def row_html(row: Any, *, video_src: str | None) -> str:
    """One job as a cell: caption, the video at ``video_src`` (none when None), figures."""
    video = (
        f'<video src="{_e(video_src)}" width="{VIDEO_WIDTH_PX}" controls loop muted playsinline '
        'preload="metadata"></video>'
        if video_src
        else ""
    )
    return f'<div class="abebeats-cell">{head_html(row)}{video}{figures_html(row)}</div>'
