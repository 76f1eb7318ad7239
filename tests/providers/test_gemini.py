"""GeminiProvider against the Gemini API emulator over loopback, its pure translations, and the
CLI's ``generate --route gemini:...  --emulate`` as a user runs it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from _runner_support import client_fixture, emulator_fixtures, run_cli

from abebeats_lab import JobState, Route, VideoRequest
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.emulator.gemini import SAFETY_TRIGGER
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    MissingKeyError,
    ProtocolError,
    ProviderHTTPError,
    ValidationError,
)
from abebeats_lab.media.download import save_output
from abebeats_lab.media.probe import probe
from abebeats_lab.providers.gemini import GeminiProvider, build_body
from abebeats_lab.waiting import WaitPolicy, wait

FAST = WaitPolicy(deadline_s=30, min_interval_s=0.02, max_interval_s=0.2)
ROUTE = Route.parse("gemini:gemini-omni-flash-preview")
REQUEST = VideoRequest(
    "a red kite over dunes", duration_s=4, aspect_ratio="9:16", resolution="720p", seed=7
)


emus, emu = emulator_fixtures("gemini")
provider = client_fixture(lambda emus: GeminiProvider(**emus.client_options("gemini"), timeout_s=5))


# -- translation and configuration (no network) ----------------------------------------------


def test_body_is_a_background_video_interaction() -> None:
    body = build_body(REQUEST.replace(extras={"delivery": "uri", "task": "text_to_video"}), ROUTE)
    assert body["model"] == "gemini-omni-flash-preview" and body["background"] is True
    assert body["input"] == "a red kite over dunes"
    assert body["response_format"] == {
        "type": "video",
        "aspect_ratio": "9:16",
        "duration": "4s",
        "resolution": "720p",
        "delivery": "uri",
    }
    assert body["generation_config"] == {"seed": 7, "video_config": {"task": "text_to_video"}}


def test_data_uri_image_is_an_inline_block_and_https_is_refused() -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    body = build_body(REQUEST.replace(image=data_uri), ROUTE)
    text, image = body["input"]
    assert text == {"type": "text", "text": "a red kite over dunes"}
    assert image["type"] == "image" and image["mime_type"] == "image/png"
    assert base64.b64decode(image["data"]) == b"\x89PNG fake"
    with pytest.raises(ValidationError, match="Files API"):
        build_body(REQUEST.replace(image="https://example.invalid/a.png"), ROUTE)


def test_unknown_extras_are_refused_with_the_allowed_names() -> None:
    with pytest.raises(ValidationError, match="delivery"):
        build_body(REQUEST.replace(extras={"colour": "red"}), ROUTE)


def test_missing_key_names_both_variables_and_emulate() -> None:
    with pytest.raises(MissingKeyError) as caught:
        GeminiProvider()
    message = str(caught.value)
    assert "GEMINI_API_KEY" in message and "GOOGLE_API_KEY" in message and "--emulate" in message


def test_key_alias_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "key-from-env")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9/")
    provider = GeminiProvider()
    assert "key-from-env" not in repr(provider)
    assert "http://127.0.0.1:9" in repr(provider)


def test_negative_prompt_is_refused_before_any_call() -> None:
    provider = GeminiProvider(api_key="k")
    with pytest.raises(ValidationError, match="negative_prompt"):
        provider.validate(REQUEST.replace(negative_prompt="rain"), ROUTE)


# -- against the emulator -------------------------------------------------------------------


async def test_inline_video_is_saved_and_probed(
    provider: GeminiProvider, emu: Any, tmp_path: Path
) -> None:
    job = await provider.submit(REQUEST, ROUTE)
    assert emu.requests[0].path == "/v1/interactions"
    result = await wait(provider, job, policy=FAST)
    status = result.status
    assert status.state is JobState.SUCCEEDED and status.raw_status == "completed"
    assert status.created_at is not None and status.completed_at is not None
    assert status.raw["usage"]["total_output_tokens"] > 0
    assert status.raw["video"]["data_chars"] > 0  # counted, never stored
    refs = await provider.outputs(job, status)
    output = await save_output(refs[0], tmp_path / "gemini.mp4")
    assert (output.probe.width, output.probe.height) == (720, 1280)
    assert abs(output.probe.duration_s - 4) < 0.1


async def test_an_answer_past_the_cap_is_a_protocol_error_naming_it(
    emus: Emulators, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real cap is 512 MiB; lowered here so the emulator's inline video is past it."""
    small = 4096
    monkeypatch.setattr(GeminiProvider, "answer_cap", small)
    async with GeminiProvider(**emus.client_options("gemini"), timeout_s=5) as capped:
        job = await capped.submit(REQUEST, ROUTE)
        with pytest.raises(ProtocolError, match=f"{small}-byte cap"):
            await wait(capped, job, policy=FAST)


async def test_uri_delivery_is_fetched_with_the_key(
    provider: GeminiProvider, emu: Any, tmp_path: Path
) -> None:
    job = await provider.submit(REQUEST.replace(extras={"delivery": "uri"}), ROUTE)
    result = await wait(provider, job, policy=FAST)
    url = result.status.outputs[0].url
    assert url is not None and ":download" in url
    refs = await provider.outputs(job, result.status)
    assert refs[0].data is not None
    assert (await save_output(refs[0], tmp_path / "uri.mp4")).probe.codec == "h264"
    assert emu.count("download") == 1


async def test_client_pointed_by_hand_learns_it_is_emulated(emus: Emulators, emu: Any) -> None:
    options = {**emus.client_options("gemini"), "emulated": False}
    async with GeminiProvider(**options) as client:
        assert not client.emulated
        await client.submit(REQUEST, ROUTE)
        assert client.emulated


async def test_failure_carries_code_and_message(provider: GeminiProvider, emu: Any) -> None:
    emu.set_scenario(
        Scenario.fast(fail=True, failure_message="quota of TPUs exhausted", failure_code="INTERNAL")
    )
    job = await provider.submit(REQUEST, ROUTE)
    result = await wait(provider, job, policy=FAST)
    assert result.status.state is JobState.FAILED and result.status.raw_status == "failed"
    assert result.status.error == "quota of TPUs exhausted"
    assert result.status.error_code == "INTERNAL"


async def test_safety_block_is_a_failure_with_the_reason(
    provider: GeminiProvider, emu: Any
) -> None:
    job = await provider.submit(REQUEST.replace(prompt=f"a kite {SAFETY_TRIGGER}"), ROUTE)
    result = await wait(provider, job, policy=FAST)
    assert result.status.state is JobState.FAILED and result.status.raw_status == "completed"
    assert result.status.error_code == "NO_VIDEO"
    assert result.status.error and "safety filter" in result.status.error


async def test_cancel_stops_the_interaction(provider: GeminiProvider, emu: Any) -> None:
    emu.set_scenario(Scenario.fast().with_times(0.05, 30.0))
    job = await provider.submit(REQUEST, ROUTE)
    await provider.cancel(job)
    result = await wait(provider, job, policy=FAST)
    assert result.status.state is JobState.CANCELED
    await provider.cancel(job)  # a second cancel is refused by the server, and harmless
    assert emu.count("cancel") == 2


async def test_cancelled_elsewhere_is_canceled(provider: GeminiProvider, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(cancel_elsewhere_after_s=0.05).with_times(0.0, 30.0))
    job = await provider.submit(REQUEST, ROUTE)
    assert (await wait(provider, job, policy=FAST)).status.state is JobState.CANCELED


async def test_429_on_create_is_retried_and_creates_one_job(
    provider: GeminiProvider, emu: Any
) -> None:
    emu.set_scenario(Scenario.fast(create_429=2, retry_after_s=0.05))
    job = await provider.submit(REQUEST, ROUTE)
    assert (await wait(provider, job, policy=FAST)).status.state is JobState.SUCCEEDED
    assert emu.count("create") == 3 and len(emu.jobs) == 1


async def test_dropped_create_is_ambiguous_with_one_job(provider: GeminiProvider, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(drop_create=1))
    with pytest.raises(AmbiguousSubmitError):
        await provider.submit(REQUEST, ROUTE)
    assert len(emu.jobs) == 1 and emu.count("create") == 1


async def test_hung_create_is_ambiguous(emus: Emulators, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(hang_create=1))
    client = GeminiProvider(**emus.client_options("gemini"), timeout_s=0.5)
    try:
        with pytest.raises(AmbiguousSubmitError):
            await client.submit(REQUEST, ROUTE)
    finally:
        await client.aclose()
    assert len(emu.jobs) == 1 and emu.count("create") == 1


async def test_resource_exhausted_carries_the_retry_delay(
    provider: GeminiProvider, emu: Any
) -> None:
    job = await provider.submit(REQUEST, ROUTE)
    emu.set_scenario(Scenario.fast(status_429=1, retry_after_s=0.25))
    with pytest.raises(ProviderHTTPError) as caught:
        await provider.status(job)
    assert caught.value.status_code == 429 and caught.value.retry_after_s == 0.25
    assert "RESOURCE_EXHAUSTED" in caught.value.body


async def test_invalid_argument_is_not_retried(provider: GeminiProvider, emu: Any) -> None:
    request = REQUEST.replace(extras={"delivery": "carrier-pigeon"})
    with pytest.raises(ProviderHTTPError) as caught:
        await provider.submit(request, ROUTE)
    assert caught.value.status_code == 400 and "INVALID_ARGUMENT" in caught.value.body
    assert emu.count("create") == 1 and not emu.jobs


async def test_unknown_status_word_is_a_protocol_error_naming_it(
    provider: GeminiProvider, emu: Any
) -> None:
    job = await provider.submit(REQUEST, ROUTE)
    emu.set_scenario(Scenario.fast(unknown_status=True))
    with pytest.raises(ProtocolError, match="'suspended'"):
        await provider.status(job)


async def test_unreadable_status_is_a_protocol_error(provider: GeminiProvider, emu: Any) -> None:
    job = await provider.submit(REQUEST, ROUTE)
    emu.set_scenario(Scenario.fast(malformed_status=1))
    with pytest.raises(ProtocolError):
        await provider.status(job)


# -- the CLI, as a user runs it -------------------------------------------------------------


def test_cli_generate_emulated_gemini_route(tmp_path: Path) -> None:
    done = run_cli(
        "generate",
        "--route",
        "gemini:gemini-omni-flash-preview",
        "a lighthouse at dawn",
        "--duration",
        "4",
        "--emulate",
        "--out",
        "x.mp4",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    info = probe(tmp_path / "x.mp4")
    assert info.codec == "h264" and abs(info.duration_s - 4) < 0.1
