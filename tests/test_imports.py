"""Importing the package stays cheap: no provider SDK, PyAV, pandas or ipywidgets."""

from __future__ import annotations

import json
import subprocess
import sys

import abebeats_lab

HEAVY = (
    "replicate",
    "google.genai",
    "pandas",
    "av",
    "ipywidgets",
    "runwayml",
    "fal_client",
    "numpy",
)


def test_import_pulls_in_no_heavy_module() -> None:
    code = "import sys, json, abebeats_lab; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    assert not [name for name in HEAVY if name in loaded]


def test_public_surface_is_pinned() -> None:
    assert abebeats_lab.__all__ == [
        "ControlPanel",
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
        "compare",
        "generate",
        "load_run",
        "make_music_video",
        "resume",
        "write_report",
    ]
    for name in abebeats_lab.__all__:
        assert getattr(abebeats_lab, name) is not None
