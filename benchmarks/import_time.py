"""Scenario 5: what ``import abebeats_lab`` costs over a bare interpreter start, and what it loads.

Each figure is the median of several fresh interpreters (``python -c pass`` against
``python -c "import abebeats_lab"``), so disk caches are warm and one slow start does not
decide the result.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["HEAVY", "ImportConfig", "run"]

HEAVY = (
    "av",
    "fal_client",
    "google.genai",
    "ipywidgets",
    "matplotlib",
    "numpy",
    "pandas",
    "replicate",
    "runwayml",
    "starlette",
    "uvicorn",
)
"""Modules the package must not import eagerly (SDKs, PyAV, data and UI stacks, servers)."""
_MS = 1000.0
_LIST_MODULES = "import sys, json, abebeats_lab; print(json.dumps(sorted(sys.modules)))"


@dataclass(frozen=True)
class ImportConfig:
    """How many fresh interpreters to time for each figure."""

    runs: int = 9


def _time_once(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def _median_ms(code: str, runs: int) -> float:
    _time_once(code)  # warm the disk cache; not counted
    return statistics.median(_time_once(code) for _ in range(runs)) * _MS


def run(config: ImportConfig) -> dict[str, Any]:
    """Bare start, start plus import, their difference and ratio, and the heavy modules seen."""
    bare = _median_ms("pass", config.runs)
    with_import = _median_ms("import abebeats_lab", config.runs)
    listed = subprocess.run(
        [sys.executable, "-c", _LIST_MODULES], check=True, capture_output=True, text=True
    )
    loaded = set(json.loads(listed.stdout))
    heavy = [name for name in HEAVY if name in loaded]
    return {
        "config": asdict(config),
        "bare_start_ms": round(bare, 1),
        "import_start_ms": round(with_import, 1),
        "added_ms": round(with_import - bare, 1),
        "ratio": round(with_import / bare, 2),
        "modules_loaded": len(loaded),
        "heavy_modules": heavy,
    }
