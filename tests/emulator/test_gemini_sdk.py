"""The official ``google-genai`` SDK in API-key mode (Gemini Developer API), unchanged but for
the base URL, against the Gemini emulator: the Interactions API, sync and aio, on genai's
default ``v1`` and on ``v1beta``, end to end to a playable MP4."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _runner_support import emulator_fixtures
from google import genai
from google.genai import _interactions as genai_interactions
from google.genai import types
from google.genai.interactions import Interaction

from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, Scenario
from abebeats_lab.emulator.gemini import SAFETY_TRIGGER
from abebeats_lab.media.probe import probe

MODEL = "gemini-omni-flash-preview"
POLL_S = 0.02
MAX_POLLS = 500
VIDEO = {"type": "video", "aspect_ratio": "9:16", "duration": "4s", "resolution": "720p"}
TERMINAL = ("completed", "failed", "cancelled")


emus, emu = emulator_fixtures("gemini")


def _client(emus: Emulators, api_version: str | None = None) -> genai.Client:
    options = types.HttpOptions(base_url=emus.url("gemini"), api_version=api_version)
    return genai.Client(api_key=EMULATOR_KEYS["gemini"], http_options=options)


def _until_done(client: genai.Client, interaction: Interaction) -> Interaction:
    for _ in range(MAX_POLLS):
        if interaction.status in TERMINAL:
            return interaction
        time.sleep(POLL_S)
        assert interaction.id
        interaction = client.interactions.get(id=interaction.id)
    raise AssertionError("interaction never finished")


def _save(interaction: Interaction, dest: Path) -> Path:
    video = interaction.output_video
    assert video is not None and video.data and video.mime_type == "video/mp4"
    dest.write_bytes(base64.b64decode(video.data))
    return dest


@pytest.mark.parametrize("api_version", [None, "v1beta"])
def test_background_create_poll_and_play(
    emus: Emulators, emu: Any, tmp_path: Path, api_version: str | None
) -> None:
    client = _client(emus, api_version)
    try:
        created = client.interactions.create(
            model=MODEL, input="a red kite over dunes", background=True, response_format=VIDEO
        )
        assert created.id and created.status in ("queued", "in_progress")
        done = _until_done(client, created)
    finally:
        client.close()
    assert done.status == "completed" and done.usage and done.usage.total_output_tokens
    info = probe(_save(done, tmp_path / "omni.mp4"))
    assert (info.width, info.height, info.codec) == (720, 1280, "h264")
    assert abs(info.duration_s - 4) < 0.1 and info.has_audio
    assert emu.requests[0].path == f"/{api_version or 'v1'}/interactions"
    assert emu.count("create") == 1


async def test_aio_create_poll_and_play(emus: Emulators, emu: Any, tmp_path: Path) -> None:
    client = _client(emus)
    try:
        interaction = await client.aio.interactions.create(
            model=MODEL, input="a lighthouse at dawn", background=True, response_format=VIDEO
        )
        for _ in range(MAX_POLLS):
            if interaction.status in TERMINAL:
                break
            await asyncio.sleep(POLL_S)
            assert interaction.id
            interaction = await client.aio.interactions.get(id=interaction.id)
    finally:
        await client.aio.aclose()
        client.close()
    assert interaction.status == "completed"
    assert probe(_save(interaction, tmp_path / "aio.mp4")).codec == "h264"


def test_foreground_create_answers_when_the_video_exists(emus: Emulators, emu: Any) -> None:
    # The docs' shortest example: no background flag, the answer carries the video.
    client = _client(emus)
    try:
        interaction = client.interactions.create(model=MODEL, input="a marble on a track")
    finally:
        client.close()
    assert interaction.status == "completed" and interaction.output_video is not None


def test_uri_delivery_is_downloaded_with_files_download(
    emus: Emulators, emu: Any, tmp_path: Path
) -> None:
    client = _client(emus)
    try:
        created = client.interactions.create(
            model=MODEL,
            input="a paper boat",
            background=True,
            response_format={**VIDEO, "delivery": "uri"},
        )
        video = _until_done(client, created).output_video
        assert video is not None and video.uri and not video.data
        # genai's file-name parser reads https URIs only; the emulator speaks plain http.
        match = re.search(r"files/([a-z0-9]+):download", video.uri)
        assert match
        data = client.files.download(file=f"files/{match[1]}")
    finally:
        client.close()
    (tmp_path / "uri.mp4").write_bytes(data)
    assert probe(tmp_path / "uri.mp4").codec == "h264"
    assert emu.count("download") == 1


def test_cancel_then_cancel_again(emus: Emulators, emu: Any) -> None:
    emu.set_scenario(Scenario.fast().with_times(0.05, 30.0))
    client = _client(emus)
    try:
        created = client.interactions.create(model=MODEL, input="x", background=True)
        assert created.id
        assert client.interactions.cancel(id=created.id).status == "cancelled"
        assert client.interactions.get(id=created.id).status == "cancelled"
        with pytest.raises(genai_interactions.BadRequestError):
            client.interactions.cancel(id=created.id)
    finally:
        client.close()


def test_failure_and_safety_block(emus: Emulators, emu: Any) -> None:
    client = _client(emus)
    try:
        blocked = _until_done(
            client,
            client.interactions.create(
                model=MODEL, input=f"a kite {SAFETY_TRIGGER}", background=True
            ),
        )
        emu.set_scenario(Scenario.fast(fail=True, failure_message="emulated failure"))
        failed = _until_done(
            client, client.interactions.create(model=MODEL, input="a kite", background=True)
        )
    finally:
        client.close()
    assert blocked.status == "completed" and blocked.output_video is None
    assert "safety" in (blocked.output_text or "")
    assert failed.status == "failed" and failed.errors
    assert failed.errors[0].message == "emulated failure"


def test_quota_invalid_and_unknown_model_errors(emus: Emulators, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(create_429=1, retry_after_s=2))
    options = types.HttpOptions(
        base_url=emus.url("gemini"), retry_options=types.HttpRetryOptions(attempts=1)
    )
    client = genai.Client(api_key=EMULATOR_KEYS["gemini"], http_options=options)
    try:
        with pytest.raises(genai_interactions.RateLimitError) as throttled:
            client.interactions.create(model=MODEL, input="x", background=True)
        with pytest.raises(genai_interactions.BadRequestError) as invalid:
            client.interactions.create(
                model=MODEL,
                input="x",
                background=True,
                response_format={**VIDEO, "duration": "30s"},
            )
        with pytest.raises(genai_interactions.NotFoundError):
            client.interactions.create(model="gemini-omni-9", input="x", background=True)
    finally:
        client.close()
    assert throttled.value.response.headers["retry-after"] == "2"
    assert "duration" in str(invalid.value)
    assert not emu.jobs


def test_missing_key_is_unauthenticated(emus: Emulators, emu: Any) -> None:
    response = httpx.post(emus.url("gemini") + "/v1beta/interactions", json={"model": MODEL})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
