"""Per-route figures every view shows: rows as records, grouped, summarized, as text.

`summarize` is the one per-route summary (success rate, time medians and p90, price and cost,
quality figures where stored); `summary_lines` its terminal table; `setting_cells` and
`settings_text` the settings a route was sent, as every view shows them.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from abebeats_lab import fmt
from abebeats_lab._types import JobState
from abebeats_lab.capabilities import USER_SOURCE
from abebeats_lab.run import costs
from abebeats_lab.store import JobRow
from abebeats_lab.views.quality import RATING_COLUMNS, quality_metrics
from abebeats_lab.views.rows import plain

if TYPE_CHECKING:
    import pandas as pd

Rows: TypeAlias = "Sequence[JobRow] | Sequence[Mapping[str, Any]] | pd.DataFrame"
"""Job rows as any view gets them: `JobRow` objects, plain dicts, or a DataFrame."""

__all__ = [
    "EMULATED_MARK",
    "SETTING_FIELDS",
    "SUMMARY_WIDTH",
    "Rows",
    "by_route",
    "metric_value",
    "percentile",
    "records",
    "setting_cells",
    "settings_text",
    "summarize",
    "summary_lines",
]

P90 = 0.9
QUARTILES = (0.25, 0.75)


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


def records(rows: Rows) -> list[dict[str, Any]]:
    """Job rows as plain dicts, whatever they came as (`JobRow`, dicts, a DataFrame).

    pandas' NaN becomes None, so every view sees one kind of "missing".
    """
    items: Sequence[Any] = rows if isinstance(rows, Sequence) else rows.to_dict("records")
    return [plain(item) for item in items]


def by_route(rows: Rows) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by route, in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records(rows):
        groups.setdefault(str(record["route"]), []).append(record)
    return groups


def _figures(rows: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    return [v for r in rows if (v := fmt.number(r.get(name))) is not None]


def _route_summary(route: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if r.get("state") == JobState.SUCCEEDED]
    totals = _figures(done, "total_s")
    cost = costs.route_cost(rows)
    return {
        "route": route,
        "emulated": any(bool(r.get("emulated")) for r in rows),
        "jobs": len(rows),
        "succeeded": len(done),
        "success_rate": len(done) / len(rows) if rows else None,
        "median_total_s": _median(totals),
        "p90_total_s": percentile(totals, P90),
        "median_queue_s": _median(_figures(done, "queue_s")),
        "median_run_s": _median(_figures(done, "run_s")),
        "median_detect_lag_s": _median(_figures(done, "detect_lag_s")),
        "price_usd_per_s": cost.usd_per_s,
        "price_source": cost.source,
        "price_text": cost.price_text(),
        "cost_usd": cost.charged_usd,
        "would_be_usd": cost.would_be_usd,
        "usage_text": costs.usage_text(cost.usage),
        **(_metric_summary(done) if rows and "metrics_error" in rows[0] else {}),
        **({c: rows[0].get(c) for c in RATING_COLUMNS} if rows and "rating" in rows[0] else {}),
    }


def metric_value(raw: Any) -> float | None:
    """A metric value as a float (a yes/no metric as 1 or 0), None when it is missing."""
    if isinstance(raw, bool) or getattr(getattr(raw, "dtype", None), "kind", "") == "b":
        return float(raw)
    return fmt.number(raw)


def _metric_summary(done: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per stored metric, over the clips measured: ``n_``; ``yes_`` for a yes/no metric, else
    ``median_``, ``p25_`` and ``p75_`` (the interquartile range)."""
    out: dict[str, Any] = {}
    for name, metric in quality_metrics().items():
        values = [v for r in done if (v := metric_value(r.get(name))) is not None]
        out[f"n_{name}"] = len(values)
        if metric.unit == "bool":
            out[f"yes_{name}"] = sum(1 for v in values if v)
            continue
        out[f"median_{name}"] = _median(values)
        out[f"p25_{name}"] = percentile(values, QUARTILES[0])
        out[f"p75_{name}"] = percentile(values, QUARTILES[1])
    return out


def summarize(rows: Rows) -> list[dict[str, Any]]:
    """Per route (first-seen order): success rate, time medians and p90, price and cost.

    Times are over the jobs that succeeded; ``price_usd_per_s`` is the real route's price
    of the settings asked (None when unknown), ``cost_usd`` what the submitted jobs are
    charged and ``would_be_usd`` what they cost on the real route (`costs.route_cost`).
    Rows with quality figures (`Comparison.to_pandas`) add the metrics of the clips
    (`_metric_summary`) and the route's blind-vote rating (`RATING_COLUMNS`). Every view
    reads its per-route figures here.
    """
    return [_route_summary(route, group) for route, group in by_route(rows).items()]


_SUMMARY_HEADERS = ("route", "ok", "median", "p90", "queue", "run", "price/s", "cost")
_FIGURE_COLUMNS = (1, 2, 3, 4, 5, 6, 7)
EMULATED_MARK = " *"
SUMMARY_WIDTH = 100
"""The CLI's summary fits a 100-column terminal; the route column wraps to make it fit."""


def summary_lines(rows: Rows, *, width: int = SUMMARY_WIDTH) -> list[str]:
    """The per-route summary as text no wider than ``width``, with footnotes."""
    lines = summarize(rows)
    cells = [
        [
            line["route"] + (EMULATED_MARK if line["emulated"] else ""),
            f"{line['succeeded']}/{line['jobs']}",
            fmt.seconds(line["median_total_s"]),
            fmt.seconds(line["p90_total_s"]),
            fmt.seconds(line["median_queue_s"]),
            fmt.seconds(line["median_run_s"]),
            fmt.rate(line["price_usd_per_s"])
            + (" (user)" if line["price_source"] == USER_SOURCE else ""),
            fmt.money(line["cost_usd"]),
        ]
        for line in lines
    ]
    text = fmt.table(_SUMMARY_HEADERS, cells, max_width=width, right=_FIGURE_COLUMNS)
    notes = ["median, p90: seconds per job from submit to file on disk; queue, run: medians"]
    if any(line["emulated"] for line in lines):
        notes.append(
            f"{EMULATED_MARK.strip()} emulated: measured against the built-in emulator, not the "
            "provider, and not charged; on the real routes these jobs would cost "
            + _would_be(lines)
        )
    for note in notes:
        text += textwrap.wrap(note, width, subsequent_indent="  ", break_on_hyphens=False)
    return text


def _would_be(lines: Sequence[Mapping[str, Any]]) -> str:
    unknown = [line["route"] for line in lines if line["would_be_usd"] is None]
    known = sum(line["would_be_usd"] or 0.0 for line in lines)
    amount = costs.bound_text(known, partial=bool(unknown))
    return f"{amount} (no price known for {', '.join(unknown)})" if unknown else amount


SETTING_FIELDS: tuple[tuple[str, str], ...] = (
    ("duration_s", "duration"),
    ("aspect_ratio", "ratio"),
    ("resolution", "resolution"),
    ("seed", "seed"),
    ("generate_audio", "audio"),
    ("negative_prompt", "negative prompt"),
    ("image", "image"),
)
"""The settings a route is sent, in the order every view shows them (field, column name)."""


def _setting(name: str, raw: Any) -> str:
    if name == "duration_s" and fmt.number(raw) is not None:
        return f"{fmt.value(raw)}s"
    if name == "image":
        return "yes" if raw else fmt.MISSING  # a data: URI is no figure for a person
    return fmt.value(raw)


def setting_cells(
    settings: Mapping[str, Any], adjusted: Mapping[str, Any] | None
) -> list[tuple[str, str, bool]]:
    """``(column, text, adjusted)`` per setting: ``5s (asked 4s)`` where a route changed what
    was asked, ``8s (route default)`` where nothing was asked (not an adjustment)."""
    out = []
    for name, column in SETTING_FIELDS:
        text = _setting(name, settings.get(name))
        change = (adjusted or {}).get(name)
        changed = False
        if isinstance(change, Sequence) and not isinstance(change, str) and len(change) == 2:
            if change[0] is None:
                text = f"{_setting(name, change[1])} (route default)"
            else:
                text = f"{_setting(name, change[1])} (asked {_setting(name, change[0])})"
                changed = True
        out.append((column, text, changed))
    return out


def settings_text(settings: Mapping[str, Any], adjusted: Mapping[str, Any] | None) -> str:
    """The settings on one line: ``5s (asked 4s), 16:9, 720p, seed 7``; defaults left out."""
    parts = []
    for column, text, changed in setting_cells(settings, adjusted):
        if text in (fmt.MISSING, "no") and not changed:
            continue
        parts.append(text if column in ("duration", "ratio", "resolution") else f"{column} {text}")
    return ", ".join(parts)
