"""Helpers shared by the tests (no fakes: real routes, real emulators, the real CLI)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from abebeats_lab import Settings
from abebeats_lab.emulator import Emulators, EmulatorState, Scenario
from abebeats_lab.providers import Provider
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
CLI_TIMEOUT_S = 180.0
"""Only a hung child reaches it; it keeps a stuck CLI from stalling the suite."""
KILL_TRIES = 5
"""A kill (or interrupt) that lands after an emulated job finished proves nothing about a job
in flight: the test starts a new run and kills again, and fails once this many in a row
landed late, rather than passing without having checked anything."""
LATE_EVERY_TIME = f"every one of {KILL_TRIES} kills landed after the emulated jobs had finished"
P = TypeVar("P", bound=Provider)


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


def run_cli(
    *args: str, cwd: Path | None = None, timeout_s: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """``abebeats-lab ARGS`` as a user runs it: a child process (this tree on its PYTHONPATH),
    in ``cwd`` (default: the test's own folder), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "abebeats_lab.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def emulator_fixtures(provider: str) -> tuple[Any, Any]:
    """Fixtures ``emus`` (the provider's emulator on loopback, one per test module) and ``emu``
    (its state, with a fresh fast scenario and no jobs or requests for each test).

    A test module takes them by name: ``emus, emu = emulator_fixtures("veo")``.
    """

    @pytest.fixture(scope="module")
    def emus() -> Iterator[Emulators]:
        with Emulators([provider], Scenario.fast()) as running:
            yield running

    @pytest.fixture
    def emu(emus: Emulators) -> Iterator[EmulatorState]:
        state = emus.states[provider]
        state.set_scenario(Scenario.fast())
        state.jobs.clear()
        state.requests.clear()
        yield state

    return emus, emu


def client_fixture(make: Callable[[Emulators], P]) -> Any:
    """A fixture ``provider``: the client ``make`` builds on the module's ``emus``, closed after
    the test. A test module takes it by name: ``provider = client_fixture(...)``."""

    @pytest.fixture
    async def provider(emus: Emulators) -> AsyncIterator[P]:
        client = make(emus)
        yield client
        await client.aclose()

    return provider
