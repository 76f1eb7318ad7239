"""Settings: arguments beat the environment, aliases work, .env is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from abebeats_lab import config
from abebeats_lab.errors import MissingKeyError

CANARY = "key_canary_7f3a9c"


def test_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWAYML_API_SECRET", "from-env")
    assert config.key_for("runway", "from-arg").reveal() == "from-arg"  # type: ignore[union-attr]
    assert config.key_for("runway").reveal() == "from-env"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("provider", "alias"), [("runway", "RUNWAY_API_KEY"), ("pika", "PIKA_API_KEY")]
)
def test_aliases_are_read_after_the_official_name(
    monkeypatch: pytest.MonkeyPatch, provider: str, alias: str
) -> None:
    monkeypatch.setenv(alias, "alias-value")
    assert config.key_for(provider).reveal() == "alias-value"  # type: ignore[union-attr]


def test_missing_key_names_variables_argument_and_emulate() -> None:
    with pytest.raises(MissingKeyError) as caught:
        config.key_for("runway")
    message = str(caught.value)
    assert "RUNWAYML_API_SECRET" in message and "RUNWAY_API_KEY" in message
    assert "api_key=" in message and "--emulate" in message


def test_dotenv_is_read_without_overriding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env").write_text(f"FAL_KEY={CANARY}\nREPLICATE_API_TOKEN=from-file\n")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "from-env")
    config.load_dotenv_once.cache_clear()
    assert config.key_for("pika").reveal() == CANARY  # type: ignore[union-attr]
    assert config.key_for("replicate").reveal() == "from-env"  # type: ignore[union-attr]
    captured = capsys.readouterr()
    assert CANARY not in captured.out + captured.err


def test_base_url_argument_env_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.base_url_for("runway") == "https://api.dev.runwayml.com"
    monkeypatch.setenv("RUNWAYML_BASE_URL", "http://127.0.0.1:9/")
    assert config.base_url_for("runway") == "http://127.0.0.1:9"
    assert config.base_url_for("runway", "http://127.0.0.1:8") == "http://127.0.0.1:8"
