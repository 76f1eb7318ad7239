"""A comparison's result: its rows, a per-route summary, and a side-by-side notebook view.

`Comparison.rows` are `store.JobRow` frozen dataclasses (one per prompt × route × repeat);
`to_rows` gives plain dicts for the HTML report, `to_pandas` a DataFrame. Figures from
emulated routes carry ``emulated=True`` everywhere they appear.
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abebeats_lab._types import Output, Probe, VideoRequest
from abebeats_lab.costs import CostEstimate
from abebeats_lab.store import JobRow

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DATA_URI_MAX_BYTES",
    "Comparison",
    "conformance",
    "output_fields",
    "percentile",
    "summarize",
]

DATA_URI_MAX_BYTES = 5 * 1024 * 1024
"""Videos below this are inlined as data: URIs, so a notebook plays them anywhere."""
P90 = 0.9
VIDEO_WIDTH_PX = 320
DURATION_TOLERANCE_S = 0.5
RATIO_TOLERANCE = 0.02
RESOLUTION_TOLERANCE = 0.02
"""How far an output may stray from the request and still conform (seconds, fractions)."""
_LINES = {
    "240p": 240,
    "360p": 360,
    "480p": 480,
    "540p": 540,
    "720p": 720,
    "1080p": 1080,
    "1440p": 1440,
    "2160p": 2160,
    "4k": 2160,
}


def conformance(probe: Probe, request: VideoRequest) -> tuple[bool, bool, bool]:
    """Did the output match the requested duration, aspect ratio and resolution?"""
    shape = request.shape()
    duration_ok = abs(probe.duration_s - shape.duration_s) <= DURATION_TOLERANCE_S
    width_part, _, height_part = shape.aspect_ratio.partition(":")
    asked = float(width_part) / float(height_part)
    ratio_ok = (
        probe.height > 0 and abs(probe.width / probe.height - asked) <= RATIO_TOLERANCE * asked
    )
    lines = _LINES.get(shape.resolution.lower())
    short = min(probe.width, probe.height)
    resolution_ok = lines is not None and abs(short - lines) <= RESOLUTION_TOLERANCE * lines
    return duration_ok, bool(ratio_ok), resolution_ok


def output_fields(output: Output, run_dir: Path, request: VideoRequest) -> dict[str, Any]:
    """The store columns describing a verified output: path, hash, probe, conformance."""
    probe = output.probe
    duration_ok, ratio_ok, resolution_ok = conformance(probe, request)
    return {
        "output_path": output.path.relative_to(run_dir).as_posix(),
        "sha256": output.sha256,
        "duration_s": probe.duration_s,
        "width": probe.width,
        "height": probe.height,
        "fps": probe.fps,
        "codec": probe.codec,
        "has_audio": probe.has_audio,
        "bytes": probe.bytes,
        "duration_ok": duration_ok,
        "ratio_ok": ratio_ok,
        "resolution_ok": resolution_ok,
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile ``q`` (0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _figures(rows: Sequence[JobRow], name: str) -> list[float]:
    return [float(v) for r in rows if (v := getattr(r, name)) is not None]


def _known_sum(rows: Sequence[JobRow], name: str) -> float | None:
    """Sum over submitted jobs; None when any price is unknown (never a silent zero)."""
    values: list[float | None] = [getattr(r, name) for r in rows if r.job_id]
    known = [v for v in values if v is not None]
    return round(sum(known), 4) if len(known) == len(values) else None


def _per(amount: float | None, video_s: float) -> float | None:
    return round(amount / video_s, 4) if amount is not None and video_s else None


def _route_summary(route: str, rows: Sequence[JobRow]) -> dict[str, Any]:
    done = [r for r in rows if r.state == "succeeded"]
    totals = _figures(done, "total_s")
    video_s = sum(r.duration_s or 0.0 for r in done)
    charged = _known_sum(rows, "cost_usd")
    would_be = _known_sum(rows, "cost_estimate_usd")
    return {
        "route": route,
        "emulated": any(r.emulated for r in rows),
        "jobs": len(rows),
        "succeeded": len(done),
        "success_rate": len(done) / len(rows) if rows else None,
        "median_total_s": _median(totals),
        "p90_total_s": percentile(totals, P90),
        "median_queue_s": _median(_figures(done, "queue_s")),
        "median_run_s": _median(_figures(done, "run_s")),
        "median_detect_lag_s": _median(_figures(done, "detect_lag_s")),
        "cost_usd": charged,
        "usd_per_video_s": _per(charged, video_s),
        "would_be_usd_per_video_s": _per(would_be, video_s),
    }


def summarize(rows: Sequence[JobRow]) -> list[dict[str, Any]]:
    """Per route (first-seen order): success rate, time medians and p90, cost per video second."""
    by_route: dict[str, list[JobRow]] = {}
    for row in rows:
        by_route.setdefault(row.route, []).append(row)
    return [_route_summary(route, group) for route, group in by_route.items()]


@dataclass
class Comparison:
    """The rows of one run (or, for a dry run, of its plan) and views over them."""

    rows: list[JobRow]
    run_id: str
    run_dir: Path | None
    """None for a dry run: nothing was written."""
    estimate: CostEstimate | None = None
    """The cost guard's estimate, computed before anything was submitted."""
    estimated_time_s: float | None = None
    """A rough wall time for the whole run, from run-time priors and the concurrency caps."""
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    def to_rows(self) -> list[dict[str, Any]]:
        """Rows as plain dicts (every store column)."""
        return [row.to_dict() for row in self.rows]

    def to_pandas(self) -> pd.DataFrame:
        """Rows as a DataFrame (pandas is imported only now)."""
        import pandas as pd

        return pd.DataFrame(self.to_rows())

    def summary(self) -> pd.DataFrame:
        """Per-route figures (see `summarize`) as a DataFrame indexed by route."""
        import pandas as pd

        return pd.DataFrame(summarize(self.rows)).set_index("route")

    def describe_plan(self) -> str:
        """The plan as text (``--dry-run``): jobs per route, settings, estimated cost and time."""
        kind = "plan" if self.dry_run else "run"
        lines = [f"{kind} {self.run_id}: {len(self.rows)} jobs"]
        for route in dict.fromkeys(r.route for r in self.rows):
            mine = [r for r in self.rows if r.route == route]
            first = mine[0]
            shown = {
                k: v for k, v in first.settings.items() if k != "prompt" and v not in (None, {})
            }
            cost = sum(r.cost_usd or 0.0 for r in mine)
            note = f", adjusted {first.adjusted}" if first.adjusted else ""
            lines.append(
                f"  {route}: {len(mine)} jobs, ${cost:.2f} ({first.cost_note}), {shown}{note}"
            )
        if self.estimate is not None:
            lines.append(self.estimate.describe())
        if self.estimated_time_s is not None:
            lines.append(f"estimated time about {self.estimated_time_s:.0f} s")
        return "\n".join(lines)

    def output_path(self, row: JobRow) -> Path | None:
        """Absolute path of a row's video, if it has one."""
        if self.run_dir is None or not row.output_path:
            return None
        return self.run_dir / row.output_path

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        states: dict[str, int] = {}
        for row in self.rows:
            states[row.state] = states.get(row.state, 0) + 1
        kind = "plan" if self.dry_run else "run"
        return f"Comparison({kind} {self.run_id}, {len(self.rows)} jobs, {states})"

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_html(self, *, inline_max_bytes: int = DATA_URI_MAX_BYTES) -> str:
        """One column per route, one line per prompt and repeat: videos with their figures."""
        routes = list(dict.fromkeys(r.route for r in self.rows))
        lines = sorted({(r.prompt_index, r.repeat) for r in self.rows})
        cells = {(r.prompt_index, r.repeat, r.route): r for r in self.rows}
        head = "".join(f"<th>{html.escape(route)}</th>" for route in routes)
        body = []
        for index, repeat in lines:
            prompt = next(r.prompt for r in self.rows if r.prompt_index == index)
            label = f"<th>#{index} r{repeat}<br><small>{html.escape(prompt)}</small></th>"
            tds = "".join(
                self._cell(cells.get((index, repeat, rt)), inline_max_bytes) for rt in routes
            )
            body.append(f"<tr>{label}{tds}</tr>")
        title = html.escape(repr(self))
        extra = f"<p>{html.escape(self.estimate.describe())}</p>" if self.estimate else ""
        return (
            f"<div><p><b>{title}</b></p>{extra}<table><tr><th></th>{head}</tr>"
            f"{''.join(body)}</table></div>"
        )

    def _cell(self, row: JobRow | None, inline_max_bytes: int) -> str:
        if row is None:
            return "<td></td>"
        video = self._video(row, inline_max_bytes)
        return f"<td style='vertical-align:top'>{video}{_figure_list(row)}</td>"

    def _video(self, row: JobRow, inline_max_bytes: int) -> str:
        path = self.output_path(row)
        if path is None or not path.is_file():
            return ""
        if path.stat().st_size < inline_max_bytes:
            src = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        else:
            src = html.escape(row.output_path or "")
        return f"<video src='{src}' width='{VIDEO_WIDTH_PX}' controls loop muted></video>"


def _fmt(value: Any, unit: str = "s") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}{unit}" if unit else f"{value:.4g}"
    return f"{value}{unit}"


def _figure_list(row: JobRow) -> str:
    items = [f"<b>{html.escape(row.state)}</b>" + (" (emulated)" if row.emulated else "")]
    if row.error:
        items.append(f"<span style='color:#b00'>{html.escape(row.error)}</span>")
    for name in ("total_s", "queue_s", "run_s", "detect_lag_s", "download_s"):
        source = getattr(row, f"{name}_source") or ""
        items.append(f"{name[:-2]} {_fmt(getattr(row, name))} <small>{source}</small>")
    items.append(f"polls {row.polls}")
    if row.cost_estimate_usd is not None:
        items.append(
            f"${row.cost_usd or 0:.2f} <small>({html.escape(row.cost_note)}; "
            f"list ${row.cost_estimate_usd:.2f})</small>"
        )
    if row.width:
        items.append(f"{row.width}×{row.height} {_fmt(row.fps, ' fps')} {_fmt(row.duration_s)}")
    return "<br>".join(items)
