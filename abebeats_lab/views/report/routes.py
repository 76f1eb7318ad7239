"""The per-route sections of the report: the request settings, the summary per route and the
same model across resellers; and the per-route reading of rows the other sections share.

The figures come from `views.summary.summarize`, as in the CLI and the panel, so the report can
never disagree with them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from abebeats_lab import fmt
from abebeats_lab.capabilities import USER_SOURCE, model_of
from abebeats_lab.views import rows as rows_view
from abebeats_lab.views.report.page import escape, html_table, section, table_row
from abebeats_lab.views.summary import SETTING_FIELDS, by_route, setting_cells, summarize

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "prompts",
    "route_head",
    "route_summaries",
    "same_model_sections",
    "settings_html",
    "settings_of",
    "summary_html",
]

_SUMMARY_HEADERS = ("route", "succeeded", "median total", "p90 total", "median queue",
                    "median run", "price per second", "cost of this run")  # fmt: skip


def settings_of(raw: Any) -> dict[str, Any]:
    """A row's settings (stored as a dict or as JSON text) as a dict; ``{}`` when absent."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw.strip().startswith("{"):
        loaded = json.loads(raw)
        return loaded if isinstance(loaded, dict) else {}
    return {}


def settings_html(rows: pd.DataFrame) -> str:
    """The prompts, then the settings sent to each route, adjusted ones highlighted."""
    items = "".join(f"<li><b>#{i}</b> {escape(p)}</li>" for i, p in prompts(rows))
    columns = [column for _, column in SETTING_FIELDS]
    lines = []
    for route, mine in sorted(by_route(rows).items()):
        first = mine[0]
        cells = [f"<code>{escape(route)}</code>"]
        for _, text, changed in setting_cells(
            settings_of(first.get("settings")), settings_of(first.get("adjusted"))
        ):
            mark = ' class="adjusted" title="adjusted to what the route allows"'
            cells.append(f"<td{mark if changed else ''}>{escape(text)}</td>")
        source, date = first.get("price_source") or fmt.MISSING, first.get("price_date")
        cells.append(f"<td>{escape(source)}{f' ({escape(date)})' if date else ''}</td>")
        lines.append(f"<tr><td>{cells[0]}</td>{''.join(cells[1:])}</tr>")
    table = html_table("settings", ("route", *columns, "price source"), lines)
    return (
        f"<h3>Prompts</h3><ol class='prompts'>{items}</ol><h3>Settings sent per route</h3>"
        f"{table}<p>Highlighted settings were adjusted to what the route allows.</p>"
    )


def prompts(rows: pd.DataFrame) -> list[tuple[int, str]]:
    """The run's prompts with their index, in prompt order."""
    pairs = rows[["prompt_index", "prompt"]].drop_duplicates().sort_values("prompt_index")
    return [(int(i), str(p)) for i, p in pairs.itertuples(index=False, name=None)]


def route_summaries(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """`views.summary.summarize` by route, routes in name order: every per-route figure shown."""
    return {str(line["route"]): line for line in sorted(
        summarize(rows), key=lambda line: str(line["route"]))}  # fmt: skip


def route_head(summary: dict[str, dict[str, Any]]) -> str:
    """Header cells, one per route of ``summary``, emulated ones labelled."""
    marked = {r: rows_view.badge(line["emulated"]) for r, line in summary.items()}
    return "".join(f"<th><code>{escape(r)}</code>{badge}</th>" for r, badge in marked.items())


def summary_html(rows: pd.DataFrame) -> str:
    """The summary table: successes, times, price and cost per route."""
    lines = []
    for line in route_summaries(rows).values():
        price = line["price_text"]
        cost = fmt.money(line["cost_usd"])
        if line["emulated"]:
            cost += f" (real route: {fmt.money(line['would_be_usd'])})"
        if line["usage_text"]:
            cost += f"; {line['usage_text']}"
        cells = [
            f"<code>{escape(line['route'])}</code>{rows_view.badge(line['emulated'])}",
            f"{line['succeeded']}/{line['jobs']}",
            fmt.seconds(line["median_total_s"]),
            fmt.seconds(line["p90_total_s"]),
            fmt.seconds(line["median_queue_s"]),
            fmt.seconds(line["median_run_s"]),
            escape(price),
            escape(cost),
        ]
        lines.append(table_row(cells))
    note = (
        "<p>Times are over the jobs that succeeded, from submit to the file on disk; the timing "
        "chart's bars add up to the median total. Price per second is the real route's price "
        "for the settings asked.</p>"
    )
    return html_table("summary", _SUMMARY_HEADERS, lines) + note


_SAME_MODEL_HEADERS = (
    "route", "price/s", "median queue", "median run", "median detect lag", "success rate",
)  # fmt: skip


def same_model_sections(rows: pd.DataFrame) -> list[str]:
    """ "Same model across resellers": one table per model the run sent to several routes."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for line in summarize(rows):
        model = model_of(str(line["route"]))
        if model:
            by_model.setdefault(model, []).append(line)
    tables = []
    for model, lines in sorted(by_model.items()):
        if len(lines) < 2:
            continue
        body = [_same_model_row(line) for line in sorted(lines, key=lambda x: str(x["route"]))]
        title = f"<h3>{escape(model)} on {len(lines)} routes</h3>"
        tables.append(title + html_table("same-model", _SAME_MODEL_HEADERS, body))
    if not tables:
        return []
    note = (
        "<p>One model sold by several resellers, the same prompt and settings on each: price "
        "per second of the video asked for, and medians over the jobs that succeeded.</p>"
    )
    return [section("Same model across resellers", "".join(tables) + note)]


def _same_model_row(line: dict[str, Any]) -> str:
    price = fmt.rate(line["price_usd_per_s"])
    if line["price_usd_per_s"] is not None and line["price_source"] == USER_SOURCE:
        price += " (user price)"
    rate = line["success_rate"]
    return table_row(
        [
            f"<code>{escape(line['route'])}</code>{rows_view.badge(line['emulated'])}",
            escape(price),
            fmt.seconds(line["median_queue_s"]),
            fmt.seconds(line["median_run_s"]),
            fmt.seconds(line["median_detect_lag_s"]),
            fmt.MISSING if rate is None else f"{rate:.0%} ({line['succeeded']}/{line['jobs']})",
        ]
    )
