"""abebeats-lab: one prompt, several AI video providers, honest figures side by side.

Importing this package is cheap: provider SDKs, PyAV, pandas and ipywidgets load only when
something uses them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from abebeats_lab._sync import run_sync
from abebeats_lab._types import JobState, Route, Settings, VideoRequest
from abebeats_lab.errors import LabError

# Heavy entry points load on first use, so `import abebeats_lab` stays cheap.
_LAZY = {
    "Arena": "abebeats_lab.widgets",
    "Comparison": "abebeats_lab.views.comparison",
    "ControlPanel": "abebeats_lab.widgets",
    "GenerateResult": "abebeats_lab.run.api",
    "MusicVideo": "abebeats_lab.musicvideo.pipeline",
    "WaitPolicy": "abebeats_lab.waiting",
    "compare": "abebeats_lab.run.api",
    "generate": "abebeats_lab.run.api",
    "generate_many": "abebeats_lab.run.api",
    "list_runs": "abebeats_lab.run.api",
    "load_run": "abebeats_lab.run.api",
    "make_music_video": "abebeats_lab.musicvideo.pipeline",
    "resume": "abebeats_lab.run.api",
    "write_report": "abebeats_lab.views.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'abebeats_lab' has no attribute {name!r}")


__all__ = [
    "Arena",
    "Comparison",
    "ControlPanel",
    "GenerateResult",
    "JobState",
    "LabError",
    "MusicVideo",
    "Route",
    "Settings",
    "VideoRequest",
    "WaitPolicy",
    "__version__",
    "compare",
    "generate",
    "generate_many",
    "list_runs",
    "load_run",
    "make_music_video",
    "resume",
    "run_sync",
    "write_report",
]
