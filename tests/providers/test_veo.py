"""VeoProvider against the Veo emulator over loopback, plus its pure translations."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from _runner_support import client_fixture, emulator_fixtures
from google.genai import types
from google.oauth2.credentials import Credentials

from abebeats_lab import JobState, Route, Settings, VideoRequest
from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, Scenario
from abebeats_lab.emulator.veo import NO_VIDEO_TRIGGER, RAI_TRIGGER
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    ConfigError,
    DownloadError,
    MissingKeyError,
    ProtocolError,
    ProviderHTTPError,
    ValidationError,
)
from abebeats_lab.media.download import save_output
from abebeats_lab.providers.veo import VeoProvider, build_config, parse_operation
from abebeats_lab.run.api import compare, resume
from abebeats_lab.waiting import WaitPolicy, wait

FAST = WaitPolicy(deadline_s=30, min_interval_s=0.02, max_interval_s=0.2)
ROUTE = Route.parse("veo:veo-3.1-fast-generate-001")
REQUEST = VideoRequest(
    "a red kite over dunes", duration_s=4, aspect_ratio="9:16", resolution="720p", seed=7
)


@pytest.fixture(autouse=True)
def no_gcloud_adc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's own gcloud ADC file must not change what these tests see."""
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))


emus, emu = emulator_fixtures("veo")
provider = client_fixture(lambda emus: VeoProvider(**emus.client_options("veo"), timeout_s=5))


# -- translation and configuration (no network) ----------------------------------------------


def test_config_carries_every_setting_and_one_video() -> None:
    request = REQUEST.replace(negative_prompt="rain", generate_audio=True, resolution="1080p")
    source, config = build_config(request, ROUTE)
    assert source.prompt == "a red kite over dunes" and source.image is None
    assert config.number_of_videos == 1
    assert (config.duration_seconds, config.aspect_ratio, config.resolution) == (4, "9:16", "1080p")
    assert (config.seed, config.negative_prompt, config.generate_audio) == (7, "rain", True)


def test_data_uri_image_is_sent_as_bytes_and_https_is_refused() -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    source, _ = build_config(REQUEST.replace(image=data_uri), ROUTE)
    assert source.image is not None
    assert source.image.image_bytes == b"\x89PNG fake" and source.image.mime_type == "image/png"
    with pytest.raises(ValidationError, match="gs://"):
        build_config(REQUEST.replace(image="https://example.invalid/a.png"), ROUTE)


def test_unknown_extras_are_refused_with_the_allowed_names() -> None:
    with pytest.raises(ValidationError, match="enhance_prompt"):
        build_config(REQUEST.replace(extras={"colour": "red"}), ROUTE)


def test_missing_credentials_name_both_variables() -> None:
    with pytest.raises(MissingKeyError) as caught:
        VeoProvider(project="p")
    message = str(caught.value)
    assert "GOOGLE_OAUTH_ACCESS_TOKEN" in message and "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "--emulate" in message


def test_missing_project_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        VeoProvider(api_key="token")


def test_project_alias_and_default_location(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT_ID", "aliased")
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "token-from-env")
    provider = VeoProvider()
    assert (provider.project, provider.location) == ("aliased", "us-central1")
    assert "token-from-env" not in repr(provider)


def test_adc_file_is_read_without_any_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    adc = tmp_path / "adc.json"
    user = {
        "type": "authorized_user",
        "client_id": "c",
        "client_secret": "s",
        "refresh_token": "r",
        "quota_project_id": "from-adc",
    }
    adc.write_text(json.dumps(user))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    provider = VeoProvider()
    assert provider.project == "from-adc"
    assert provider.can_cancel is False


def test_adc_file_of_another_type_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "external_account", "credential_source": {}}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    with pytest.raises(ConfigError, match="external_account"):
        VeoProvider(project="p")


def test_gcloud_adc_file_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "gcloud-config"
    folder.mkdir()
    user = {"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
    (folder / "application_default_credentials.json").write_text(json.dumps(user))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(folder))
    assert VeoProvider(project="p").project == "p"


# -- against the emulator -------------------------------------------------------------------


async def test_inline_video_is_saved_and_probed(
    provider: VeoProvider, emu: Any, tmp_path: Path
) -> None:
    job = await provider.submit(REQUEST, ROUTE)
    assert job.id.startswith("projects/emulated-project/locations/us-central1/")
    assert emu.requests[0].path.startswith("/v1/projects/emulated-project/")
    result = await wait(provider, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED
    refs = await provider.outputs(job, result.status)
    output = await save_output(refs[0], tmp_path / "veo.mp4")
    assert (output.probe.width, output.probe.height) == (720, 1280)
    assert "videos" in result.status.raw and result.status.raw["videos"][0]["bytes"] > 0


async def test_genai_client_sees_the_emulator(emus: Emulators, emu: Any) -> None:
    # Pointed at the emulator by hand (emulated=False), the client learns it from the answers.
    options = {**emus.client_options("veo"), "emulated": False}
    async with VeoProvider(**options) as client:
        assert not client.emulated
        job = await client.submit(REQUEST, ROUTE)
        assert client.emulated
        assert (await client.status(job)).state in (
            JobState.QUEUED,
            JobState.RUNNING,
            JobState.SUCCEEDED,
        )


def test_one_provider_serves_event_loops_one_after_another(emus: Emulators, emu: Any) -> None:
    # A connection opened on another loop would hang until the read timeout: each loop gets
    # its own genai client.
    client = VeoProvider(**emus.client_options("veo"), timeout_s=5)

    async def one() -> tuple[JobState, Any]:
        job = await client.submit(REQUEST, ROUTE)
        return (await wait(client, job, policy=FAST)).status.state, client._client()

    first_loop, second_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first_state, first_genai = first_loop.run_until_complete(one())
        second_state, second_genai = second_loop.run_until_complete(one())
        assert first_state is second_state is JobState.SUCCEEDED
        assert first_genai is not second_genai
        first_loop.run_until_complete(first_genai.aio.aclose())
        second_loop.run_until_complete(client.aclose())
    finally:
        first_loop.close()
        second_loop.close()


async def test_explicit_credentials_object(emus: Emulators, emu: Any) -> None:
    options = emus.client_options("veo")
    options.pop("api_key")
    client = VeoProvider(**options, credentials=Credentials(token=EMULATOR_KEYS["veo"]))
    try:
        job = await client.submit(REQUEST, ROUTE)
        assert (await wait(client, job, policy=FAST)).status.state is JobState.SUCCEEDED
    finally:
        await client.aclose()


async def test_not_done_is_running(provider: VeoProvider, emu: Any) -> None:
    emu.set_scenario(Scenario.fast().with_times(0.0, 30.0))
    job = await provider.submit(REQUEST, ROUTE)
    status = await provider.status(job)
    assert status.state is JobState.RUNNING and status.progress is None
    await provider.cancel(job)  # a no-op, and harmless
    assert (await provider.status(job)).state is JobState.RUNNING


async def test_gcs_output_needs_google_cloud_storage(provider: VeoProvider, emu: Any) -> None:
    request = REQUEST.replace(extras={"output_gcs_uri": "gs://bucket/out/"})
    job = await provider.submit(request, ROUTE)
    result = await wait(provider, job, policy=FAST)
    url = result.status.outputs[0].url
    assert url is not None and url.startswith("gs://bucket/out/")
    with pytest.raises(DownloadError, match="google-cloud-storage"):
        await provider.outputs(job, result.status)


async def test_safety_filter_is_a_failure_with_the_reason(provider: VeoProvider, emu: Any) -> None:
    job = await provider.submit(REQUEST.replace(prompt=f"a kite {RAI_TRIGGER}"), ROUTE)
    result = await wait(provider, job, policy=FAST)
    assert result.status.state is JobState.FAILED
    assert result.status.error_code == "RAI_FILTERED"
    assert result.status.error and "safety filter" in result.status.error


async def test_done_without_a_video_or_a_count_is_a_failed_row_with_the_reasons(
    emus: Emulators, emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in emus.env().items():
        monkeypatch.setenv(name, value)
    settings = Settings(duration_s=4, aspect_ratio="16:9", resolution="720p")
    prompt = f"a kite {NO_VIDEO_TRIGGER}"
    first = await compare(prompt, [str(ROUTE)], settings, run_dir=tmp_path, policy=FAST)
    (row,) = first.rows
    assert row.state == "failed", row.error
    assert row.error and "done without a video: Video blocked" in row.error
    asked = emu.count("status")
    (again,) = (await resume(tmp_path, policy=FAST)).rows
    assert again.state == "failed" and again.error == row.error
    assert emu.count("status") == asked  # settled: resume has nothing left to ask


def test_done_with_neither_a_response_nor_an_error_is_a_failure() -> None:
    status = parse_operation(types.GenerateVideosOperation(name="operations/1", done=True))
    assert status.state is JobState.FAILED
    assert status.error == "done without a video: no reason given"


async def test_failed_operation_carries_code_and_message(provider: VeoProvider, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(fail=True, failure_message="quota of GPUs exhausted"))
    job = await provider.submit(REQUEST, ROUTE)
    result = await wait(provider, job, policy=FAST)
    assert result.status.state is JobState.FAILED
    assert result.status.error == "quota of GPUs exhausted"
    assert result.status.error_code == "13"


async def test_cancelled_elsewhere_is_canceled(provider: VeoProvider, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(cancel_elsewhere_after_s=0.05).with_times(0.0, 30.0))
    job = await provider.submit(REQUEST, ROUTE)
    result = await wait(provider, job, policy=FAST)
    assert result.status.state is JobState.CANCELED


async def test_dropped_create_is_ambiguous_with_one_job(provider: VeoProvider, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(drop_create=1))
    with pytest.raises(AmbiguousSubmitError):
        await provider.submit(REQUEST, ROUTE)
    assert len(emu.jobs) == 1 and emu.count("create") == 1


async def test_hung_create_is_ambiguous(emus: Emulators, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(hang_create=1))
    client = VeoProvider(**emus.client_options("veo"), timeout_s=0.5)
    try:
        with pytest.raises(AmbiguousSubmitError):
            await client.submit(REQUEST, ROUTE)
    finally:
        await client.aclose()
    assert len(emu.jobs) == 1


async def test_resource_exhausted_carries_the_retry_delay(provider: VeoProvider, emu: Any) -> None:
    job = await provider.submit(REQUEST, ROUTE)
    emu.set_scenario(Scenario.fast(status_429=1, retry_after_s=0.25))
    with pytest.raises(ProviderHTTPError) as caught:
        await provider.status(job)
    assert caught.value.status_code == 429 and caught.value.retry_after_s == 0.25
    assert "RESOURCE_EXHAUSTED" in caught.value.body


async def test_invalid_argument_is_not_retried(provider: VeoProvider, emu: Any) -> None:
    request = REQUEST.replace(extras={"person_generation": "everyone"})
    with pytest.raises(ProviderHTTPError) as caught:
        await provider.submit(request, ROUTE)
    assert caught.value.status_code == 400 and "INVALID_ARGUMENT" in caught.value.body
    assert emu.count("create") == 1 and not emu.jobs


@pytest.mark.parametrize("fault", [{"malformed_status": 1}, {"unknown_status": True}])
async def test_unreadable_status_is_a_protocol_error(
    provider: VeoProvider, emu: Any, fault: dict[str, Any]
) -> None:
    job = await provider.submit(REQUEST, ROUTE)
    emu.set_scenario(Scenario.fast(**fault))
    with pytest.raises(ProtocolError) as caught:
        await provider.status(job)
    if fault.get("unknown_status"):  # the message names the field and the word (F14)
        assert "done = 'PAUSED'" in str(caught.value)
