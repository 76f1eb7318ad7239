"""Jupyter widgets (need the ``jupyter`` extra): the `ControlPanel` over the comparison
runner, and the `Arena` for blind pairwise votes on a run's outputs."""

from __future__ import annotations

try:
    import ipywidgets  # noqa: F401 - checked here so a missing extra is one clear line
except ModuleNotFoundError as exc:
    from abebeats_lab.errors import MissingExtraError

    raise MissingExtraError("the control panel", "jupyter", exc.name or "ipywidgets") from None

from abebeats_lab.widgets.arena import Arena
from abebeats_lab.widgets.panel import ControlPanel

__all__ = ["Arena", "ControlPanel"]
