"""One job row, one renderer: the notebook view, the panel and the report show the same figures.

Runs go through the panel as a user clicks it (local renderer + loopback emulators); the same run
folder is then shown as a notebook shows a `Comparison` and written as the HTML report.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from abebeats_lab.run.api import load_run
from abebeats_lab.views import rows
from abebeats_lab.views.report import write_report
from abebeats_lab.widgets import ControlPanel

LOCAL, RUNWAY = "local:procedural", "runway:gen4.5"
PROMPT = "a paper boat drifting on a calm lake"
FAILURE_TEXT = "The generation failed (emulated)."
HOSTILE = "<script>alert('x')</script>"


class _Figures(HTMLParser):
    """Figure lines (``label: text``) of each job, keyed by its caption (route · repeat)."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, list[str]] = {}
        self._head: str | None = None
        self._key = ""
        self._line: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = str(dict(attrs).get("class") or "").split()
        if tag == "div" and "abebeats-cell-head" in classes:
            self._head = ""
        elif tag == "tr" and self._key in self.jobs:
            self._line = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._head is not None:
            self._key, self._head = " ".join(self._head.split()), None
            self.jobs[self._key] = []
        elif tag == "tr" and self._line is not None:
            self.jobs[self._key].append(" ".join(self._line.split()))
            self._line = None
        elif tag == "table":
            self._key = ""  # a figures table ends the job's lines

    def handle_data(self, data: str) -> None:
        if self._head is not None:
            self._head += data
        elif self._line is not None:
            self._line += data + " "


def _figures(*fragments: str) -> dict[str, list[str]]:
    parser = _Figures()
    for fragment in fragments:
        parser.feed(fragment)
    return parser.jobs


def _panel_html(widget: Any) -> list[str]:
    """The HTML of every HTML widget under ``widget``, depth first (what a reader sees)."""
    own = [str(widget.value)] if type(widget).__name__ == "HTML" else []
    return own + [h for child in getattr(widget, "children", ()) for h in _panel_html(child)]


async def _three_views(tmp_path: Path, *, emulate: bool) -> list[dict[str, list[str]]]:
    panel = ControlPanel(
        selected=[LOCAL, RUNWAY], emulate=emulate, runs_dir=tmp_path / "runs", prompt=PROMPT
    )
    panel.duration.value = 2
    panel.generate_button.click()
    await panel.wait()
    run_dir = Path(panel.comparison.run_dir)
    notebook = load_run(run_dir).to_html()
    report = write_report(run_dir).read_text(encoding="utf-8")
    return [_figures(*_panel_html(panel.results)), _figures(notebook), _figures(report)]


async def test_an_emulated_run_shows_the_same_figures_in_notebook_panel_and_report(
    tmp_path: Path,
) -> None:
    panel, notebook, report = await _three_views(tmp_path, emulate=True)
    assert panel == notebook == report
    assert sorted(panel) == [f"{LOCAL} · repeat 0", f"{RUNWAY} emulated · repeat 0"]
    runway = panel[f"{RUNWAY} emulated · repeat 0"]
    labels = [line.split(" ")[0] for line in runway]
    assert labels == ["state", "total", "queue", "run", "detect", "download", "polls", "cost",
                      "output", "conformance"]  # fmt: skip
    assert "cost $0.00 (emulated: not charged); price $0.120/s" in runway
    assert any(line.startswith("output ") and " fps, " in line for line in runway)
    assert "conformance duration ✓ ratio ✓ resolution ✓" in panel[f"{LOCAL} · repeat 0"]


async def test_a_failed_job_shows_its_reason_the_same_way_everywhere(
    tmp_path: Path, failing_runway: None
) -> None:
    panel, notebook, report = await _three_views(tmp_path, emulate=False)
    assert panel == notebook == report
    runway = panel[f"{RUNWAY} emulated · repeat 0"]  # the emulator says so, even unasked
    assert runway[0] == "state failed" and runway[1].startswith(f"error {FAILURE_TEXT}")
    assert not any(line.startswith("output") for line in runway)


def test_provider_strings_are_escaped_and_long_errors_cut() -> None:
    row = {"route": HOSTILE, "repeat": 0, "state": HOSTILE, "error": HOSTILE * 100,
           "total_s_source": HOSTILE, "emulated": True}  # fmt: skip
    text = rows.row_html(row, video_src=f"x.mp4'{HOSTILE}")
    assert "<script>" not in text and "&lt;script&gt;" in text
    lines = _figures(text)[f"{HOSTILE} emulated · repeat 0"]
    error = next(line for line in lines if line.startswith("error "))
    assert len(error) == len("error ") + rows.ERROR_CHARS and error.endswith("…")
