"""Importing the package stays cheap: no provider SDK, PyAV, pandas or ipywidgets."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

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
    for name in abebeats_lab.__all__:
        assert getattr(abebeats_lab, name) is not None


def test_a_missing_extra_is_one_line_naming_it() -> None:
    # As without the extra: ipywidgets cannot be imported at all.
    code = (
        "import sys; sys.modules['ipywidgets'] = None\n"
        "from abebeats_lab.widgets import ControlPanel"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("abebeats_lab.errors.MissingExtraError:")
    assert "pip install 'abebeats-lab[jupyter]'" in last
    assert "ModuleNotFoundError" not in done.stderr


def test_the_base_install_declares_what_the_commands_import() -> None:
    # `pip install -e .` must be enough for demo, compare, resume, report and music-video.
    from importlib.metadata import requires

    base = {
        r.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for r in requires("abebeats-lab") or []
        if "extra ==" not in r
    }
    code = (
        "import sys, json\n"
        "import abebeats_lab.cli, abebeats_lab.run.api, abebeats_lab.views.report\n"
        "import abebeats_lab.musicvideo.pipeline\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    for package in ("pandas", "matplotlib"):
        assert package in base, f"{package} is imported by the report but not a base dependency"
    assert "ipywidgets" not in loaded


def test_run_sync_works_with_and_without_a_running_loop(tmp_path: Path) -> None:
    from abebeats_lab import Settings, compare, run_sync

    settings = Settings(duration_s=1, aspect_ratio="16:9", resolution="360p")
    plan = run_sync(compare(["a kite"], ["local:procedural"], settings, dry_run=True))
    assert plan.dry_run and len(plan) == 1

    async def inside_a_notebook_cell() -> int:
        # A Jupyter cell runs inside the kernel's loop, where asyncio.run would fail.
        done = run_sync(compare(["a kite"], ["local:procedural"], settings, run_dir=tmp_path))
        return sum(row.state == "succeeded" for row in done.rows)

    assert asyncio.run(inside_a_notebook_cell()) == 1
