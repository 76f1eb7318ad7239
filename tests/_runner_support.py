"""Helpers shared by the runner, store, timing and resume tests (no fakes: real routes only)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from abebeats_lab import Settings
from abebeats_lab.emulator import can_emulate
from abebeats_lab.providers import available_providers
from abebeats_lab.store import DB_NAME
from abebeats_lab.waiting import WaitPolicy

FAST = WaitPolicy(deadline_s=30.0, min_interval_s=0.02, max_interval_s=0.1)
"""Dense polling so tests finish quickly; the schedule itself is tested in test_waiting."""
LOCAL = "local:procedural"
RUNWAY = "runway:gen4.5"
PIKA = "pika:fal-ai/pika/v2.2/text-to-video"
REPLICATE = "replicate:google/veo-3-fast"
VEO = "veo:veo-3.1-fast-generate-001"
GEMINI = "gemini:gemini-omni-flash-preview"
ROUTE_OF = {"runway": RUNWAY, "pika": PIKA, "replicate": REPLICATE, "veo": VEO, "gemini": GEMINI}
SMALL = Settings(duration_s=2, aspect_ratio="16:9", resolution="240p")
"""Cheap local renders."""
REMOTE = Settings(duration_s=5, aspect_ratio="16:9", resolution="720p")
"""Settings every emulated route accepts as they are."""


def emulator_available(provider: str) -> bool:
    """True once the provider's client and emulator are registered (`pika` lives in fal's)."""
    return provider in available_providers() and can_emulate(provider)


def require_emulator(provider: str) -> None:
    """Skip (visibly, with a reason) only while another engineer's module has not landed."""
    if not emulator_available(provider):
        pytest.skip(f"{provider} client/emulator not in the tree yet (issue 3)")


def db_rows(run_dir: Path) -> list[sqlite3.Row]:
    """The jobs table read through a separate connection (what another process would see)."""
    path = run_dir / DB_NAME
    if not path.exists():
        return []
    with sqlite3.connect(path, timeout=10) as db:
        db.row_factory = sqlite3.Row
        try:
            return list(db.execute("SELECT * FROM jobs ORDER BY prompt_index, route, repeat"))
        except sqlite3.OperationalError:  # schema not written yet
            return []
