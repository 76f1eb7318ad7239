"""The per-job sections of the report: the video grid (prompt rows × route columns, each job
drawn by the one row renderer, `rows.row_html`), output conformance, and failures with reasons.

A video up to ``embed_max_bytes`` goes inside the file as a ``data:`` URI; a bigger one is
referenced relative to the report, so the run directory can be moved or zipped whole.
"""

from __future__ import annotations

import base64
import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abebeats_lab import fmt
from abebeats_lab._types import JobState
from abebeats_lab.views import rows as rows_view
from abebeats_lab.views.report.page import escape, html_table, table_row
from abebeats_lab.views.report.routes import prompts, route_head, route_summaries, settings_of
from abebeats_lab.views.summary import settings_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["conformance_html", "failures_html", "grid_html"]

_CHECKS = ("duration_ok", "ratio_ok", "resolution_ok")
_ASKED = ("duration_s", "aspect_ratio", "resolution")
_CONFORMANCE_HEADERS = ("route", "job", "asked", "got", "duration", "ratio", "resolution")


def _label(row: Any) -> str:
    return f"<code>{escape(row['route'])}</code>{rows_view.badge(row.get('emulated'))}"


def _video_src(row: Any, run_dir: Path, base: Path, embed_max_bytes: int) -> str | None:
    path = rows_view.video_path(row, run_dir)
    if path is None:
        return None
    if path.stat().st_size <= embed_max_bytes:
        return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return urllib.parse.quote(Path(os.path.relpath(path, base)).as_posix())


def grid_html(rows: pd.DataFrame, run_dir: Path, base: Path, embed_max_bytes: int) -> str:
    """The videos: one row per prompt, one column per route, every repeat in its cell."""
    summary = route_summaries(rows)
    head, routes = route_head(summary), list(summary)
    body = []
    for index, prompt in prompts(rows):
        cells = []
        for route in routes:
            jobs = rows[(rows["prompt_index"] == index) & (rows["route"] == route)]
            jobs = jobs.sort_values("repeat") if "repeat" in jobs else jobs
            inner = "".join(
                rows_view.row_html(r, video_src=_video_src(r, run_dir, base, embed_max_bytes))
                for _, r in jobs.iterrows()
            )
            cells.append(f"<td>{inner}</td>")
        prompt_cell = f'<th class="prompt">#{index} {escape(prompt)}</th>'
        body.append(f"<tr>{prompt_cell}{''.join(cells)}</tr>")
    return (
        f'<div class="grid-wrap"><table class="video-grid"><thead><tr><th>prompt</th>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _check(value: Any) -> str:
    if value is None or value != value:
        return '<span class="na">–</span>'
    return '<span class="ok">✓</span>' if bool(value) else '<span class="bad">✗</span>'


def conformance_html(rows: pd.DataFrame) -> str:
    """Per succeeded job: the settings asked, what the file holds, and whether each matches."""
    done = rows[rows["state"] == JobState.SUCCEEDED]
    lines = []
    for _, row in done.sort_values(["prompt_index", "route"]).iterrows():
        asked = settings_of(row.get("settings"))
        got = (
            f"{fmt.seconds(row.get('duration_s'))}, {fmt.size(row.get('width'), row.get('height'))}"
            f", {fmt.value(row.get('fps'))} fps {fmt.value(row.get('codec'))}"
        )
        cells = [
            _label(row),
            f"#{escape(row.get('prompt_index'))} r{escape(row.get('repeat'))}",
            escape(settings_text({k: asked.get(k) for k in _ASKED}, None)),
            escape(got),
            *(_check(row.get(c)) for c in _CHECKS),
        ]
        lines.append(table_row(cells))
    return html_table("conformance", _CONFORMANCE_HEADERS, lines)


def failures_html(rows: pd.DataFrame) -> str:
    """Every job that did not succeed, with its state and reason."""
    failed = rows[rows["state"] != JobState.SUCCEEDED]
    if failed.empty:
        return "<p>None: every job succeeded.</p>"
    lines = "".join(
        f"<tr><td>{_label(r)}</td>"
        f"<td>#{escape(r.get('prompt_index'))} r{escape(r.get('repeat'))}</td>"
        f"<td>{escape(r.get('state'))}</td><td class='error'>{escape(r.get('error'))}</td></tr>"
        for _, r in failed.iterrows()
    )
    head = "<tr><th>route</th><th>job</th><th>state</th><th>reason</th></tr>"
    return f'<table class="failures"><thead>{head}</thead><tbody>{lines}</tbody></table>'
