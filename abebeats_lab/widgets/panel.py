"""`ControlPanel`: type a prompt, tick routes, press Generate, watch, compare side by side.

A thin view over `abebeats_lab.run.api.compare`: no HTTP code here. Generate schedules the
comparison as an asyncio task on the kernel's running loop and returns at once, so the
notebook stays responsive; ``on_update`` events redraw one progress line per job; Cancel
cancels the task (the runner cancels the remote jobs and records how each one ended), then
the panel shows the rows as the run store holds them, and the partial run can be exported.
Errors are shown in the panel, where the click happened. Display it by leaving it last in a
cell, or with ``display(panel)``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ipywidgets as w

from abebeats_lab import capabilities, fmt
from abebeats_lab._types import JobState, VideoRequest
from abebeats_lab.errors import LabError, ValidationError
from abebeats_lab.views import plots
from abebeats_lab.views.rows import badge, figures_html, head_html, video_path
from abebeats_lab.widgets import _choices

__all__ = ["ControlPanel"]

_log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = "abebeats-runs"
DEFAULT_ROUTES = ("local:procedural",)
MAX_HISTORY = 20
MAX_REPEATS = 10
ROUTE_DEFAULT = "route default"
"""The first choice of each setting: every route takes its own default (never refused).
A string, not ``None``: a Dropdown whose value is ``None`` shows no selection at all."""
_VIDEO_WIDTH = "320px"
_PICKER_COLUMNS = "repeat(3, minmax(260px, 1fr))"
_HISTORY_HINT = "earlier prompts…"
_FINAL_STATES = frozenset(s.value for s in JobState if s.terminal)
_PROMPT_CHARS = 40
_PERCENT = 100
_STATE_COLOURS = {"succeeded": "#137333", "failed": "#a00000", "canceled": "#7a5b00"}


class ControlPanel:
    """The comparison control panel (ipywidgets).

    Parameters
    ----------
    routes:
        Routes offered in the picker (default: every route with exact capability data).
    selected:
        Routes ticked at start.
    emulate:
        Start with the built-in emulators instead of real keys (a checkbox in the panel).
    runs_dir:
        Each Generate writes a new run directory under this folder.
    history:
        Earlier prompts offered for editing and re-running.
    prompt:
        Text the prompt box starts with.
    """

    def __init__(
        self,
        routes: Sequence[str] | None = None,
        *,
        selected: Iterable[str] = DEFAULT_ROUTES,
        emulate: bool = False,
        runs_dir: str | Path = DEFAULT_RUNS_DIR,
        history: Iterable[str] = (),
        prompt: str = "",
    ) -> None:
        self.runs_dir = Path(runs_dir)
        self.task: asyncio.Task[None] | None = None
        """The comparison in flight (or the last one)."""
        self.comparison: Any = None
        """The last `Comparison` shown: a finished run, or the partial run after a Cancel."""
        self.report_path: Path | None = None
        self.arena: Any = None
        """The `Arena` opened on the last run (button "Arena"), if any."""
        self._export_task: asyncio.Task[None] | None = None
        self._progress_rows: dict[Any, w.HTML] = {}
        # The last event per job, so a line redrawn from the store keeps its elapsed time.
        self._last_events: dict[Any, Any] = {}
        self._build_inputs(list(routes or _choices.default_routes()), set(selected), emulate)
        self._build_outputs()
        self.prompt.value = prompt
        self._set_history(list(history))
        self._refresh_routes()
        self.view = w.VBox(
            [
                self._inputs_box(),
                self.status,
                self.progress,
                self.results,
                self.chart,
                self.report,
                self.arena_box,
            ],
            layout=w.Layout(width="100%"),
        )
        self.view.add_class("abebeats-panel")

    # ----------------------------------------------------------------- building
    def _build_inputs(self, routes: list[str], selected: set[str], emulate: bool) -> None:
        self.prompt = w.Textarea(placeholder="Describe the video…", layout=w.Layout(width="100%"))
        self.prompt.add_class("abebeats-prompt")
        self.history = w.Dropdown(description="History", options=[(_HISTORY_HINT, "")])
        self.history.observe(self._on_history, names="value")
        self.emulate = w.Checkbox(
            value=emulate,
            description="emulate providers (offline, no keys)",
            indent=False,
            style={"description_width": "initial"},
            layout=w.Layout(width="auto"),
        )
        self.emulate.observe(lambda _change: self._refresh_routes(), names="value")
        self.route_boxes = {r: w.Checkbox(value=r in selected, description=r) for r in routes}
        for box in self.route_boxes.values():
            box.layout = w.Layout(width="auto")
            box.style = {"description_width": "initial"}
            box.observe(lambda _change: self._refresh_settings(), names="value")
        self._build_settings()
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", button_style="warning", disabled=True)
        self.export_button = w.Button(description="Export report", disabled=True)
        self.generate_button.on_click(self._on_generate)
        self.cancel_button.on_click(self._on_cancel)
        self.export_button.on_click(self._on_export)
        self.arena_button = w.Button(
            description="Arena",
            icon="balance-scale",
            disabled=True,
            tooltip="blind pairwise votes on this run's videos",
        )
        self.arena_button.on_click(self._on_arena)

    def _build_settings(self) -> None:
        self.duration = w.Dropdown(description="Duration (s)")
        self.aspect_ratio = w.Dropdown(description="Ratio")
        self.resolution = w.Dropdown(description="Resolution")
        self.seed = w.Text(description="Seed", placeholder="random")
        self.repeats = w.BoundedIntText(value=1, min=1, max=MAX_REPEATS, description="Repeats")
        self.negative_prompt = w.Text(description="Negative", placeholder="what to avoid")
        self.audio = w.Checkbox(value=False, description="audio")
        self.settings_note = w.HTML()
        self._allowed = _choices.allowed_settings(())
        for dropdown in (self.duration, self.aspect_ratio, self.resolution):
            dropdown.observe(lambda _change: self._refresh_note(), names="value")

    def _build_outputs(self) -> None:
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

    def _inputs_box(self) -> w.VBox:
        picker = w.GridBox(
            list(self.route_boxes.values()),
            layout=w.Layout(grid_template_columns=_PICKER_COLUMNS),
        )
        settings = w.HBox([self.duration, self.aspect_ratio, self.resolution])
        extras = w.HBox([self.seed, self.repeats, self.negative_prompt, self.audio])
        buttons = w.HBox(
            [self.generate_button, self.cancel_button, self.export_button, self.arena_button]
        )
        return w.VBox(
            [
                w.HTML("<b>Prompt</b>"),
                self.prompt,
                self.history,
                w.HTML("<b>Routes</b>"),
                self.emulate,
                picker,
                w.HTML("<b>Settings</b> (only values every ticked route accepts)"),
                settings,
                extras,
                self.settings_note,
                buttons,
            ]
        )

    # ---------------------------------------------------------------- display
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.view._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------ route state
    @property
    def selected_routes(self) -> list[str]:
        """Ticked routes that can run, in picker order."""
        return [r for r, box in self.route_boxes.items() if box.value and not box.disabled]

    def _refresh_routes(self) -> None:
        for route, box in self.route_boxes.items():
            choice = _choices.route_choice(route, emulate=bool(self.emulate.value))
            box.description, box.disabled = choice.label, not choice.enabled
            box.description_allow_html = False
            if not choice.enabled:
                box.value = False
        self._refresh_settings()

    def _refresh_settings(self) -> None:
        allowed = _choices.allowed_settings(self.selected_routes)
        self._allowed = allowed
        _offer(self.duration, allowed.durations, allowed.defaults.get("duration_s", ()))
        _offer(self.aspect_ratio, allowed.aspect_ratios, allowed.defaults.get("aspect_ratio", ()))
        _offer(self.resolution, allowed.resolutions, allowed.defaults.get("resolution", ()))
        self.audio.disabled = not allowed.audio
        self.negative_prompt.disabled = not allowed.negative_prompt
        if not allowed.audio:
            self.audio.value = False
        if not allowed.negative_prompt:
            self.negative_prompt.value = ""
        self._adapt = bool(allowed.adapt)
        self._refresh_note()

    def _refresh_note(self) -> None:
        """Say which chosen values some ticked route cannot take (route defaults always fit)."""
        chosen = {
            "durations": self.duration.value,
            "aspect_ratios": self.aspect_ratio.value,
            "resolutions": self.resolution.value,
        }
        adapting = [name for name in self._allowed.adapt if chosen[name] != ROUTE_DEFAULT]
        self.settings_note.value = (
            "<i>The ticked routes share no value for "
            f"{', '.join(f.replace('_', ' ') for f in adapting)}: each route will use its "
            "nearest allowed value, and the run records the change.</i>"
            if adapting
            else ""
        )

    # ---------------------------------------------------------------- history
    def _set_history(self, prompts: list[str]) -> None:
        unique = list(dict.fromkeys(p for p in prompts if p.strip()))[:MAX_HISTORY]
        self.history.options = [(_HISTORY_HINT, ""), *((_short(p), p) for p in unique)]
        self.history.value = ""

    @property
    def prompt_history(self) -> list[str]:
        """Earlier prompts, most recent first."""
        return [value for _label, value in self.history.options if value]

    def _on_history(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.prompt.value = change["new"]

    # ---------------------------------------------------------------- actions
    def request(self) -> VideoRequest:
        """The request the current settings describe; raises `ValidationError` on bad input."""
        text = self.prompt.value.strip()
        if not text:
            raise ValidationError("prompt", "", "a non-empty prompt")
        seed_text = self.seed.value.strip()
        try:
            seed = int(seed_text) if seed_text else None
        except ValueError as exc:
            raise ValidationError("seed", seed_text, "a whole number, or empty") from exc
        duration, ratio, resolution = (
            None if d.value == ROUTE_DEFAULT else d.value
            for d in (self.duration, self.aspect_ratio, self.resolution)
        )
        return VideoRequest(
            prompt=text,
            duration_s=None if duration is None else int(duration),
            aspect_ratio=None if ratio is None else str(ratio),
            resolution=None if resolution is None else str(resolution),
            seed=seed,
            negative_prompt=self.negative_prompt.value.strip() or None,
            generate_audio=bool(self.audio.value),
        )

    def _on_generate(self, _button: Any = None) -> None:
        if self.task is not None and not self.task.done():
            self._say("A comparison is already running; cancel it first.", "warn")
            return
        try:
            request, routes = self.request(), self.selected_routes
            if not routes:
                raise ValidationError("routes", [], "at least one ticked route")
            loop = asyncio.get_running_loop()
        except LabError as exc:
            self._say(str(exc), "error")
            return
        except RuntimeError:
            self._say("No running event loop: use the panel inside Jupyter.", "error")
            return
        self._set_history([request.prompt, *self.prompt_history])
        self._begin()
        run_dir = self._new_run_dir()
        self.task = loop.create_task(self._run(request, routes, int(self.repeats.value), run_dir))
        # A done callback, not a ``finally``: it also runs for a task cancelled before it began.
        self.task.add_done_callback(functools.partial(self._after_run, run_dir))

    def _on_cancel(self, _button: Any = None) -> None:
        # One cancel only: a second would interrupt the runner while it settles the jobs.
        if self.task is None or self.task.done() or self.task.cancelling():
            return
        self.task.cancel()
        self.cancel_button.disabled = True
        self._say("Cancelling: stopping the jobs still running…", "warn")

    async def wait(self) -> None:
        """Until the comparison (and any report export) in flight has ended, however it ended."""
        pending = {t for t in (self.task, self._export_task) if t is not None}
        if pending:
            await asyncio.wait(pending)

    async def _run(
        self, request: VideoRequest, routes: list[str], repeats: int, run_dir: Path
    ) -> None:
        from abebeats_lab.run.api import compare

        try:
            comparison = await compare(
                [request.prompt],
                routes,
                request.settings,
                repeats=repeats,
                run_dir=run_dir,
                on_update=self._on_update,
                emulate=bool(self.emulate.value),
                adapt=self._adapt,
            )
        except Exception as exc:  # shown where the user clicked; a bug is logged too
            self._say(f"{type(exc).__name__}: {exc}", "error")
            if not isinstance(exc, LabError):
                _log.exception("comparison failed")
        else:
            self.comparison = comparison
            self._show(comparison)

    def _after_run(self, run_dir: Path, task: asyncio.Task[None]) -> None:
        """The comparison task ended: show a cancelled run as stored, free the buttons."""
        try:
            if task.cancelled():
                self._show_cancelled(run_dir)
        except Exception as exc:  # a done callback has no caller to tell: say it here
            _log.exception("showing the cancelled run failed")
            self._say(f"Cancelled; the run could not be read back: {exc}", "error")
        finally:
            self._end()

    def _show_cancelled(self, run_dir: Path) -> None:
        """The rows as the runner settled them after the cancel, read back from the run store."""
        from abebeats_lab.run.api import load_run

        try:
            comparison = load_run(run_dir)
        except LabError:  # cancelled before the run store was written: no job was sent
            self._say("Cancelled before any job was sent.", "warn")
            return
        self.comparison = comparison
        self._show(comparison, cancelled=True)

    def _new_run_dir(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return self.runs_dir / f"panel-{stamp}"

    def _begin(self) -> None:
        self._progress_rows.clear()
        self._last_events.clear()
        self.comparison = None
        self.progress.children, self.results.children = (), ()
        self.chart.value = self.report.value = ""
        self.arena_button.disabled, self.arena_box.children = True, ()
        self._say("Running…", "info")
        self.generate_button.disabled, self.cancel_button.disabled = True, False
        self.export_button.disabled = True

    def _end(self) -> None:
        self.generate_button.disabled, self.cancel_button.disabled = False, True
        self.export_button.disabled = self.comparison is None

    def _on_update(self, event: Any) -> None:
        emulated = (
            bool(self.emulate.value) and not capabilities.capabilities_for(event.route).runs_locally
        )
        self._draw_progress(event, emulated)

    def _draw_progress(self, event: Any, emulated: bool) -> None:
        self._last_events[event.key] = event
        row = self._progress_rows.get(event.key)
        if row is None:
            row = self._progress_rows[event.key] = w.HTML()
            self.progress.children = (*self.progress.children, row)
        row.value = _progress_html(event, emulated)

    def _settle_progress(self, rows: Sequence[Any]) -> None:
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
            self._draw_progress(event, bool(row.emulated))

    # ---------------------------------------------------------------- results
    def _show(self, comparison: Any, *, cancelled: bool = False) -> None:
        frame = comparison.to_pandas()
        run_dir = Path(comparison.run_dir)
        rows = [r for _i, r in frame.iterrows()]
        grid = []
        for index in sorted({int(r["prompt_index"]) for r in rows}):
            cells = [_cell(r, run_dir) for r in rows if int(r["prompt_index"]) == index]
            grid.append(w.HBox(cells, layout=w.Layout(flex_flow="row wrap")))
        self.results.children = tuple(grid)
        self._settle_progress(comparison.rows)
        self.chart.value = plots.figure_svg(plots.timing_figure(frame))
        states = [str(r["state"]) for r in rows]
        self.arena_button.disabled = (
            len({r["route"] for r in rows if r["state"] == JobState.SUCCEEDED}) < 2
        )
        if cancelled:
            self._say(_cancelled_summary(states, run_dir), "warn")
            return
        failed = [s for s in states if s != JobState.SUCCEEDED]
        summary = f"Done: {len(rows) - len(failed)} of {len(rows)} jobs succeeded."
        self._say(
            summary + (" See the reasons below." if failed else ""), "warn" if failed else "ok"
        )

    def _on_export(self, _button: Any = None) -> None:
        if self.comparison is None:
            self._say("Nothing to export yet: generate first.", "warn")
            return
        self.export_button.disabled = True
        self._export_task = asyncio.get_running_loop().create_task(self._export())

    async def _export(self) -> None:
        from abebeats_lab.views.report import write_report

        try:
            path = await asyncio.to_thread(write_report, Path(self.comparison.run_dir))
        except Exception as exc:  # shown in place, like every other error
            self.report.value = f'<span style="color:#a00000">Report failed: {_e(exc)}</span>'
        else:
            self.report_path = path
            self.report.value = f"Report written: <code>{_e(path)}</code>"
        finally:
            self.export_button.disabled = False

    def _on_arena(self, _button: Any = None) -> None:
        """Open the `Arena` on the run shown: blind votes between its routes' videos."""
        from abebeats_lab.widgets.arena import Arena

        if self.comparison is None or self.comparison.run_dir is None:
            self._say("Nothing to vote on yet: generate first.", "warn")
            return
        if self.arena is not None:
            self.arena.close()
        self.arena = Arena(self.comparison.run_dir)
        self.arena_box.children = (w.HTML("<b>Arena</b>: which video is better?"), self.arena.view)

    def _say(self, text: str, kind: str) -> None:
        colour = {"error": "#a00000", "warn": "#7a5b00", "ok": "#137333"}.get(kind, "#1d1d1f")
        self.status.value = f'<div class="abebeats-{kind}" style="color:{colour}">{_e(text)}</div>'


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


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _offer(dropdown: w.Dropdown, values: Sequence[Any], defaults: Sequence[Any]) -> None:
    """Offer the routes' own defaults first, then ``values``; keep a choice still allowed."""
    current = dropdown.value
    shown = " / ".join(str(d) for d in defaults)
    label = f"{ROUTE_DEFAULT} ({shown})" if shown else ROUTE_DEFAULT
    options = [(label, ROUTE_DEFAULT), *((str(v), v) for v in values)]
    if list(dropdown.options) != options:
        dropdown.options = options
    dropdown.value = current if current in values else ROUTE_DEFAULT


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
