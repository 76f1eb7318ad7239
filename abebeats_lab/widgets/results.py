"""The control panel's results area: the status line, one progress line per job, the videos
side by side with their figures, the timing chart, the report line and the `Arena` box.

Progress lines are drawn from the runner's ``on_update`` events and, after a cancel, from the
rows the run store holds (the runner records how a cancelled job ended without an event).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w

from abebeats_lab import fmt
from abebeats_lab._types import JobState
from abebeats_lab.views import plots
from abebeats_lab.views.rows import badge, figures_html, head_html, video_path

__all__ = ["ResultsArea"]

_VIDEO_WIDTH = "320px"
_FINAL_STATES = frozenset(s.value for s in JobState if s.terminal)
_PROMPT_CHARS = 40
_PERCENT = 100
_STATE_COLOURS = {"succeeded": "#137333", "failed": "#a00000", "canceled": "#7a5b00"}


class ResultsArea:
    """What the `ControlPanel` shows below its form, as the widgets it keeps up to date."""

    def __init__(self) -> None:
        self.status = w.HTML()
        self.status.add_class("abebeats-status")
        self.progress = w.VBox()
        self.progress.add_class("abebeats-progress-list")
        self.results = w.VBox()
        self.results.add_class("abebeats-results")
        self.chart = w.HTML()
        self.chart.add_class("abebeats-chart")
        self.report = w.HTML()
        self.report.add_class("abebeats-report")
        self.arena_box = w.VBox()
        self._progress_rows: dict[Any, w.HTML] = {}
        # The last event per job, so a line redrawn from the store keeps its elapsed time.
        self._last_events: dict[Any, Any] = {}

    def widgets(self) -> list[w.Widget]:
        """The area's widgets, top to bottom."""
        return [self.status, self.progress, self.results, self.chart, self.report, self.arena_box]

    def clear(self) -> None:
        """Empty every part but the status line, for a new run."""
        self._progress_rows.clear()
        self._last_events.clear()
        self.progress.children, self.results.children = (), ()
        self.chart.value = self.report.value = ""
        self.arena_box.children = ()

    def say(self, text: str, kind: str) -> None:
        """The status line: ``kind`` is ``error``, ``warn``, ``ok`` or ``info``."""
        colour = {"error": "#a00000", "warn": "#7a5b00", "ok": "#137333"}.get(kind, "#1d1d1f")
        self.status.value = f'<div class="abebeats-{kind}" style="color:{colour}">{_e(text)}</div>'

    # ---------------------------------------------------------------- progress
    def draw_progress(self, event: Any, emulated: bool) -> None:
        """Draw (or redraw) the progress line of the job ``event`` is about."""
        self._last_events[event.key] = event
        row = self._progress_rows.get(event.key)
        if row is None:
            row = self._progress_rows[event.key] = w.HTML()
            self.progress.children = (*self.progress.children, row)
        row.value = _progress_html(event, emulated)

    def settle_progress(self, rows: Sequence[Any]) -> None:
        """Redraw each progress line whose job ended in a state no event announced.

        The runner records a cancelled job's end in the store without an event, so after a
        cancel the lines would still say ``running``; the store is the truth.
        """
        from abebeats_lab.run.api import JobEvent

        for row in rows:
            last = self._last_events.get(row.key)
            if last is not None and str(last.state) == row.state:
                continue
            event = (
                JobEvent(row.run_id, row.key, row.route, row.prompt, row.state, error=row.error)
                if last is None
                else dataclasses.replace(
                    last, state=row.state, error=row.error, progress=None, queue_position=None
                )
            )
            self.draw_progress(event, bool(row.emulated))

    # ----------------------------------------------------------------- results
    def show(self, comparison: Any) -> list[Any]:
        """Draw a run's videos, settle its progress lines and chart it; returns its rows."""
        frame = comparison.to_pandas()
        run_dir = Path(comparison.run_dir)
        rows = [r for _i, r in frame.iterrows()]
        grid = []
        for index in sorted({int(r["prompt_index"]) for r in rows}):
            cells = [_cell(r, run_dir) for r in rows if int(r["prompt_index"]) == index]
            grid.append(w.HBox(cells, layout=w.Layout(flex_flow="row wrap")))
        self.results.children = tuple(grid)
        self.settle_progress(comparison.rows)
        self.chart.value = plots.figure_svg(plots.timing_figure(frame))
        return rows

    def say_outcome(self, rows: Sequence[Any], run_dir: Path, *, cancelled: bool) -> None:
        """The status line after a run: how many jobs succeeded, or what a cancel left."""
        states = [str(r["state"]) for r in rows]
        if cancelled:
            self.say(_cancelled_summary(states, run_dir), "warn")
            return
        failed = [s for s in states if s != JobState.SUCCEEDED]
        summary = f"Done: {len(rows) - len(failed)} of {len(rows)} jobs succeeded."
        self.say(
            summary + (" See the reasons below." if failed else ""), "warn" if failed else "ok"
        )

    def report_written(self, path: Path) -> None:
        """The report line after an export."""
        self.report.value = f"Report written: <code>{_e(path)}</code>"

    def report_failed(self, exc: Exception) -> None:
        """The report line when an export failed: shown in place, like every other error."""
        self.report.value = f'<span style="color:#a00000">Report failed: {_e(exc)}</span>'

    def show_arena(self, view: w.Widget) -> None:
        """Put an `Arena` in its box, under its title."""
        self.arena_box.children = (w.HTML("<b>Arena</b>: which video is better?"), view)


def _cancelled_summary(states: Sequence[str], run_dir: Path) -> str:
    """What a cancel left: how many jobs finished, how the others ended, how to settle the rest."""
    counts = collections.Counter(states)
    succeeded = counts.pop(JobState.SUCCEEDED, 0)
    ended = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    text = f"Cancelled: {succeeded} of {len(states)} jobs succeeded before the cancel"
    text += f" ({ended})." if ended else "."
    if any(state not in _FINAL_STATES for state in counts):
        text += f" The jobs left unfinished are settled by: abebeats-lab resume {run_dir}."
    return text + " Export report saves this partial run."


def _e(value: Any) -> str:
    import html

    return html.escape("" if value is None else str(value))


def _progress_html(event: Any, emulated: bool) -> str:
    """One progress line: route, prompt, state, queue position or progress, elapsed."""
    state = str(getattr(event, "state", ""))
    detail = ""
    if getattr(event, "queue_position", None) is not None:
        detail = f"queue position {event.queue_position}"
    elif (progress := fmt.number(getattr(event, "progress", None))) is not None:
        detail = f"{progress * _PERCENT:.0f}%"
    prompt = str(getattr(event, "prompt", ""))
    short = prompt if len(prompt) <= _PROMPT_CHARS else prompt[: _PROMPT_CHARS - 1] + "…"
    colour = _STATE_COLOURS.get(state, "#1d1d1f")
    error = getattr(event, "error", None)
    parts = [
        f"<code>{_e(event.route)}</code>{badge(emulated)}",
        f"<i>{_e(short)}</i>",
        f'<b class="abebeats-state" style="color:{colour}">{_e(state)}</b>',
        _e(detail),
        f"elapsed {fmt.seconds(getattr(event, 'elapsed_s', None))}",
    ]
    line = " · ".join(p for p in parts if p)
    if error:
        line += f'<div class="abebeats-error" style="color:#a00000">{_e(error)}</div>'
    return f'<div class="abebeats-progress">{line}</div>'


def _cell(row: Any, run_dir: Path) -> w.VBox:
    path = video_path(row, run_dir)
    parts: list[Any] = [w.HTML(head_html(row))]
    if path is not None:
        video = w.Video(
            value=path.read_bytes(), format="mp4", autoplay=False, loop=True, controls=True
        )
        video.layout = w.Layout(width=_VIDEO_WIDTH)
        parts.append(video)
    parts.append(w.HTML(figures_html(row)))
    cell = w.VBox(parts, layout=w.Layout(margin="0 12px 12px 0"))
    cell.add_class("abebeats-cell")
    return cell
