"""A comparison's result: its rows, a per-route summary, and a side-by-side notebook view.

`Comparison.rows` are `store.JobRow` frozen dataclasses (one per prompt × route × repeat);
`to_rows` gives plain dicts for the HTML report, `to_pandas` a DataFrame. Figures from
emulated routes carry ``emulated=True`` everywhere they appear.
"""

from __future__ import annotations

import base64
import html
import math
import os
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from abebeats_lab import fmt
from abebeats_lab._types import JobState, Output, Probe, VideoRequest
from abebeats_lab.capabilities import USER_SOURCE
from abebeats_lab.run import costs
from abebeats_lab.run.costs import CostEstimate
from abebeats_lab.store import JobRow
from abebeats_lab.views.rows import job_cost_text, plain, row_html, video_path

if TYPE_CHECKING:
    import pandas as pd

    from abebeats_lab.quality.catalogue import Metric
    from abebeats_lab.quality.ratings import Ratings
    from abebeats_lab.quality.votes import Grouping

Rows: TypeAlias = "Sequence[JobRow] | Sequence[Mapping[str, Any]] | pd.DataFrame"
"""Job rows as any view gets them: `JobRow` objects, plain dicts, or a DataFrame."""

__all__ = [
    "RATING_COLUMNS",
    "Comparison",
    "by_route",
    "conformance",
    "job_cost_text",
    "metric_value",
    "output_fields",
    "percentile",
    "quality_metrics",
    "records",
    "run_ratings",
    "run_ratings_by",
    "setting_cells",
    "settings_text",
    "summarize",
    "summary_lines",
    "with_quality",
]

P90 = 0.9
QUARTILES = (0.25, 0.75)
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
    amount = fmt.money(sum(line["would_be_usd"] or 0.0 for line in lines))
    return f"at least {amount} (no price known for {', '.join(unknown)})" if unknown else amount


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
        """Rows as a DataFrame (pandas is imported only now), with the run's quality figures.

        Where ``quality.sqlite`` holds metrics (`quality.metrics.score`), each job gets one
        column per metric (and ``metrics_error``); where ``votes.sqlite`` holds votes of this
        run, each job gets its route's ``rating``, ``rating_low``, ``rating_high`` (95 %) and
        ``rating_votes``. A figure that was never measured is missing (NaN), never zero.
        """
        import pandas as pd

        return with_quality(pd.DataFrame(self.to_rows()), self.run_dir, self.run_id)

    def summary(self) -> pd.DataFrame:
        """Per-route figures (see `summarize`) as a DataFrame indexed by route.

        With stored metrics, ``median_<metric>`` (and ``p25_``, ``p75_``, ``n_``) per numeric
        metric; with votes, the route's ``rating``, ``rating_low``, ``rating_high`` and
        ``rating_votes`` (see `to_pandas`).
        """
        import pandas as pd

        return pd.DataFrame(summarize(self.to_pandas())).set_index("route")

    def summary_text(self, *, width: int = SUMMARY_WIDTH) -> str:
        """The per-route summary as a plain-text table for a terminal (see `summary_lines`)."""
        return "\n".join(summary_lines(self.rows, width=width))

    def describe_plan(self) -> str:
        """The plan as text (``--dry-run``): jobs per route, settings, estimated cost and time."""
        kind = "plan" if self.dry_run else "run"
        lines = [f"{kind} {self.run_id}: {len(self.rows)} jobs"]
        for route, mine in by_route(self.rows).items():
            first = mine[0]
            cost = costs.route_cost(mine)
            shown = settings_text(first.get("settings") or {}, first.get("adjusted"))
            lines.append(
                f"  {route}: {len(mine)} jobs, {fmt.money(cost.planned_usd)} ({cost.note}), "
                f"price {cost.price_text()}, {shown}"
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

    def to_html(self, *, embed: bool = False) -> str:
        """One column per route, one line per prompt and repeat: videos with their figures.

        Videos are referenced by their path relative to the working directory, which is the
        notebook's folder in Jupyter, so JupyterLab plays them and a notebook stays small;
        ``embed=True`` inlines them as ``data:`` URIs, for sharing a notebook on its own.
        """
        jobs = records(self.to_pandas())  # with the quality figures, as the panel shows them
        routes = list(dict.fromkeys(str(r["route"]) for r in jobs))
        cells = {(r["prompt_index"], r["repeat"], r["route"]): r for r in jobs}
        head = "".join(f"<th>{html.escape(route)}</th>" for route in routes)
        body = []
        for index, repeat in sorted({(r["prompt_index"], r["repeat"]) for r in jobs}):
            prompt = next(r["prompt"] for r in jobs if r["prompt_index"] == index)
            label = f"<th>#{index} r{repeat}<br><small>{html.escape(prompt)}</small></th>"
            tds = "".join(self._cell(cells.get((index, repeat, rt)), embed) for rt in routes)
            body.append(f"<tr>{label}{tds}</tr>")
        title = html.escape(repr(self))
        extra = f"<p>{html.escape(self.estimate.describe())}</p>" if self.estimate else ""
        return (
            f"<div><p><b>{title}</b></p>{extra}<table><tr><th></th>{head}</tr>"
            f"{''.join(body)}</table></div>"
        )

    def _cell(self, row: Mapping[str, Any] | None, embed: bool) -> str:
        if row is None:
            return "<td></td>"
        return (
            f"<td style='vertical-align:top'>{row_html(row, video_src=self._src(row, embed))}</td>"
        )

    def _src(self, row: Mapping[str, Any], embed: bool) -> str | None:
        path = None if self.run_dir is None else video_path(row, self.run_dir)
        if path is None:
            return None
        if embed:
            return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        return Path(os.path.relpath(path.resolve(), Path.cwd())).as_posix()


# -- quality: stored metrics and blind-vote ratings, joined to the rows ------------------------

RATING_COLUMNS = ("rating", "rating_low", "rating_high", "rating_votes")
"""Per route, from the Bradley–Terry fit of the run's votes: rating, its 95 % interval, votes."""
_JOB_KEY = ["prompt_index", "route", "repeat"]


def quality_metrics() -> dict[str, Metric]:
    """The metric records (`quality.metrics.METRICS`), in the order every view lists them."""
    from abebeats_lab.quality.catalogue import METRICS

    return dict(METRICS)


def run_ratings(run_dir: Path | None, run_id: str) -> Ratings | None:
    """The `quality.ratings.Ratings` of this run's votes in ``votes.sqlite``; None without votes.

    Nothing is created in the run folder: no votes file means no ratings.
    """
    if run_dir is None:
        return None
    from abebeats_lab.quality.ratings import fit
    from abebeats_lab.quality.votes import read_votes

    votes = [v for v in read_votes(run_dir) if v.run_id == run_id]
    return fit(votes) if votes else None


def run_ratings_by(run_dir: Path | None, run_id: str, by: Grouping) -> dict[str, Ratings]:
    """This run's votes fitted per group (`quality.ratings.fit_by`): ``by`` is a setting's
    name, a prompt → tag mapping or a function of the vote (`quality.votes.grouping`)."""
    if run_dir is None:
        return {}
    from abebeats_lab.quality.ratings import fit_by
    from abebeats_lab.quality.votes import grouping, read_votes

    votes = [v for v in read_votes(run_dir) if v.run_id == run_id]
    return fit_by(votes, grouping(by, run_dir)) if votes else {}


def _stored_scores(run_dir: Path | None, run_id: str) -> pd.DataFrame | None:
    """The metrics ``quality.sqlite`` holds for the run, or None when nothing was scored."""
    if run_dir is None:
        return None
    from abebeats_lab.quality.scores import QUALITY_DB, load_scores

    if not (run_dir / QUALITY_DB).is_file():
        return None
    return load_scores(run_dir, run_id)


def with_quality(frame: pd.DataFrame, run_dir: Path | None, run_id: str) -> pd.DataFrame:
    """``frame`` (one row per job) with the stored metrics per job and the ratings per route."""
    if frame.empty:
        return frame
    scores = _stored_scores(run_dir, run_id)
    if scores is not None:
        # A metric the store already has a column for (has_audio, from the probe) stays as is.
        names = [n for n in quality_metrics() if n not in frame.columns]
        wanted = scores[[*_JOB_KEY, *names, "error"]].rename(columns={"error": "metrics_error"})
        frame = frame.merge(wanted, on=_JOB_KEY, how="left")
    ratings = run_ratings(run_dir, run_id)
    if ratings is not None:
        board = ratings.leaderboard()[["route", "rating", "low", "high", "votes"]]
        board.columns = ["route", *RATING_COLUMNS]
        frame = frame.merge(board, on="route", how="left")
    return frame
