"""The official ``google-genai`` SDK in Vertex mode, unchanged but for the base URL, against the
Veo emulator: sync and aio, on ``v1`` and on genai's default ``v1beta1``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from _runner_support import emulator_fixtures
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

from abebeats_lab.emulator import (
    EMULATOR_KEYS,
    EMULATOR_LOCATION,
    EMULATOR_PROJECT,
    Emulators,
    Scenario,
)
from abebeats_lab.emulator.veo import RAI_TRIGGER
from abebeats_lab.media.probe import looks_like_mp4

MODEL = "veo-3.1-fast-generate-001"
POLL_S = 0.02
MAX_POLLS = 500
SOURCE = types.GenerateVideosSource(prompt="a red kite over dunes")
CONFIG = types.GenerateVideosConfig(number_of_videos=1, duration_seconds=4, aspect_ratio="16:9")


emus, emu = emulator_fixtures("veo")


def _client(emus: Emulators, api_version: str | None) -> genai.Client:
    options = types.HttpOptions(base_url=emus.url("veo"), api_version=api_version)
    return genai.Client(
        vertexai=True,
        project=EMULATOR_PROJECT,
        location=EMULATOR_LOCATION,
        credentials=Credentials(token=EMULATOR_KEYS["veo"]),
        http_options=options,
    )


def _until_done(
    client: genai.Client, operation: types.GenerateVideosOperation
) -> types.GenerateVideosOperation:
    for _ in range(MAX_POLLS):
        if operation.done:
            return operation
        time.sleep(POLL_S)
        operation = client.operations.get(operation)
    raise AssertionError("operation never finished")


@pytest.mark.parametrize("api_version", ["v1", None])
def test_sync_generate_poll_and_read_bytes(
    emus: Emulators, emu: Any, api_version: str | None
) -> None:
    client = _client(emus, api_version)
    try:
        operation = client.models.generate_videos(model=MODEL, source=SOURCE, config=CONFIG)
        assert operation.name and "/operations/" in operation.name and not operation.done
        operation = _until_done(client, operation)
    finally:
        client.close()
    assert operation.response and operation.response.generated_videos
    video = operation.response.generated_videos[0].video
    assert video and video.video_bytes and looks_like_mp4(video.video_bytes)
    assert video.mime_type == "video/mp4"
    expected = (
        f"/{api_version or 'v1beta1'}/projects/{EMULATOR_PROJECT}/locations/{EMULATOR_LOCATION}/"
    )
    assert emu.requests[0].path.startswith(expected)
    assert emu.count("create") == 1


@pytest.mark.parametrize("api_version", ["v1", None])
async def test_aio_generate_poll_and_read_bytes(
    emus: Emulators, emu: Any, api_version: str | None
) -> None:
    client = _client(emus, api_version)
    try:
        operation = await client.aio.models.generate_videos(
            model=MODEL, source=SOURCE, config=CONFIG
        )
        for _ in range(MAX_POLLS):
            if operation.done:
                break
            await asyncio.sleep(POLL_S)
            operation = await client.aio.operations.get(operation)
    finally:
        await client.aio.aclose()
        client.close()
    assert operation.result and operation.result.generated_videos
    video = operation.result.generated_videos[0].video
    assert video and video.video_bytes and looks_like_mp4(video.video_bytes)


def test_storage_uri_gives_gcs_uris(emus: Emulators, emu: Any) -> None:
    client = _client(emus, "v1")
    config = CONFIG.model_copy(update={"output_gcs_uri": "gs://bucket/out"})
    try:
        operation = _until_done(
            client, client.models.generate_videos(model=MODEL, source=SOURCE, config=config)
        )
    finally:
        client.close()
    assert operation.response and operation.response.generated_videos
    video = operation.response.generated_videos[0].video
    assert (
        video and video.uri and video.uri.startswith("gs://bucket/out/") and not video.video_bytes
    )


def test_safety_filter_is_reported(emus: Emulators, emu: Any) -> None:
    client = _client(emus, "v1")
    source = types.GenerateVideosSource(prompt=f"a kite {RAI_TRIGGER}")
    try:
        operation = _until_done(
            client, client.models.generate_videos(model=MODEL, source=source, config=CONFIG)
        )
    finally:
        client.close()
    assert operation.response and operation.response.rai_media_filtered_count == 1
    assert operation.response.rai_media_filtered_reasons
    assert not operation.response.generated_videos


def test_failure_is_an_operation_error(emus: Emulators, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(fail=True, failure_message="emulated failure"))
    client = _client(emus, "v1")
    try:
        operation = _until_done(
            client, client.models.generate_videos(model=MODEL, source=SOURCE, config=CONFIG)
        )
    finally:
        client.close()
    assert operation.error and operation.error["message"] == "emulated failure"


def test_quota_and_invalid_argument_errors(emus: Emulators, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(create_429=1, retry_after_s=2))
    client = _client(emus, "v1")
    bad = CONFIG.model_copy(update={"duration_seconds": 30})
    try:
        with pytest.raises(errors.ClientError) as throttled:
            client.models.generate_videos(model=MODEL, source=SOURCE, config=CONFIG)
        with pytest.raises(errors.ClientError) as invalid:
            client.models.generate_videos(model=MODEL, source=SOURCE, config=bad)
        with pytest.raises(errors.ClientError) as unknown:
            client.models.generate_videos(model="veo-9", source=SOURCE, config=CONFIG)
    finally:
        client.close()
    assert throttled.value.code == 429 and throttled.value.status == "RESOURCE_EXHAUSTED"
    retry_info = throttled.value.details["error"]["details"][0]
    assert retry_info["retryDelay"] == "2s"
    assert invalid.value.code == 400 and invalid.value.status == "INVALID_ARGUMENT"
    assert unknown.value.code == 404
    assert not emu.jobs


def test_missing_bearer_is_unauthenticated(emus: Emulators, emu: Any) -> None:
    path = f"/v1/projects/p/locations/l/publishers/google/models/{MODEL}:predictLongRunning"
    response = httpx.post(emus.url("veo") + path, json={"instances": [{"prompt": "x"}]})
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
