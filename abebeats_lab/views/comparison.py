"""A comparison's result: its rows and a side-by-side notebook view.

`Comparison.rows` are `store.JobRow` frozen dataclasses (one per prompt × route × repeat);
`to_rows` gives plain dicts for the HTML report, `to_pandas` a DataFrame with the quality
figures (`views.quality`), `summary` the per-route figures (`views.summary`). Figures from
emulated routes carry ``emulated=True`` everywhere they appear.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abebeats_lab import fmt
from abebeats_lab.run import costs
from abebeats_lab.run.costs import CostEstimate
from abebeats_lab.store import JobRow
from abebeats_lab.views.quality import with_quality
from abebeats_lab.views.rows import row_html, video_path
from abebeats_lab.views.summary import (
    SUMMARY_WIDTH,
    by_route,
    records,
    settings_text,
    summarize,
    summary_lines,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Comparison"]


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
