"""The control panel's form: the prompt and its history, the route picker, the settings every
ticked route accepts, and the `VideoRequest` they describe.

The rules (which routes can run, which values they share) live in `_choices`; this module
keeps the widgets in step with them as routes are ticked or the emulate box changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import ipywidgets as w

from abebeats_lab._types import VideoRequest
from abebeats_lab.errors import ValidationError
from abebeats_lab.widgets import _choices

__all__ = ["MAX_HISTORY", "MAX_REPEATS", "ROUTE_DEFAULT", "PanelForm"]

MAX_HISTORY = 20
MAX_REPEATS = 10
ROUTE_DEFAULT = "route default"
"""The first choice of each setting: every route takes its own default (never refused).
A string, not ``None``: a Dropdown whose value is ``None`` shows no selection at all."""
_PICKER_COLUMNS = "repeat(3, minmax(260px, 1fr))"
_HISTORY_HINT = "earlier prompts…"


class PanelForm:
    """The inputs of the `ControlPanel`: what to generate, on which routes, with which settings.

    ``routes`` are offered in the picker, ``selected`` ticked at start; ``emulate`` starts
    with the emulate box ticked; ``history`` and ``prompt`` fill the history and prompt boxes.
    """

    def __init__(
        self,
        routes: Sequence[str],
        *,
        selected: Iterable[str],
        emulate: bool,
        history: Iterable[str],
        prompt: str,
    ) -> None:
        self._build_inputs(list(routes), set(selected), emulate)
        self.prompt.value = prompt
        self._set_history(list(history))
        self._refresh_routes()

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
        self.adapt = False
        """The ticked routes share no value for some setting: each takes its nearest one."""
        for dropdown in (self.duration, self.aspect_ratio, self.resolution):
            dropdown.observe(lambda _change: self._refresh_note(), names="value")

    def box(self, buttons: w.HBox) -> w.VBox:
        """The form laid out, with the panel's ``buttons`` below it."""
        picker = w.GridBox(
            list(self.route_boxes.values()),
            layout=w.Layout(grid_template_columns=_PICKER_COLUMNS),
        )
        settings = w.HBox([self.duration, self.aspect_ratio, self.resolution])
        extras = w.HBox([self.seed, self.repeats, self.negative_prompt, self.audio])
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
        self.adapt = bool(allowed.adapt)
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

    def remember(self, prompt: str) -> None:
        """Put ``prompt`` first in the history (once)."""
        self._set_history([prompt, *self.prompt_history])

    @property
    def prompt_history(self) -> list[str]:
        """Earlier prompts, most recent first."""
        return [value for _label, value in self.history.options if value]

    def _on_history(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.prompt.value = change["new"]

    # ---------------------------------------------------------------- request
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
