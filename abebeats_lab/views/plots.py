"""Charts of a comparison: timing breakdown per route and price per second of video.

Why matplotlib (and not plotly): it is already a dependency of the ``jupyter`` extra, it
renders to a static inline SVG that needs no JavaScript (so a report opens offline in any
browser, and a notebook output stays small), and it is far lighter than plotly. Figures are
built with `matplotlib.figure.Figure` directly, never pyplot, so no global state is touched
and nothing pops up in a notebook by accident.

Every chart takes the job rows of a run (``Comparison.to_pandas()``) and labels each route
whose figures came from an emulator with ``(emulated)``.

How the timing bar adds up (the rule every view relies on): a route's bar is its median
job, measured end to end, so its length is exactly the median ``total_s`` the tables show
(with an even number of jobs, the two middle jobs averaged, phase by phase). One job's
``total_s`` is cut into parts that do not overlap:

- ``submit``: the create call, from the start;
- ``queue``, ``run``, ``detect lag``: the provider's phases, laid end to end from the end
  of the submit; where they are longer than the time left before the download they are
  pushed earlier, and the part that falls inside the submit is drawn *inside* the submit bar
  (thin bars): a held create (Replicate's ``Prefer: wait``) queued and ran while the create
  call was open. Provider clocks may disagree with ours: what lies before the start is cut;
- ``other``: time the client spent that no measured phase explains (fetching the result,
  a lag the provider does not report);
- ``download``: the end.
"""

from __future__ import annotations

import base64
import io
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from abebeats_lab import fmt
from abebeats_lab._types import JobState
from abebeats_lab.views.rows import EMULATED_LABEL
from abebeats_lab.views.summary import by_route, summarize

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "EMULATED_LABEL",
    "PROVIDER_PHASES",
    "TIMING_PHASES",
    "Bar",
    "cost_figure",
    "cost_per_second",
    "figure_png_data_uri",
    "figure_svg",
    "job_parts",
    "route_label",
    "timing_bars",
    "timing_figure",
    "timing_table",
]

TIMING_PHASES: tuple[str, ...] = (
    "submit_s", "queue_s", "run_s", "detect_lag_s", "other_s", "download_s"
)  # fmt: skip
"""The parts of a timing bar, in the order a job lives through them; they add up to total_s."""
PROVIDER_PHASES: tuple[str, ...] = ("queue_s", "run_s", "detect_lag_s")
"""The provider's phases, which may overlap the submit (a held create)."""
_PHASE_NAMES = {
    "submit_s": "submit", "queue_s": "queue", "run_s": "run", "detect_lag_s": "detect lag",
    "other_s": "other", "download_s": "download",
}  # fmt: skip
# Colour-blind safe (Okabe-Ito), so the stacked phases stay distinguishable for everyone.
_PHASE_COLOURS = {
    "submit_s": "#0072B2", "queue_s": "#E69F00", "run_s": "#009E73", "detect_lag_s": "#D55E00",
    "other_s": "#BBBBBB", "download_s": "#CC79A7",
}  # fmt: skip
_COST_COLOUR = "#56B4E9"
_BAR_HEIGHT = 0.8
_INSIDE_HEIGHT = 0.3
"""Height of the provider phases drawn inside a submit bar (a held create)."""
_INSIDE_NOTE = "thin bars: provider work while the create call was open"
_LEGEND_COLUMNS = 4
_WIDTH_IN = 7.0
_ROW_IN = 0.45
_MIN_HEIGHT_IN = 1.8
_DPI = 96


def route_label(route: str, emulated: bool) -> str:
    """The route name as every chart and table shows it."""
    return f"{route} ({EMULATED_LABEL})" if emulated else route


@dataclass(frozen=True, slots=True)
class Bar:
    """One route's timing bar: parts that add up to ``total_s``, and what overlaps the submit."""

    label: str
    total_s: float
    parts: dict[str, float]
    """Seconds per `TIMING_PHASES` entry; they sum to ``total_s``."""
    inside_submit: dict[str, tuple[float, float]]
    """Provider phase -> (start, seconds) of the part that ran while the create call was open."""


def _clip(start: float, end: float, low: float, high: float) -> float:
    return max(0.0, min(end, high) - max(start, low))


def job_parts(row: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """One job's ``total_s`` cut into `TIMING_PHASES` (see the module docstring for the rule)."""
    total = fmt.number(row.get("total_s")) or 0.0
    submit = min(total, max(0.0, fmt.number(row.get("submit_s")) or 0.0))
    download = min(total - submit, max(0.0, fmt.number(row.get("download_s")) or 0.0))
    ready = total - download  # when the download started
    phases = [(p, max(0.0, fmt.number(row.get(p)) or 0.0)) for p in PROVIDER_PHASES]
    start = min(submit, ready - sum(length for _, length in phases))
    parts = {"submit_s": submit, "download_s": download}
    inside: dict[str, tuple[float, float]] = {}
    for phase, length in phases:
        end = start + length
        parts[phase] = _clip(start, end, submit, ready)
        hidden = _clip(start, end, 0.0, submit)
        if hidden > 0:
            inside[phase] = (max(start, 0.0), hidden)
        start = end
    parts["other_s"] = max(0.0, total - sum(parts.values()))
    return {p: parts[p] for p in TIMING_PHASES}, inside


def _median_jobs(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The job at the median total_s, or the two middle ones when the count is even."""
    timed = sorted(
        (
            r
            for r in rows
            if r.get("state") == JobState.SUCCEEDED and fmt.number(r.get("total_s")) is not None
        ),
        key=lambda r: fmt.number(r.get("total_s")) or 0.0,
    )
    middle = len(timed) // 2
    return timed[middle - 1 : middle + 1] if len(timed) % 2 == 0 else timed[middle : middle + 1]


def _average_inside(
    splits: Sequence[dict[str, tuple[float, float]]],
) -> dict[str, tuple[float, float]]:
    out = {}
    for phase in PROVIDER_PHASES:
        found = [s[phase] for s in splits if phase in s]
        if found:
            start = statistics.fmean(f[0] for f in found)
            out[phase] = (start, sum(f[1] for f in found) / len(splits))
    return out


def timing_bars(rows: Any) -> list[Bar]:
    """One `Bar` per route with a finished job (routes in name order), from any job rows."""
    bars = []
    for route, group in sorted(by_route(rows).items()):
        jobs = _median_jobs(group)
        if not jobs:
            continue
        splits = [job_parts(job) for job in jobs]
        parts = {p: statistics.fmean(s[0][p] for s in splits) for p in TIMING_PHASES}
        total = statistics.fmean(fmt.number(job.get("total_s")) or 0.0 for job in jobs)
        label = route_label(route, any(bool(r.get("emulated")) for r in group))
        bars.append(Bar(label, total, parts, _average_inside([s[1] for s in splits])))
    return bars


def timing_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The timing bars as a table: seconds per part per route label, and ``total_s``."""
    import pandas as pd

    columns = [*TIMING_PHASES, "total_s"]
    bars = timing_bars(rows)
    lines = [{**bar.parts, "total_s": bar.total_s} for bar in bars]
    index = pd.Index([bar.label for bar in bars], name="label")
    return pd.DataFrame(lines, columns=columns, index=index, dtype="float64")


def cost_per_second(rows: pd.DataFrame) -> pd.DataFrame:
    """The real route's price per second of the video asked, per route label (`summarize`).

    ``usd_per_s`` is NaN where no price is known (never zero); ``price`` is the text written
    beside the bar (``$0.120/s``, ``$0.100/s (user price)`` or ``unknown price``).
    """
    import pandas as pd

    out = [
        {
            "label": route_label(line["route"], line["emulated"]),
            "usd_per_s": line["price_usd_per_s"],
            "estimate": True,
            "price": "unknown price" if line["price_usd_per_s"] is None else line["price_text"],
        }
        for line in sorted(summarize(rows), key=lambda line: str(line["route"]))
    ]
    return pd.DataFrame(out, columns=["label", "usd_per_s", "estimate", "price"]).set_index("label")


def _new_figure(n_rows: int) -> Figure:
    from matplotlib.figure import Figure

    height = max(_MIN_HEIGHT_IN, _ROW_IN * n_rows + 1.2)
    return Figure(figsize=(_WIDTH_IN, height), dpi=_DPI, layout="constrained")


def timing_figure(
    rows: pd.DataFrame, *, title: str = "Where the time goes (the median job of each route)"
) -> Figure:
    """Stacked horizontal bars that add up to each route's median total (`timing_bars`)."""
    from matplotlib.patches import Patch

    bars = timing_bars(rows)
    fig = _new_figure(len(bars))
    ax = fig.add_subplot()
    labels = [bar.label for bar in bars] or ["no finished jobs"]
    left = [0.0] * len(labels)
    for phase in TIMING_PHASES:
        values = [bar.parts[phase] for bar in bars] or [0.0]
        colour = _PHASE_COLOURS[phase]
        ax.barh(
            labels, values, left=left, height=_BAR_HEIGHT, color=colour, label=_PHASE_NAMES[phase]
        )
        left = [a + b for a, b in zip(left, values, strict=True)]
    for y, bar in enumerate(bars):
        for phase, (start, width) in bar.inside_submit.items():
            ax.barh(y, width, left=start, height=_INSIDE_HEIGHT, color=_PHASE_COLOURS[phase],
                    edgecolor="white", linewidth=0.5)  # fmt: skip
    handles, names = ax.get_legend_handles_labels()
    if any(bar.inside_submit for bar in bars):
        handles.append(Patch(facecolor="white", edgecolor="#555555", label=_INSIDE_NOTE))
        names.append(_INSIDE_NOTE)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (each bar adds up to the median total)")
    fig.suptitle(title)
    fig.legend(handles, names, loc="outside lower center", fontsize="small", ncols=_LEGEND_COLUMNS)
    return fig


def cost_figure(rows: pd.DataFrame, *, title: str = "Price per second of video (USD)") -> Figure:
    """Horizontal bars of the real route's USD per second; unknown prices are said, not drawn."""
    table = cost_per_second(rows)
    fig = _new_figure(len(table))
    ax = fig.add_subplot()
    labels = list(table.index) or ["no jobs"]
    values = [fmt.number(v) or 0.0 for v in table["usd_per_s"]] or [0.0]
    ax.barh(labels, values, color=_COST_COLOUR)
    for y, price in enumerate(table["price"]):
        ax.annotate(
            price,
            (values[y], y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.invert_yaxis()
    ax.set_xlabel("USD per second of the video asked (an estimate)")
    fig.suptitle(title)
    return fig


def figure_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog), text drawn as paths."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def figure_png_data_uri(fig: Figure) -> str:
    """The figure as a ``data:image/png`` URI, for places that take an image, not markup."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
