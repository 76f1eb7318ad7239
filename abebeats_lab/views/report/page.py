"""The report page's frame: the inline CSS, the small HTML helpers every section builds with,
the header on top and the Environment section (where the report was written) at the bottom."""

from __future__ import annotations

import html
import platform
import re
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CSS", "environment_html", "escape", "header", "html_table", "section", "table_row"]

_OPTIONAL_VERSIONS = ("ipywidgets", "runwayml", "fal-client")
"""Shown beside the base dependencies when installed (the panel; the SDKs the tests use)."""

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


def escape(value: Any) -> str:
    """``value`` as HTML text (``None`` as nothing), quotes escaped too."""
    return html.escape("" if value is None else str(value), quote=True)


def html_table(css_class: str, headers: tuple[str, ...], lines: list[str]) -> str:
    """A table with a header row over ``lines`` (each a ``<tr>`` made by `row`)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(lines)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def table_row(cells: list[str]) -> str:
    """One table row of cells that are already HTML."""
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def section(title: str, body: str) -> str:
    """A titled section whose ``id`` is the title's slug (a link target)."""
    slug = title.lower().replace(" ", "-")
    return f'<section id="{slug}"><h2>{escape(title)}</h2>{body}</section>'


def header(run_id: str, rows: pd.DataFrame, emulated: bool) -> str:
    """The title, the run's job counts by state, and the ``emulated`` banner when it applies."""
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
        f"<header><h1>abebeats-lab report</h1><p>run <code>{escape(run_id)}</code> · "
        f"{len(rows)} jobs ({escape(counts)}) · written {when}</p>{banner}</header>"
    )


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


def environment_html() -> str:
    """Python, the platform and the versions of this package and its dependencies."""
    facts = [("python", sys.version.split()[0]), ("platform", platform.platform())]
    facts += [(name, _version(name)) for name in _versions_of()]
    body = "".join(
        f"<tr><td>{escape(k)}</td><td><code>{escape(v)}</code></td></tr>" for k, v in facts
    )
    return f"<p>Where this report was written.</p><table class='env'><tbody>{body}</tbody></table>"
