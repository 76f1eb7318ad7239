"""Shared fixtures: a clean environment for every test, emulators on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Every variable a provider reads. Tests start with none of them set, so a developer's real
# keys can never reach a test, and a test can never pass by accident on a real key.
PROVIDER_VARS = (
    "RUNWAYML_API_SECRET",
    "RUNWAY_API_KEY",
    "RUNWAYML_BASE_URL",
    "REPLICATE_API_TOKEN",
    "REPLICATE_BASE_URL",
    "REPLICATE_POLL_INTERVAL",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_PROJECT_ID",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "FAL_KEY",
    "FAL_KEY_ID",
    "FAL_KEY_SECRET",
    "PIKA_API_KEY",
    "FAL_QUEUE_BASE_URL",
    "FAL_QUEUE_RUN_HOST",
    "FAL_RUN_HOST",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No provider variables, and a working directory without a stray .env."""
    for name in PROVIDER_VARS:
        monkeypatch.delenv(name, raising=False)
    # The user's own prices.toml must never reach a test.
    monkeypatch.setenv("ABEBEATS_LAB_CONFIG_DIR", str(tmp_path / "user-config"))
    monkeypatch.chdir(tmp_path)
    from abebeats_lab import config

    config.load_dotenv_once.cache_clear()
    yield
    config.load_dotenv_once.cache_clear()


@pytest.fixture(autouse=True)
def isolated_user_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each test gets its own empty per-user cache (the run-time history lives there), so no
    test learns from another's jobs, and a developer's own history is never read or written."""
    monkeypatch.setenv("ABEBEATS_LAB_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))
    # Model weights (the CLIP score) are never fetched from the internet by a test: a
    # loopback port nothing listens on refuses at once; tests that fetch serve their own.
    monkeypatch.setenv("ABEBEATS_LAB_WEIGHTS_URL", "http://127.0.0.1:9")


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Jupyter, IPython and matplotlib write into $HOME; point them at a temporary folder."""
    home = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("JUPYTER_CONFIG_DIR", "IPYTHONDIR", "MPLCONFIGDIR")}
    os.environ["JUPYTER_CONFIG_DIR"] = str(home / "jupyter-config")
    os.environ["IPYTHONDIR"] = str(home / "ipython")
    os.environ["MPLCONFIGDIR"] = str(home / "matplotlib")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
