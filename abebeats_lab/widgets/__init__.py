"""Jupyter widgets: the `ControlPanel` over the comparison runner (needs the ``jupyter`` extra)."""

from __future__ import annotations

from abebeats_lab.widgets.panel import ControlPanel

__all__ = ["ControlPanel"]
