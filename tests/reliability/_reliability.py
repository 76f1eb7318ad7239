"""Shared pieces of the reliability suite: routes, canary keys, emulator resets, leftovers check.

Every reliability test talks to the emulators over loopback through the same environment
variables a user would set (``*_BASE_URL`` and the key variables), with recognisable fake
keys, so the fault suite doubles as a leak test.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from abebeats_lab.emulator import Emulators, EmulatorState, Scenario
from abebeats_lab.media.probe import probe
from abebeats_lab.store import JobRow

ROUTES: Mapping[str, str] = {
    "runway": "runway:gen4.5",
    "replicate": "replicate:google/veo-3-fast",
    "veo": "veo:veo-3.1-fast-generate-001",
    "pika": "pika:fal-ai/pika/v2.2/text-to-video",
}
PROVIDERS = tuple(sorted(ROUTES))

CANARY_HEX = "c0ffee" * 21 + "ab"
"""128 hex digits: the Runway emulator checks that shape (``key_`` + 128 hex)."""
CANARY_KEYS: Mapping[str, str] = {
    "runway": "key_" + CANARY_HEX,
    "replicate": "r8_" + CANARY_HEX,
    "veo": "ya29." + CANARY_HEX,
    "pika": "fal-" + CANARY_HEX,
}
KEY_VARS: Mapping[str, str] = {
    "runway": "RUNWAYML_API_SECRET",
    "replicate": "REPLICATE_API_TOKEN",
    "veo": "GOOGLE_OAUTH_ACCESS_TOKEN",
    "pika": "FAL_KEY",
}
NEEDLE = "c0ffee" * 3
"""Any 18 characters of the canary: catches a key that leaked truncated or re-quoted."""


def canary_env(emulators: Emulators) -> dict[str, str]:
    """The variables that point every client at ``emulators`` with the canary keys."""
    env = emulators.env()
    for provider in emulators.servers:
        env[KEY_VARS[provider]] = CANARY_KEYS[provider]
    return env


def point_at(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> Emulators:
    """Set the user-facing variables (base URLs, canary keys) for this test; returns
    ``emulators`` so an ``env`` fixture can hand it on."""
    for name, value in canary_env(emulators).items():
        monkeypatch.setenv(name, value)
    return emulators


def needles() -> list[bytes]:
    """Byte patterns of a leaked key: plain, base64 (as in a Basic header) and the fragment."""
    found = [NEEDLE.encode()]
    for key in CANARY_KEYS.values():
        found.append(base64.b64encode(key.encode())[:40])
    return found


def leaks(data: str | bytes) -> list[str]:
    """Which canary patterns occur in ``data`` (empty when clean)."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return [n.decode() for n in needles() if n in raw]


def reset(emulators: Emulators, provider: str, scenario: Scenario) -> EmulatorState:
    """Give one emulator a scenario, fresh fault counters, no jobs and an empty request log."""
    emulators.set_scenario(scenario, provider)
    state = emulators.states[provider]
    state.jobs.clear()
    state.requests.clear()
    return state


def leftovers(run_dir: Path) -> list[str]:
    """Temporary or hidden files anywhere under a run directory (a half-written download)."""
    return sorted(
        str(p.relative_to(run_dir))
        for p in run_dir.rglob("*")
        if p.is_file() and (p.name.endswith(".part") or p.name.startswith("."))
    )


def check_outputs(run_dir: Path, rows: Iterable[JobRow]) -> None:
    """Every succeeded row has one verified video; nothing else is in ``outputs/``."""
    rows = list(rows)
    assert leftovers(run_dir) == []
    expected = {Path(r.output_path).name for r in rows if r.state == "succeeded" and r.output_path}
    assert len(expected) == sum(1 for r in rows if r.state == "succeeded")
    present = {p.name for p in (run_dir / "outputs").iterdir()}
    assert present == expected
    for row in rows:
        if row.output_path:
            info = probe(run_dir / row.output_path)
            assert info.bytes == row.bytes
            assert info.duration_s > 0
