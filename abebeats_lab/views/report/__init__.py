"""A self-contained HTML report of one run: one file that opens offline in any browser.

Everything is inline: the CSS, the charts (SVG from `plots`), and each video below
``embed_max_bytes`` (as a ``data:`` URI); bigger videos are referenced relative to the
report, so the run directory can be moved or zipped whole. Sections: request settings,
per-route summary, same model across resellers, timing breakdown, cost per second of video, a
video grid (prompt rows × route columns), output conformance, quality (automatic metrics per
route, the blind-vote leaderboard and how each metric agrees with the votes, from what the run
folder already stores), failures with reasons, environment and versions. Every figure from an
emulated route carries the label ``emulated``. Figures are written by `fmt`, costs come from
`costs.route_cost` and the summary from `views.summary.summarize`, as in the CLI and the panel,
so the report can never disagree with them.

This package is the report's public face; the code lives in modules with one job each:

- `report.writer`: `write_report` (load the run, write the file) and `render_report` (the
  sections in order);
- `report.page`: the page's frame: CSS, HTML helpers, header, environment;
- `report.routes`: the per-route sections: settings, summary, same model across resellers;
- `report.jobs`: the per-job sections: video grid, output conformance, failures;
- `report.quality`: the Quality section: metrics, leaderboards, metric–vote agreement.
"""

from __future__ import annotations

from abebeats_lab.views.report.quality import leaderboard_html
from abebeats_lab.views.report.writer import (
    DEFAULT_NAME,
    EMBED_MAX_BYTES,
    MIB,
    render_report,
    write_report,
)

__all__ = [
    "DEFAULT_NAME",
    "EMBED_MAX_BYTES",
    "MIB",
    "leaderboard_html",
    "render_report",
    "write_report",
]
