"""Fixtures the view tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from abebeats_lab.emulator import Emulators, Scenario


@pytest.fixture
def failing_runway(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A Runway-speaking server on loopback whose every job fails, reached as the real route
    through the environment."""
    with Emulators(["runway"], Scenario.fast(fail=True)) as emulators:
        for name, value in emulators.env().items():
            monkeypatch.setenv(name, value)
        yield
