"""The report's Quality section: the automatic metrics per route, the blind-vote leaderboard
(per group of votes too) and how each metric agrees with the votes, from what the run folder
already stores (``quality.sqlite`` and the votes).

`leaderboard_html` is also the `Arena`'s leaderboard, so the widget and the report show one
table.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abebeats_lab import fmt
from abebeats_lab._types import JobState
from abebeats_lab.views import rows as rows_view
from abebeats_lab.views.quality import quality_metrics, run_ratings, run_ratings_by
from abebeats_lab.views.report.page import escape, html_table, table_row
from abebeats_lab.views.report.routes import route_head, route_summaries
from abebeats_lab.views.summary import by_route, metric_value

if TYPE_CHECKING:
    import pandas as pd

    from abebeats_lab.quality.votes import Grouping

__all__ = ["leaderboard_html", "quality_html"]

_BETTER = {"higher": "higher", "lower": "lower", "neither": "–"}
_LEADERBOARD_HEADERS = ("#", "route", "rating", "95% interval", "votes", "wins", "ties",
                        "losses", "both bad")  # fmt: skip
_AGREEMENT_HEADERS = ("metric", "better", "Kendall's tau", "95% interval", "routes")
_NO_QUALITY = (
    "<p>No quality figures for this run yet. <code>abebeats-lab score RUN_DIR</code> (or "
    "<code>report --score</code>) computes the automatic metrics; the <code>Arena</code> "
    "widget collects blind votes.</p>"
)
_LEADERBOARD_NOTE = (
    "<p>Bradley–Terry ratings from blind pairwise votes, on the Elo scale: 1000 is the "
    "average route of this fit and 400 points are ten-fold odds of being preferred. A tie "
    "and &ldquo;both bad&rdquo; count as half a win for each side. The interval is a 95 % "
    "interval from the likelihood of the votes (wide with few votes, even unanimous ones): "
    "two routes whose intervals overlap are not told "
    "apart by these votes; more votes narrow it.</p>"
)
_AGREEMENT_NOTE = (
    "<p>How well each metric orders the routes as the votes do (Kendall's tau-b between the "
    "route's median and its rating; interval from resampling clips and votes). Near +1: the "
    "metric ranks routes as the raters did; for a lower-is-better metric agreement shows as "
    "near −1; an interval that spans 0 means these votes cannot tell. With few routes the "
    "interval is wide. A dash: fewer than two routes have both figures, or the metric does "
    "not vary across them.</p>"
)

_CLIP_UNMEASURED = (
    " It was not measured for this run: it needs the <code>[metrics]</code> extra and the CLIP "
    "weights (fetched at first use by <code>abebeats-lab score</code>, which says why when it "
    "cannot)."
)


def _g(value: float) -> str:
    return f"{value:.3g}"


def quality_html(rows: pd.DataFrame, run_dir: Path, run_id: str, by: Grouping | None = None) -> str:
    """Metric medians and spread per route, the leaderboard (per group too with ``by``), and
    metric–vote agreement."""
    ratings = run_ratings(run_dir, run_id) if run_id else None
    scored = "metrics_error" in rows.columns  # only when quality.sqlite holds the run's figures
    if not scored and ratings is None:
        return _NO_QUALITY
    parts = []
    if scored:
        parts.append("<h3>Automatic metrics per route</h3>" + _metrics_html(rows))
    if ratings is not None:
        parts.append("<h3>Blind votes</h3>" + leaderboard_html(ratings.leaderboard(), rows))
        parts.append(_LEADERBOARD_NOTE)
        if by is not None:
            parts.append(_grouped_html(rows, run_dir, run_id, by))
    if scored and ratings is not None:
        parts.append("<h3>Do the metrics agree with the votes?</h3>")
        parts.append(_agreement_html(rows, ratings) + _AGREEMENT_NOTE)
    return "".join(parts)


def _scored(rows: pd.DataFrame, name: str) -> dict[str, list[float]]:
    """Per route (sorted), the clips' values of one metric (missing ones left out)."""
    done = by_route(rows[rows["state"] == JobState.SUCCEEDED])
    values = {r: map(metric_value, (job.get(name) for job in done[r])) for r in done}
    return {r: [v for v in values[r] if v is not None] for r in sorted(values)}


def _metric_cell(line: dict[str, Any], name: str, unit: str) -> str:
    count = line.get(f"n_{name}") or 0
    if not count:
        return '<span class="na">–</span>'
    if unit == "bool":
        return f"{line[f'yes_{name}']} of {count}"
    spread = f"IQR {_g(line[f'p25_{name}'])}–{_g(line[f'p75_{name}'])}, n={count}"
    return f'{_g(line[f"median_{name}"])} <span class="spread">({spread})</span>'


def _metrics_html(rows: pd.DataFrame) -> str:
    summary = route_summaries(rows)
    head = route_head(summary)
    lines = []
    for name, metric in quality_metrics().items():
        if name not in rows.columns:
            continue
        cells = "".join(
            f"<td>{_metric_cell(line, name, metric.unit)}</td>" for line in summary.values()
        )
        label = f'<td title="{escape(metric.definition)}"><code>{escape(name)}</code></td>'
        lines.append(
            f"<tr>{label}<td>{_BETTER[metric.direction]}</td><td>{escape(metric.unit)}</td>{cells}</tr>"
        )
    table = (
        f'<table class="metrics"><thead><tr><th>metric</th><th>better</th><th>unit</th>{head}'
        f"</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )
    unmeasured = "clip_score" in rows.columns and not rows["clip_score"].notna().any()
    return table + (
        "<p>Median over the route's clips, with the interquartile range (IQR) and the number "
        "of clips measured; hover a metric for its definition. The weight-free metrics measure "
        "motion, flicker, sharpness, exposure and sound, not whether the video shows what the "
        "prompt asks. <code>clip_score</code> (CLIP ViT-B/32) is a coarse check of that: how "
        "well sampled frames match the prompt's words, blind to motion, order and counts."
        + (_CLIP_UNMEASURED if unmeasured else "")
        + "</p>"
    )


def _grouped_html(rows: pd.DataFrame, run_dir: Path, run_id: str, by: Grouping) -> str:
    """One leaderboard per group of votes, each fitted on that group's votes alone."""
    label = by if isinstance(by, str) else "group"
    parts = [f"<h3>Blind votes by {escape(label)}</h3>"]
    for group, ratings in run_ratings_by(run_dir, run_id, by).items():
        parts.append(f"<h4>{escape(label)}: <code>{escape(group)}</code></h4>")
        parts.append(leaderboard_html(ratings.leaderboard(), rows))
    parts.append(
        "<p>Each group is fitted on its own votes, so its ratings compare the routes within "
        "that group only; a group with few votes has wide intervals.</p>"
    )
    return "".join(parts)


def leaderboard_html(board: pd.DataFrame, rows: pd.DataFrame | None = None) -> str:
    """The leaderboard (`quality.ratings.Ratings.leaderboard`) as an HTML table, best first.

    ``rows`` (the job rows) mark emulated routes with the ``emulated`` label.
    """
    lines = []
    summary = route_summaries(rows) if rows is not None else {}
    for rank, line in enumerate(board.to_dict("records"), start=1):
        route = str(line["route"])
        emulated = summary.get(route, {}).get("emulated", False)
        low, high = line["low"], line["high"]
        interval = f"{low:.0f} – {high:.0f}" if low == low and high == high else fmt.MISSING
        cells = [
            str(rank),
            f"<code>{escape(route)}</code>{rows_view.badge(emulated)}",
            f"{line['rating']:.0f}",
            interval,
            *(str(int(line[k])) for k in ("votes", "wins", "ties", "losses", "both_bad")),
        ]
        lines.append(table_row(cells))
    return html_table("leaderboard", _LEADERBOARD_HEADERS, lines)


def _agreement_html(rows: pd.DataFrame, ratings: Any) -> str:
    from abebeats_lab.quality.ratings import agreement

    lines = []
    for name, metric in quality_metrics().items():
        if name not in rows.columns or metric.unit == "bool":
            continue
        values = {route: v for route, v in _scored(rows, name).items() if v}
        try:
            with warnings.catch_warnings():
                # A metric equal on every clip gives NaN taus: shown as a dash, not a warning.
                warnings.simplefilter("ignore", RuntimeWarning)
                found = agreement(values, ratings)
        except ValueError:  # fewer than two routes with both figures
            found = None
        if found is None or found.tau != found.tau:
            cells = [fmt.MISSING, fmt.MISSING, str(len(values))]
        else:
            low, high = (fmt.MISSING if v != v else f"{v:+.2f}" for v in (found.low, found.high))
            cells = [f"{found.tau:+.2f}", f"{low} – {high}", str(len(found.routes))]
        lines.append(table_row([f"<code>{escape(name)}</code>", _BETTER[metric.direction], *cells]))
    return html_table("agreement", _AGREEMENT_HEADERS, lines)
