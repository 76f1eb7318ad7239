"""The self-contained HTML report of one run (moved unchanged to `report.quality`; the next
commit splits it into modules with one job each)."""

from __future__ import annotations

from abebeats_lab.views.report.quality import (
    DEFAULT_NAME,
    EMBED_MAX_BYTES,
    leaderboard_html,
    render_report,
    write_report,
)

__all__ = [
    "DEFAULT_NAME",
    "EMBED_MAX_BYTES",
    "leaderboard_html",
    "render_report",
    "write_report",
]
