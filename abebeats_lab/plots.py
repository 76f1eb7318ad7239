"""Charts of a comparison: timing breakdown per route and cost per second of video.

Why matplotlib (and not plotly): it is already a dependency of the ``jupyter`` extra, it
renders to a static inline SVG that needs no JavaScript (so a report opens offline in any
browser, and a notebook output stays small), and it is far lighter than plotly. Figures are
built with `matplotlib.figure.Figure` directly, never pyplot, so no global state is touched
and nothing pops up in a notebook by accident.

Every chart takes the job rows of a run (``Comparison.to_pandas()``) and labels each route
whose figures came from an emulator with ``(emulated)``.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "EMULATED_LABEL",
    "TIMING_PHASES",
    "cost_figure",
    "cost_note",
    "cost_per_second",
    "figure_png_data_uri",
    "figure_svg",
    "route_label",
    "timing_figure",
    "timing_table",
]

EMULATED_LABEL = "emulated"
TIMING_PHASES: tuple[str, ...] = ("submit_s", "queue_s", "run_s", "download_s")
"""The phases stacked in the timing chart, in the order a job lives through them."""
_PHASE_NAMES = {"submit_s": "submit", "queue_s": "queue", "run_s": "run", "download_s": "download"}
# Colour-blind safe (Okabe-Ito), so the stacked phases stay distinguishable for everyone.
_PHASE_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")
_COST_COLOUR = "#56B4E9"
_WIDTH_IN = 7.0
_ROW_IN = 0.45
_MIN_HEIGHT_IN = 1.8
_DPI = 96


def route_label(route: str, emulated: bool) -> str:
    """The route name as every chart and table shows it."""
    return f"{route} ({EMULATED_LABEL})" if emulated else route


def _labelled(rows: pd.DataFrame) -> pd.Series[str]:
    """One display label per row: the route, marked where the row was emulated."""
    emulated = rows["emulated"] if "emulated" in rows else [False] * len(rows)
    labels = [route_label(str(r), bool(e)) for r, e in zip(rows["route"], emulated, strict=True)]
    import pandas as pd

    return pd.Series(labels, index=rows.index, dtype="object")


def timing_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per phase per route label, over the jobs that succeeded."""
    import pandas as pd

    done = rows[rows["state"] == "succeeded"] if "state" in rows else rows
    if done.empty:
        return pd.DataFrame(columns=list(TIMING_PHASES), dtype="float64")
    frame = done[[c for c in TIMING_PHASES if c in done]].apply(pd.to_numeric, errors="coerce")
    frame = frame.reindex(columns=list(TIMING_PHASES))
    frame.insert(0, "label", _labelled(done))
    medians: pd.DataFrame = frame.groupby("label", sort=True).median().fillna(0.0)
    return medians


def cost_per_second(rows: pd.DataFrame) -> pd.DataFrame:
    """USD per second of delivered video per route label, and whether it is an estimate."""
    import pandas as pd

    done = rows[rows["state"] == "succeeded"] if "state" in rows else rows
    out: list[dict[str, Any]] = []
    for label, group in done.groupby(_labelled(done), sort=True):
        seconds = _numeric(group, "duration_s").sum()
        cost, estimated = _cost_of(group)
        usd = cost / seconds if seconds > 0 and cost is not None else None
        out.append({"label": label, "usd_per_s": usd, "estimate": estimated})
    return pd.DataFrame(out, columns=["label", "usd_per_s", "estimate"]).set_index("label")


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series[float]:
    """A column as floats (missing column or unparsable values become NaN)."""
    import pandas as pd

    if column not in frame:
        return pd.Series([float("nan")] * len(frame), index=frame.index, dtype="float64")
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def _cost_of(group: pd.DataFrame) -> tuple[float | None, bool]:
    """The price-table estimate for the real route where every job has one, else the cost.

    The estimate comes first because an emulated job costs nothing (``cost_usd`` is 0), yet
    what a reader compares is what the real route would charge.
    """
    for column, estimated in (("cost_estimate_usd", True), ("cost_usd", False)):
        values = _numeric(group, column)
        if len(values) and values.notna().all():
            return float(values.sum()), estimated
    return None, True


def _new_figure(n_rows: int) -> Figure:
    from matplotlib.figure import Figure

    height = max(_MIN_HEIGHT_IN, _ROW_IN * n_rows + 1.2)
    return Figure(figsize=(_WIDTH_IN, height), dpi=_DPI, layout="constrained")


def timing_figure(
    rows: pd.DataFrame, *, title: str = "Where the time goes (median per route)"
) -> Figure:
    """Stacked horizontal bars: submit, queue, run and download seconds per route."""
    table = timing_table(rows)
    fig = _new_figure(len(table))
    ax = fig.add_subplot()
    labels = list(table.index) or ["no finished jobs"]
    left = [0.0] * len(labels)
    for phase, colour in zip(TIMING_PHASES, _PHASE_COLOURS, strict=True):
        values = [float(v) for v in table[phase]] if len(table) else [0.0]
        ax.barh(labels, values, left=left, color=colour, label=_PHASE_NAMES[phase])
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(title)
    fig.legend(loc="outside lower center", fontsize="small", ncols=len(TIMING_PHASES))
    return fig


def cost_figure(rows: pd.DataFrame, *, title: str = "Cost per second of video (USD)") -> Figure:
    """Horizontal bars of USD per second of video; estimates and unknowns are said so."""
    table = cost_per_second(rows)
    fig = _new_figure(len(table))
    ax = fig.add_subplot()
    labels = list(table.index) or ["no finished jobs"]
    values = [0.0 if v is None or v != v else float(v) for v in table["usd_per_s"]] or [0.0]
    ax.barh(labels, values, color=_COST_COLOUR)
    for y, (value, estimate) in enumerate(zip(table["usd_per_s"], table["estimate"], strict=True)):
        ax.annotate(
            cost_note(value, bool(estimate)),
            (0, y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.invert_yaxis()
    ax.set_xlabel("USD per second of delivered video")
    ax.set_title(title)
    return fig


def cost_note(value: Any, estimate: bool) -> str:
    """A cost per second as text: ``$0.120/s``, ``(estimate)`` where it is one, or unknown."""
    if value is None or value != value:
        return "unknown price"
    return f"${float(value):.3f}/s" + (" (estimate)" if estimate else "")


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
