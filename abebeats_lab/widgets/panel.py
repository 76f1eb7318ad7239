"""`ControlPanel`: type a prompt, tick routes, press Generate, watch, compare side by side.

A thin view over `abebeats_lab.run.api.compare`: no HTTP code here. Generate schedules the
comparison as an asyncio task on the kernel's running loop and returns at once, so the
notebook stays responsive; ``on_update`` events redraw one progress line per job; Cancel
cancels the task (the runner cancels the remote jobs and records how each one ended), then
the panel shows the rows as the run store holds them, and the partial run can be exported.
Errors are shown in the panel, where the click happened. Display it by leaving it last in a
cell, or with ``display(panel)``.

This module is the run control (the buttons and the comparison task); the inputs live in
`form.PanelForm` and what the panel shows in `results.ResultsArea`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ipywidgets as w

from abebeats_lab import capabilities
from abebeats_lab._types import JobState, VideoRequest
from abebeats_lab.errors import LabError, ValidationError
from abebeats_lab.widgets import _choices

# The form's constants stay importable from here, where they were first defined.
from abebeats_lab.widgets.form import MAX_HISTORY as MAX_HISTORY
from abebeats_lab.widgets.form import MAX_REPEATS as MAX_REPEATS
from abebeats_lab.widgets.form import ROUTE_DEFAULT as ROUTE_DEFAULT
from abebeats_lab.widgets.form import PanelForm
from abebeats_lab.widgets.results import ResultsArea

__all__ = ["ControlPanel"]

_log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = "abebeats-runs"
DEFAULT_ROUTES = ("local:procedural",)


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
        self.form = PanelForm(
            list(routes or _choices.default_routes()),
            selected=selected,
            emulate=emulate,
            history=history,
            prompt=prompt,
        )
        self.area = ResultsArea()
        self._name_parts()
        self._build_buttons()
        buttons = w.HBox(
            [self.generate_button, self.cancel_button, self.export_button, self.arena_button]
        )
        self.view = w.VBox(
            [self.form.box(buttons), *self.area.widgets()], layout=w.Layout(width="100%")
        )
        self.view.add_class("abebeats-panel")

    # ----------------------------------------------------------------- building
    def _name_parts(self) -> None:
        """The form's and the results area's widgets under the panel's own names, which
        notebooks and tests set and read (``panel.prompt``, ``panel.status``, ...)."""
        form, area = self.form, self.area
        self.prompt, self.history, self.emulate = form.prompt, form.history, form.emulate
        self.route_boxes, self.settings_note = form.route_boxes, form.settings_note
        self.duration, self.aspect_ratio = form.duration, form.aspect_ratio
        self.resolution, self.seed, self.repeats = form.resolution, form.seed, form.repeats
        self.negative_prompt, self.audio = form.negative_prompt, form.audio
        self.status, self.progress, self.results = area.status, area.progress, area.results
        self.chart, self.report, self.arena_box = area.chart, area.report, area.arena_box

    def _build_buttons(self) -> None:
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

    # ---------------------------------------------------------------- display
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.view._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------- form
    @property
    def selected_routes(self) -> list[str]:
        """Ticked routes that can run, in picker order."""
        return self.form.selected_routes

    @property
    def prompt_history(self) -> list[str]:
        """Earlier prompts, most recent first."""
        return self.form.prompt_history

    def request(self) -> VideoRequest:
        """The request the current settings describe; raises `ValidationError` on bad input."""
        return self.form.request()

    # ---------------------------------------------------------------- actions
    def _on_generate(self, _button: Any = None) -> None:
        if self.task is not None and not self.task.done():
            self.area.say("A comparison is already running; cancel it first.", "warn")
            return
        try:
            request, routes = self.request(), self.selected_routes
            if not routes:
                raise ValidationError("routes", [], "at least one ticked route")
            loop = asyncio.get_running_loop()
        except LabError as exc:
            self.area.say(str(exc), "error")
            return
        except RuntimeError:
            self.area.say("No running event loop: use the panel inside Jupyter.", "error")
            return
        self.form.remember(request.prompt)
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
        self.area.say("Cancelling: stopping the jobs still running…", "warn")

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
                adapt=self.form.adapt,
            )
        except Exception as exc:  # shown where the user clicked; a bug is logged too
            self.area.say(f"{type(exc).__name__}: {exc}", "error")
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
            self.area.say(f"Cancelled; the run could not be read back: {exc}", "error")
        finally:
            self._end()

    def _show_cancelled(self, run_dir: Path) -> None:
        """The rows as the runner settled them after the cancel, read back from the run store."""
        from abebeats_lab.run.api import load_run

        try:
            comparison = load_run(run_dir)
        except LabError:  # cancelled before the run store was written: no job was sent
            self.area.say("Cancelled before any job was sent.", "warn")
            return
        self.comparison = comparison
        self._show(comparison, cancelled=True)

    def _new_run_dir(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return self.runs_dir / f"panel-{stamp}"

    def _begin(self) -> None:
        self.area.clear()
        self.comparison = None
        self.arena_button.disabled = True
        self.area.say("Running…", "info")
        self.generate_button.disabled, self.cancel_button.disabled = True, False
        self.export_button.disabled = True

    def _end(self) -> None:
        self.generate_button.disabled, self.cancel_button.disabled = False, True
        self.export_button.disabled = self.comparison is None

    def _on_update(self, event: Any) -> None:
        emulated = (
            bool(self.emulate.value) and not capabilities.capabilities_for(event.route).runs_locally
        )
        self.area.draw_progress(event, emulated)

    # ---------------------------------------------------------------- results
    def _show(self, comparison: Any, *, cancelled: bool = False) -> None:
        rows = self.area.show(comparison)
        self.arena_button.disabled = (
            len({r["route"] for r in rows if r["state"] == JobState.SUCCEEDED}) < 2
        )
        self.area.say_outcome(rows, Path(comparison.run_dir), cancelled=cancelled)

    def _on_export(self, _button: Any = None) -> None:
        if self.comparison is None:
            self.area.say("Nothing to export yet: generate first.", "warn")
            return
        self.export_button.disabled = True
        self._export_task = asyncio.get_running_loop().create_task(self._export())

    async def _export(self) -> None:
        from abebeats_lab.views.report import write_report

        try:
            path = await asyncio.to_thread(write_report, Path(self.comparison.run_dir))
        except Exception as exc:  # shown in place, like every other error
            self.area.report_failed(exc)
        else:
            self.report_path = path
            self.area.report_written(path)
        finally:
            self.export_button.disabled = False

    def _on_arena(self, _button: Any = None) -> None:
        """Open the `Arena` on the run shown: blind votes between its routes' videos."""
        from abebeats_lab.widgets.arena import Arena

        if self.comparison is None or self.comparison.run_dir is None:
            self.area.say("Nothing to vote on yet: generate first.", "warn")
            return
        if self.arena is not None:
            self.arena.close()
        self.arena = Arena(self.comparison.run_dir)
        self.area.show_arena(self.arena.view)
