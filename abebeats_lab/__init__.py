"""abebeats-lab: one prompt, several AI video providers, honest figures side by side.

Importing this package is cheap: provider SDKs, PyAV, pandas and ipywidgets load only when
something uses them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from abebeats_lab._types import (
    Job,
    JobState,
    JobStatus,
    Output,
    OutputRef,
    Probe,
    Route,
    Timing,
    VideoRequest,
)
from abebeats_lab.errors import LabError

__all__ = [
    "Job",
    "JobState",
    "JobStatus",
    "LabError",
    "Output",
    "OutputRef",
    "Probe",
    "Route",
    "Timing",
    "VideoRequest",
    "__version__",
]
