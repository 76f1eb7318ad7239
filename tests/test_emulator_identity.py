"""A separately started emulator is still an emulator: its rows are labelled and free.

As a user would: ``abebeats-lab emulate`` in one process, its printed ``export`` lines in the
environment of a plain ``abebeats-lab compare`` (no ``--emulate``) in another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from abebeats_lab._types import EMULATOR_HEADER
from abebeats_lab.run.costs import NOTE_EMULATED

ROUTES = [
    "runway:gen4.5",
    "replicate:google/veo-3-fast",
    "veo:veo-3.1-fast-generate-001",
    "pika:fal-ai/pika/v2.2/text-to-video",
    "gemini:gemini-omni-flash-preview",
]
EMULATE_SECONDS = "300"
"""The emulator process stops by itself after this, whatever happens to the test."""
_CLI = [sys.executable, "-m", "abebeats_lab.cli"]
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def emulator_exports() -> Iterator[dict[str, str]]:
    """Start ``abebeats-lab emulate`` and read its ``export NAME=VALUE`` lines."""
    with subprocess.Popen(
        [*_CLI, "emulate", "--seconds", EMULATE_SECONDS],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            exports: dict[str, str] = {}
            for line in process.stdout:
                if line.startswith("export "):
                    name, _, value = line.removeprefix("export ").strip().partition("=")
                    exports[name] = value
                elif line.startswith("# Ctrl-C"):
                    break
            assert exports, "abebeats-lab emulate printed no export lines"
            yield exports
        finally:
            process.terminate()  # the process this fixture started, by its handle


def test_rows_against_a_separately_started_emulator_are_emulated_and_free(
    emulator_exports: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _PROXY_VARS}
    env.update(emulator_exports)
    routes = [arg for route in ROUTES for arg in ("--route", route)]
    done = subprocess.run(
        [*_CLI, "compare", "a red kite over dunes", *routes, "--adapt", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    assert sorted(row["route"] for row in rows) == sorted(ROUTES)
    for row in rows:
        assert row["state"] == "succeeded", row["error"]
        assert row["emulated"] is True, row["route"]
        assert row["cost_usd"] == 0, row["route"]
        assert row["cost_note"] == NOTE_EMULATED
        assert row["cost_estimate_usd"] is None or row["cost_estimate_usd"] >= 0


def test_every_emulator_answer_says_so(emulator_exports: dict[str, str]) -> None:
    import httpx

    bases = [value for name, value in emulator_exports.items() if name.endswith("_BASE_URL")]
    assert len(bases) == len(ROUTES)
    for base in bases:
        # An unknown path too: the header is on every answer, errors included.
        answer = httpx.get(f"{base}/no/such/path", trust_env=False)
        assert answer.headers.get(EMULATOR_HEADER) == "1", base
