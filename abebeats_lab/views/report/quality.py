"""A self-contained HTML report of one run: one file that opens offline in any browser.

Everything is inline: the CSS, the charts (SVG from `plots`), and each video below
``embed_max_bytes`` (as a ``data:`` URI); bigger videos are referenced relative to the
report, so the run directory can be moved or zipped whole. Sections: request settings,
per-route summary, timing breakdown, cost per second of video, output conformance, a video
grid (prompt rows × route columns), output conformance, quality (automatic metrics per route,
the blind-vote leaderboard and how each metric agrees with the votes, from what the run folder
already stores), failures with reasons, environment and versions. Every
figure from an emulated route carries the label ``emulated``. Figures are written by `fmt`,
costs come from `costs.route_cost` and the summary from `comparison.summarize`, as in the CLI
and the panel, so the report can never disagree with them.

``abebeats-lab report RUN_DIR [--out FILE] [--score]`` calls `write_report`.
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import re
import sys
import urllib.parse
import warnings
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abebeats_lab import fmt
from abebeats_lab.capabilities import USER_SOURCE, model_of
from abebeats_lab.errors import LabError
from abebeats_lab.views import comparison, plots
from abebeats_lab.views import rows as rows_view

if TYPE_CHECKING:
    import pandas as pd

    from abebeats_lab.quality.votes import Grouping

__all__ = ["DEFAULT_NAME", "EMBED_MAX_BYTES", "leaderboard_html", "render_report", "write_report"]

DEFAULT_NAME = "report.html"
EMBED_MAX_BYTES = 4 * 1024 * 1024
"""Videos up to 4 MiB go inside the file: a short preview clip fits, a 1080p master does not."""
_OPTIONAL_VERSIONS = ("ipywidgets", "runwayml", "fal-client")
"""Shown beside the base dependencies when installed (the panel; the SDKs the tests use)."""
_CHECKS = ("duration_ok", "ratio_ok", "resolution_ok")
_ASKED = ("duration_s", "aspect_ratio", "resolution")
_SUMMARY_HEADERS = ("route", "succeeded", "median total", "p90 total", "median queue",
                    "median run", "price per second", "cost of this run")  # fmt: skip
_CONFORMANCE_HEADERS = ("route", "job", "asked", "got", "duration", "ratio", "resolution")
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d1d1f;
 background:#fafafa}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
section,header{max-width:1400px}
table{border-collapse:collapse;margin:8px 0;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#f0f0f0}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.badge{display:inline-block;background:#fff3cd;color:#7a5b00;border:1px solid #e6c65c;
 border-radius:8px;padding:0 6px;font-size:11px;font-weight:600}
.banner{background:#fff8e1;border-left:4px solid #e6c65c;padding:8px 12px}
.chart svg{max-width:100%;height:auto}
.chart{margin:0}
.grid-wrap{overflow-x:auto}
.video-grid th.prompt{max-width:220px;font-weight:normal}
.video-grid video{width:320px;max-width:100%;display:block;background:#000}
.abebeats-cell{margin-bottom:8px}.abebeats-figures caption{text-align:left}
.adjusted{background:#fff3cd}
.error{color:#a00000}.ok{color:#137333}.bad{color:#a00000;font-weight:700}.na{color:#999}
.spread{color:#555;font-size:12px}
"""


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    run_id: str | None = None,
    embed_max_bytes: int = EMBED_MAX_BYTES,
    score: bool = False,
    by: Grouping | None = None,
) -> Path:
    """Write the report of a run in ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``).

    ``run_id`` picks the run (default: the latest with jobs); a run without jobs is a
    `LabError`. Returns the path written. The file is written under a temporary name and
    renamed, so a reader never sees half a report. The Quality section shows the metrics
    already stored in the run folder; ``score=True`` computes the missing ones first
    (`quality.metrics.score`, a process pool: seconds per clip). ``by`` adds a leaderboard per
    group of votes: a setting's name (``"resolution"``), a prompt → tag mapping, or a function
    of the vote (`quality.votes.grouping`).
    """
    from abebeats_lab.run.api import load_run

    run_path = Path(run_dir).resolve()
    comparison = load_run(run_path, run_id)
    if not comparison.rows:
        raise LabError(f"run {comparison.run_id} in {run_path} has no jobs: nothing to report")
    if score:
        from abebeats_lab.quality.scores import score as score_run

        score_run(run_path, run_id=str(comparison.run_id))
    target = Path(out).resolve() if out is not None else run_path / DEFAULT_NAME
    text = render_report(
        comparison.to_pandas(),
        run_dir=run_path,
        base=target.parent,
        run_id=str(comparison.run_id),
        embed_max_bytes=embed_max_bytes,
        by=by,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)  # never leave half a report behind
        raise
    return target


def render_report(
    rows: pd.DataFrame,
    *,
    run_dir: Path,
    base: Path,
    run_id: str = "",
    embed_max_bytes: int = EMBED_MAX_BYTES,
    by: Grouping | None = None,
) -> str:
    """The report as one HTML string; video links are made relative to ``base`` (``by``: as
    in `write_report`)."""
    emulated = _any(rows, "emulated")
    sections = [
        _header(run_id, rows, emulated),
        _section("Request settings", _settings_html(rows)),
        _section("Summary per route", _summary_html(rows)),
        *_same_model_sections(rows),
        _section("Timing breakdown", _figure(plots.timing_figure(rows), "timing-chart")),
        _section("Cost per second of video", _figure(plots.cost_figure(rows), "cost-chart")),
        _section("Videos", _grid_html(rows, run_dir, base, embed_max_bytes)),
        _section("Output conformance", _conformance_html(rows)),
        _section("Quality", _quality_html(rows, run_dir, run_id, by)),
        _section("Failures", _failures_html(rows)),
        _section("Environment", _environment_html()),
    ]
    title = f"abebeats-lab report {run_id}".strip()
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(css_class: str, headers: tuple[str, ...], lines: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(lines)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _section(title: str, body: str) -> str:
    slug = title.lower().replace(" ", "-")
    return f'<section id="{slug}"><h2>{_e(title)}</h2>{body}</section>'


def _any(rows: pd.DataFrame, column: str) -> bool:
    return column in rows and bool(rows[column].fillna(False).astype(bool).any())


def _label(row: Any) -> str:
    return f"<code>{_e(row['route'])}</code>{rows_view.badge(row.get('emulated'))}"


def _header(run_id: str, rows: pd.DataFrame, emulated: bool) -> str:
    states = rows["state"].value_counts().to_dict() if "state" in rows else {}
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    banner = (
        '<p class="banner">Figures marked <span class="badge">emulated</span> come from the '
        "built-in emulator on 127.0.0.1, not from the real provider: they test the tooling, "
        "they say nothing about the provider.</p>"
        if emulated
        else ""
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<header><h1>abebeats-lab report</h1><p>run <code>{_e(run_id)}</code> · "
        f"{len(rows)} jobs ({_e(counts)}) · written {when}</p>{banner}</header>"
    )


def _settings_of(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw.strip().startswith("{"):
        loaded = json.loads(raw)
        return loaded if isinstance(loaded, dict) else {}
    return {}


def _settings_html(rows: pd.DataFrame) -> str:
    prompts = _prompts(rows)
    items = "".join(f"<li><b>#{i}</b> {_e(p)}</li>" for i, p in prompts)
    columns = [column for _, column in comparison.SETTING_FIELDS]
    lines = []
    for route, mine in sorted(comparison.by_route(rows).items()):
        first = mine[0]
        cells = [f"<code>{_e(route)}</code>"]
        for _, text, changed in comparison.setting_cells(
            _settings_of(first.get("settings")), _settings_of(first.get("adjusted"))
        ):
            mark = ' class="adjusted" title="adjusted to what the route allows"'
            cells.append(f"<td{mark if changed else ''}>{_e(text)}</td>")
        source, date = first.get("price_source") or fmt.MISSING, first.get("price_date")
        cells.append(f"<td>{_e(source)}{f' ({_e(date)})' if date else ''}</td>")
        lines.append(f"<tr><td>{cells[0]}</td>{''.join(cells[1:])}</tr>")
    table = _table("settings", ("route", *columns, "price source"), lines)
    return (
        f"<h3>Prompts</h3><ol class='prompts'>{items}</ol><h3>Settings sent per route</h3>"
        f"{table}<p>Highlighted settings were adjusted to what the route allows.</p>"
    )


def _prompts(rows: pd.DataFrame) -> list[tuple[int, str]]:
    pairs = rows[["prompt_index", "prompt"]].drop_duplicates().sort_values("prompt_index")
    return [(int(i), str(p)) for i, p in pairs.itertuples(index=False, name=None)]


def _summary(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """`comparison.summarize` by route, routes in name order: every per-route figure shown."""
    return {str(line["route"]): line for line in sorted(
        comparison.summarize(rows), key=lambda line: str(line["route"]))}  # fmt: skip


def _route_head(summary: dict[str, dict[str, Any]]) -> str:
    marked = {r: rows_view.badge(line["emulated"]) for r, line in summary.items()}
    return "".join(f"<th><code>{_e(r)}</code>{badge}</th>" for r, badge in marked.items())


def _summary_html(rows: pd.DataFrame) -> str:
    lines = []
    for line in _summary(rows).values():
        price = line["price_text"]
        cost = fmt.money(line["cost_usd"])
        if line["emulated"]:
            cost += f" (real route: {fmt.money(line['would_be_usd'])})"
        if line["usage_text"]:
            cost += f"; {line['usage_text']}"
        cells = [
            f"<code>{_e(line['route'])}</code>{rows_view.badge(line['emulated'])}",
            f"{line['succeeded']}/{line['jobs']}",
            fmt.seconds(line["median_total_s"]),
            fmt.seconds(line["p90_total_s"]),
            fmt.seconds(line["median_queue_s"]),
            fmt.seconds(line["median_run_s"]),
            _e(price),
            _e(cost),
        ]
        lines.append(_row(cells))
    note = (
        "<p>Times are over the jobs that succeeded, from submit to the file on disk; the timing "
        "chart's bars add up to the median total. Price per second is the real route's price "
        "for the settings asked.</p>"
    )
    return _table("summary", _SUMMARY_HEADERS, lines) + note


_SAME_MODEL_HEADERS = (
    "route", "price/s", "median queue", "median run", "median detect lag", "success rate",
)  # fmt: skip


def _same_model_sections(rows: pd.DataFrame) -> list[str]:
    """ "Same model across resellers": one table per model the run sent to several routes."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for line in comparison.summarize(rows):
        model = model_of(str(line["route"]))
        if model:
            by_model.setdefault(model, []).append(line)
    tables = []
    for model, lines in sorted(by_model.items()):
        if len(lines) < 2:
            continue
        body = [_same_model_row(line) for line in sorted(lines, key=lambda x: str(x["route"]))]
        title = f"<h3>{_e(model)} on {len(lines)} routes</h3>"
        tables.append(title + _table("same-model", _SAME_MODEL_HEADERS, body))
    if not tables:
        return []
    note = (
        "<p>One model sold by several resellers, the same prompt and settings on each: price "
        "per second of the video asked for, and medians over the jobs that succeeded.</p>"
    )
    return [_section("Same model across resellers", "".join(tables) + note)]


def _same_model_row(line: dict[str, Any]) -> str:
    price = fmt.rate(line["price_usd_per_s"])
    if line["price_usd_per_s"] is not None and line["price_source"] == USER_SOURCE:
        price += " (user price)"
    rate = line["success_rate"]
    return _row(
        [
            f"<code>{_e(line['route'])}</code>{rows_view.badge(line['emulated'])}",
            _e(price),
            fmt.seconds(line["median_queue_s"]),
            fmt.seconds(line["median_run_s"]),
            fmt.seconds(line["median_detect_lag_s"]),
            fmt.MISSING if rate is None else f"{rate:.0%} ({line['succeeded']}/{line['jobs']})",
        ]
    )


def _figure(fig: Any, css_class: str) -> str:
    return f'<figure class="chart {css_class}">{plots.figure_svg(fig)}</figure>'


def _video_src(row: Any, run_dir: Path, base: Path, embed_max_bytes: int) -> str | None:
    path = rows_view.video_path(row, run_dir)
    if path is None:
        return None
    if path.stat().st_size <= embed_max_bytes:
        return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return urllib.parse.quote(Path(os.path.relpath(path, base)).as_posix())


def _grid_html(rows: pd.DataFrame, run_dir: Path, base: Path, embed_max_bytes: int) -> str:
    summary = _summary(rows)
    head, routes = _route_head(summary), list(summary)
    body = []
    for index, prompt in _prompts(rows):
        cells = []
        for route in routes:
            jobs = rows[(rows["prompt_index"] == index) & (rows["route"] == route)]
            jobs = jobs.sort_values("repeat") if "repeat" in jobs else jobs
            inner = "".join(
                rows_view.row_html(r, video_src=_video_src(r, run_dir, base, embed_max_bytes))
                for _, r in jobs.iterrows()
            )
            cells.append(f"<td>{inner}</td>")
        prompt_cell = f'<th class="prompt">#{index} {_e(prompt)}</th>'
        body.append(f"<tr>{prompt_cell}{''.join(cells)}</tr>")
    return (
        f'<div class="grid-wrap"><table class="video-grid"><thead><tr><th>prompt</th>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _check(value: Any) -> str:
    if value is None or value != value:
        return '<span class="na">–</span>'
    return '<span class="ok">✓</span>' if bool(value) else '<span class="bad">✗</span>'


def _conformance_html(rows: pd.DataFrame) -> str:
    done = rows[rows["state"] == "succeeded"]
    lines = []
    for _, row in done.sort_values(["prompt_index", "route"]).iterrows():
        asked = _settings_of(row.get("settings"))
        got = (
            f"{fmt.seconds(row.get('duration_s'))}, {fmt.size(row.get('width'), row.get('height'))}"
            f", {fmt.value(row.get('fps'))} fps {fmt.value(row.get('codec'))}"
        )
        cells = [
            _label(row),
            f"#{_e(row.get('prompt_index'))} r{_e(row.get('repeat'))}",
            _e(comparison.settings_text({k: asked.get(k) for k in _ASKED}, None)),
            _e(got),
            *(_check(row.get(c)) for c in _CHECKS),
        ]
        lines.append(_row(cells))
    return _table("conformance", _CONFORMANCE_HEADERS, lines)


def _failures_html(rows: pd.DataFrame) -> str:
    failed = rows[rows["state"] != "succeeded"]
    if failed.empty:
        return "<p>None: every job succeeded.</p>"
    lines = "".join(
        f"<tr><td>{_label(r)}</td><td>#{_e(r.get('prompt_index'))} r{_e(r.get('repeat'))}</td>"
        f"<td>{_e(r.get('state'))}</td><td class='error'>{_e(r.get('error'))}</td></tr>"
        for _, r in failed.iterrows()
    )
    head = "<tr><th>route</th><th>job</th><th>state</th><th>reason</th></tr>"
    return f'<table class="failures"><thead>{head}</thead><tbody>{lines}</tbody></table>'


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _versions_of() -> list[str]:
    """This package, its base dependencies (from its own metadata), then the optional ones."""
    try:
        wanted = metadata.requires("abebeats-lab") or []
    except metadata.PackageNotFoundError:
        wanted = []
    base = [
        re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0] for line in wanted if "extra ==" not in line
    ]
    return ["abebeats-lab", *base, *_OPTIONAL_VERSIONS]


def _environment_html() -> str:
    facts = [("python", sys.version.split()[0]), ("platform", platform.platform())]
    facts += [(name, _version(name)) for name in _versions_of()]
    body = "".join(f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in facts)
    return f"<p>Where this report was written.</p><table class='env'><tbody>{body}</tbody></table>"


# -- quality -----------------------------------------------------------------------------------

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
    "bootstrap interval over the votes: two routes whose intervals overlap are not told "
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


def _quality_html(
    rows: pd.DataFrame, run_dir: Path, run_id: str, by: Grouping | None = None
) -> str:
    """Metric medians and spread per route, the leaderboard (per group too with ``by``), and
    metric–vote agreement."""
    ratings = comparison.run_ratings(run_dir, run_id) if run_id else None
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
    done = comparison.by_route(rows[rows["state"] == "succeeded"])
    values = {r: map(comparison.metric_value, (job.get(name) for job in done[r])) for r in done}
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
    summary = _summary(rows)
    head = _route_head(summary)
    lines = []
    for name, metric in comparison.quality_metrics().items():
        if name not in rows.columns:
            continue
        cells = "".join(
            f"<td>{_metric_cell(line, name, metric.unit)}</td>" for line in summary.values()
        )
        label = f'<td title="{_e(metric.definition)}"><code>{_e(name)}</code></td>'
        lines.append(
            f"<tr>{label}<td>{_BETTER[metric.direction]}</td><td>{_e(metric.unit)}</td>{cells}</tr>"
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
    parts = [f"<h3>Blind votes by {_e(label)}</h3>"]
    for group, ratings in comparison.run_ratings_by(run_dir, run_id, by).items():
        parts.append(f"<h4>{_e(label)}: <code>{_e(group)}</code></h4>")
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
    summary = _summary(rows) if rows is not None else {}
    for rank, line in enumerate(board.to_dict("records"), start=1):
        route = str(line["route"])
        emulated = summary.get(route, {}).get("emulated", False)
        low, high = line["low"], line["high"]
        interval = f"{low:.0f} – {high:.0f}" if low == low and high == high else fmt.MISSING
        cells = [
            str(rank),
            f"<code>{_e(route)}</code>{rows_view.badge(emulated)}",
            f"{line['rating']:.0f}",
            interval,
            *(str(int(line[k])) for k in ("votes", "wins", "ties", "losses", "both_bad")),
        ]
        lines.append(_row(cells))
    return _table("leaderboard", _LEADERBOARD_HEADERS, lines)


def _agreement_html(rows: pd.DataFrame, ratings: Any) -> str:
    from abebeats_lab.quality.ratings import agreement

    lines = []
    for name, metric in comparison.quality_metrics().items():
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
        lines.append(_row([f"<code>{_e(name)}</code>", _BETTER[metric.direction], *cells]))
    return _table("agreement", _AGREEMENT_HEADERS, lines)
