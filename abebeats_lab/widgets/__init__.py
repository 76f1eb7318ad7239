"""Jupyter widgets: the `ControlPanel` over the comparison runner (needs the ``jupyter`` extra)."""

from __future__ import annotations

try:
    import ipywidgets  # noqa: F401 - checked here so a missing extra is one clear line
except ModuleNotFoundError as exc:
    from abebeats_lab.errors import MissingExtraError

    raise MissingExtraError("the control panel", "jupyter", exc.name or "ipywidgets") from None

from abebeats_lab.widgets.panel import ControlPanel

__all__ = ["ControlPanel"]
