"""Writing the report: `render_report` puts the sections in their order on one page, and
`write_report` loads a run, renders it and writes the file atomically.

``abebeats-lab report RUN_DIR [--out FILE] [--score [--no-clip]] [--embed-max-mb MB]`` calls
`write_report`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abebeats_lab.errors import LabError
from abebeats_lab.views import plots
from abebeats_lab.views.report.jobs import conformance_html, failures_html, grid_html
from abebeats_lab.views.report.page import CSS, environment_html, escape, header, section
from abebeats_lab.views.report.quality import quality_html
from abebeats_lab.views.report.routes import same_model_sections, settings_html, summary_html

if TYPE_CHECKING:
    import pandas as pd

    from abebeats_lab.quality.votes import Grouping

__all__ = ["DEFAULT_NAME", "EMBED_MAX_BYTES", "MIB", "render_report", "write_report"]

DEFAULT_NAME = "report.html"
MIB = 1024 * 1024
EMBED_MAX_BYTES = 4 * MIB
"""Videos up to 4 MiB go inside the file: a short preview clip fits, a 1080p master does not."""


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    run_id: str | None = None,
    embed_max_bytes: int = EMBED_MAX_BYTES,
    score: bool = False,
    clip: bool = True,
    by: Grouping | None = None,
) -> Path:
    """Write the report of a run in ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``).

    ``run_id`` picks the run (default: the latest with jobs); a run without jobs is a
    `LabError`. Returns the path written. The file is written under a temporary name and
    renamed, so a reader never sees half a report. The Quality section shows the metrics
    already stored in the run folder; ``score=True`` computes the missing ones first
    (`quality.metrics.score`, a process pool: seconds per clip; ``clip=False`` leaves out the
    CLIP score and so never fetches its weights). Videos up to ``embed_max_bytes`` are
    embedded; bigger ones are linked by a path relative to the report. ``by`` adds a leaderboard per
    group of votes: a setting's name (``"resolution"``), a prompt → tag mapping, or a function
    of the vote (`quality.votes.grouping`).
    """
    from abebeats_lab.run.api import load_run

    run_path = Path(run_dir).resolve()
    comparison = load_run(run_path, run_id)
    if not comparison.rows:
        raise LabError(f"run {comparison.run_id} in {run_path} has no jobs: nothing to report")
    if by is not None:
        from abebeats_lab.quality.votes import grouping

        grouping(by, run_path)  # a misspelt setting fails here, before any scoring
    if score:
        from abebeats_lab.quality.scores import score as score_run

        score_run(run_path, run_id=str(comparison.run_id), clip=clip)
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
        header(run_id, rows, emulated),
        section("Request settings", settings_html(rows)),
        section("Summary per route", summary_html(rows)),
        *same_model_sections(rows),
        section("Timing breakdown", _figure(plots.timing_figure(rows), "timing-chart")),
        section("Cost per second of video", _figure(plots.cost_figure(rows), "cost-chart")),
        section("Videos", grid_html(rows, run_dir, base, embed_max_bytes)),
        section("Output conformance", conformance_html(rows)),
        section("Quality", quality_html(rows, run_dir, run_id, by)),
        section("Failures", failures_html(rows)),
        section("Environment", environment_html()),
    ]
    title = f"abebeats-lab report {run_id}".strip()
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def _any(rows: pd.DataFrame, column: str) -> bool:
    return column in rows and bool(rows[column].fillna(False).astype(bool).any())


def _figure(fig: Any, css_class: str) -> str:
    return f'<figure class="chart {css_class}">{plots.figure_svg(fig)}</figure>'
