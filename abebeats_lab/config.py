"""Settings: which environment variables hold keys and base URLs, and the rule that arguments win.

A ``.env`` file in the working directory is read once (values never printed, never
overriding variables already set). Keys are wrapped in `Secret` so no repr, log line or
exception can show them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from abebeats_lab.errors import MissingKeyError
from abebeats_lab.secret import Secret

__all__ = [
    "CACHE_DIR_ENV",
    "CONFIG_DIR_ENV",
    "PROVIDER_ENV",
    "ProviderEnv",
    "base_url_for",
    "cache_dir",
    "key_for",
    "load_dotenv_once",
    "user_config_dir",
]

APP_NAME = "abebeats-lab"
CACHE_DIR_ENV = "ABEBEATS_LAB_CACHE_DIR"
"""Overrides the per-user cache directory (tests, CI, a shared lab machine)."""
CONFIG_DIR_ENV = "ABEBEATS_LAB_CONFIG_DIR"
"""Overrides the per-user configuration folder (tests point it at a temporary one)."""


@dataclass(frozen=True, slots=True)
class ProviderEnv:
    """The environment variable names one provider reads, official name first."""

    keys: tuple[str, ...]
    base_url: str
    default_base_url: str
    ambient: str = ""
    """Credentials found without a key variable (Google ADC), named for the reader; the
    panel never looks for them, since finding them may probe the network."""
    also: tuple[str, ...] = ()
    """Variables of which one must be set besides the key (Vertex's billed Cloud project)."""


PROVIDER_ENV: Mapping[str, ProviderEnv] = {
    "runway": ProviderEnv(
        ("RUNWAYML_API_SECRET", "RUNWAY_API_KEY"),
        "RUNWAYML_BASE_URL",
        "https://api.dev.runwayml.com",
    ),
    "replicate": ProviderEnv(
        ("REPLICATE_API_TOKEN",), "REPLICATE_BASE_URL", "https://api.replicate.com"
    ),
    # Veo authenticates with Google credentials (ADC); a static token serves emulators and CI.
    "veo": ProviderEnv(
        ("GOOGLE_OAUTH_ACCESS_TOKEN",),
        "GOOGLE_VERTEX_BASE_URL",
        "",
        ambient="Google ADC",
        also=("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT_ID"),
    ),
    # fal.ai's queue serves every fal app; `pika` is the same client under Pika's own name.
    "fal": ProviderEnv(("FAL_KEY",), "FAL_QUEUE_BASE_URL", "https://queue.fal.run"),
    "pika": ProviderEnv(("FAL_KEY", "PIKA_API_KEY"), "FAL_QUEUE_BASE_URL", "https://queue.fal.run"),
    # The Gemini Developer API: an API key, no Cloud project; google-genai's own variable names.
    "gemini": ProviderEnv(
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        "GOOGLE_GEMINI_BASE_URL",
        "https://generativelanguage.googleapis.com",
    ),
}


@functools.cache
def load_dotenv_once() -> bool:
    """Read ``./.env`` into the environment (never overriding what is set). True if found."""
    path = Path.cwd() / ".env"
    if not path.is_file():
        return False
    from dotenv import load_dotenv  # only when there is a file to read

    load_dotenv(path, override=False)
    return True


def key_for(
    provider: str, explicit: str | Secret | None = None, *, required: bool = True
) -> Secret | None:
    """The provider's key: the argument if given, else the first variable set, else an error."""
    if isinstance(explicit, Secret):
        return explicit
    if explicit:
        return Secret(explicit)
    load_dotenv_once()
    env = PROVIDER_ENV[provider]
    for name in env.keys:
        value = os.environ.get(name, "").strip()
        if value:
            return Secret(value)
    if required:
        raise MissingKeyError(provider, env.keys)
    return None


def base_url_for(provider: str, explicit: str | None = None) -> str:
    """The provider's base URL: the argument, else its variable, else the public default."""
    if explicit:
        return explicit.rstrip("/")
    load_dotenv_once()
    env = PROVIDER_ENV[provider]
    return (os.environ.get(env.base_url) or env.default_base_url).rstrip("/")


def env_first(*names: str, default: str | None = None) -> str | None:
    """The first of these variables that is set (aliases), else the default."""
    load_dotenv_once()
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return default


def user_config_dir() -> Path:
    """The user's own settings folder (``prices.toml``); ``$ABEBEATS_LAB_CONFIG_DIR`` wins."""
    override = os.environ.get(CONFIG_DIR_ENV, "").strip()
    if override:
        return Path(override)
    import platformdirs  # only when the folder is asked for

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """The per-user cache directory (run-time history, model weights): ``$ABEBEATS_LAB_CACHE_DIR``,
    else platformdirs'."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs  # only when the folder is asked for, not on `import abebeats_lab`

    return Path(platformdirs.user_cache_dir(APP_NAME))
