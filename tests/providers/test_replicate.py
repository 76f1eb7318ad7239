"""ReplicateProvider against the Replicate emulator over loopback, plus its pure translations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _runner_support import client_fixture, emulator_fixtures

from abebeats_lab._types import Job, JobState, Route, VideoRequest
from abebeats_lab.capabilities import capabilities_for
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    MissingKeyError,
    ProtocolError,
    ProviderHTTPError,
    ValidationError,
)
from abebeats_lab.http import RetryPolicy, leased
from abebeats_lab.providers.base import utcnow
from abebeats_lab.providers.replicate import ReplicateProvider, build_input, parse_model
from abebeats_lab.waiting import WaitPolicy, wait

FAST = WaitPolicy(deadline_s=30, min_interval_s=0.02, max_interval_s=0.2)
VEO = Route.parse("replicate:google/veo-3-fast")
VERSION = "8c702a7d" + "0" * 56
REQUEST = VideoRequest(
    "a red kite over dunes", duration_s=4, aspect_ratio="16:9", resolution="720p", seed=7
)


emus, emu = emulator_fixtures("replicate")
provider = client_fixture(lambda emus: ReplicateProvider(**emus.client_options("replicate")))


@pytest.fixture
async def short_hold(emus: Emulators) -> AsyncIterator[ReplicateProvider]:
    """A client whose create holds 1 s, so tests can see a job before it finishes."""
    client = ReplicateProvider(**emus.client_options("replicate"), wait_s=1)
    yield client
    await client.aclose()


def _payload(route: str, request: VideoRequest = REQUEST) -> dict[str, Any]:
    return build_input(request, capabilities_for(route))


# -- translation (pure) ---------------------------------------------------------------------


def test_veo3_family_maps_every_field() -> None:
    request = REQUEST.replace(negative_prompt="rain", generate_audio=False, resolution="1080p")
    assert _payload("replicate:google/veo-3-fast", request) == {
        "prompt": "a red kite over dunes",
        "duration": 4,
        "aspect_ratio": "16:9",
        "resolution": "1080p",
        "seed": 7,
        "negative_prompt": "rain",
        "generate_audio": False,
    }


def test_minimax_uses_first_frame_image_fixed_inputs_and_drops_the_seed() -> None:
    request = REQUEST.replace(duration_s=6, image="https://example.invalid/a.png")
    assert _payload("replicate:minimax/video-01", request) == {
        "prompt_optimizer": True,
        "prompt": "a red kite over dunes",
        "first_frame_image": "https://example.invalid/a.png",
    }


def test_kling_family_uses_start_image_and_duration() -> None:
    request = REQUEST.replace(duration_s=10, image="https://example.invalid/a.png")
    payload = _payload("replicate:kwaivgi/kling-v2.0", request)
    assert payload["start_image"] == "https://example.invalid/a.png"
    assert payload["duration"] == 10
    assert "seed" not in payload and "image" not in payload


def test_wan_family_and_generic_fallback() -> None:
    wan = _payload("replicate:wan-video/wan-2.2-t2v-fast", REQUEST.replace(duration_s=5))
    assert wan == {
        "prompt": "a red kite over dunes",
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "seed": 7,
    }
    generic = capabilities_for("replicate:someone/new-video-model")
    assert generic.pattern == "replicate:*"
    assert generic.estimate_usd(REQUEST) is None


def test_extras_win_over_mapped_fields() -> None:
    request = REQUEST.replace(extras={"duration": 8, "cfg_scale": 0.3})
    payload = _payload("replicate:kwaivgi/kling-v2.1", request)
    assert payload["duration"] == 8 and payload["cfg_scale"] == 0.3


@pytest.mark.parametrize(
    ("route", "version"),
    [("replicate:google/veo-3-fast", None), (f"replicate:minimax/video-01:{VERSION}", VERSION)],
)
def test_both_route_forms_parse(route: str, version: str | None) -> None:
    ref = parse_model(Route.parse(route))
    assert ref.version == version
    assert ref.model in ("google/veo-3-fast", "minimax/video-01")


@pytest.mark.parametrize(
    "model",
    ["veo-3", "google/veo-3/fast", "/veo-3", "google/", "google/veo-3:abc", "google/veo-3:"],
)
def test_malformed_routes_are_validation_errors(model: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_model(Route("replicate", model))
    assert "owner/name" in str(caught.value) and "64-hex" in str(caught.value)


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(MissingKeyError) as caught:
        ReplicateProvider()
    assert "REPLICATE_API_TOKEN" in str(caught.value) and "--emulate" in str(caught.value)


def test_repr_hides_the_key() -> None:
    assert "r8_" not in repr(ReplicateProvider(api_key="r8_secret_value"))


# -- against the emulator -------------------------------------------------------------------


async def test_prefer_wait_returns_a_fast_job_finished_on_the_create_call(
    emus: Emulators, emu: Any
) -> None:
    # A hold long enough for the emulator to render the video on a busy machine.
    client = ReplicateProvider(**emus.client_options("replicate"), wait_s=10)
    try:
        job = await client.submit(REQUEST, VEO)
        assert job.initial is not None and job.initial.state is JobState.SUCCEEDED
        result = await wait(client, job, policy=FAST)
    finally:
        await client.aclose()
    assert result.polls == 0
    assert emu.count("status") == 0
    url = result.status.outputs[0].url
    assert url and url.startswith(emu.base_url)


async def test_without_prefer_wait_the_create_returns_at_once(emus: Emulators, emu: Any) -> None:
    client = ReplicateProvider(**emus.client_options("replicate"), wait_s=0)
    try:
        job = await client.submit(REQUEST, VEO)
        assert job.initial is not None and job.initial.state is JobState.QUEUED
        result = await wait(client, job, policy=FAST)
        assert result.status.state is JobState.SUCCEEDED and result.polls >= 1
    finally:
        await client.aclose()


async def test_a_hold_that_expires_answers_starting(emus: Emulators, emu: Any) -> None:
    emu.set_scenario(Scenario.fast().with_times(0.05, 3.0))
    client = ReplicateProvider(**emus.client_options("replicate"), wait_s=1)
    try:
        job = await client.submit(REQUEST, VEO)
        assert job.initial is not None and job.initial.raw_status == "starting"
        await client.cancel(job)
    finally:
        await client.aclose()


async def test_the_default_hold_returns_a_finished_job_in_one_request(
    provider: ReplicateProvider, emu: Any
) -> None:
    emu.set_scenario(Scenario.fast().with_times(0.05, 1.5))
    job = await provider.submit(REQUEST, VEO)
    assert job.initial is not None and job.initial.state is JobState.SUCCEEDED
    result = await wait(provider, job, policy=FAST)
    assert result.polls == 0 and emu.count("status") == 0


async def test_timestamps_and_progress_are_parsed(short_hold: ReplicateProvider, emu: Any) -> None:
    provider = short_hold
    emu.set_scenario(Scenario.fast().with_times(0.05, 2.5))
    job = await provider.submit(REQUEST, VEO)
    running = await provider.status(job)
    assert running.state is JobState.RUNNING
    assert running.progress is not None and 0 <= running.progress < 1
    result = await wait(provider, job, policy=FAST)
    final = result.status
    assert final.created_at and final.started_at and final.completed_at
    assert final.created_at <= final.started_at <= final.completed_at
    truth = emu.jobs[job.id]
    assert abs(final.started_at.timestamp() - truth.started) < 0.01
    assert abs(final.completed_at.timestamp() - truth.finished) < 0.01


async def test_a_job_first_seen_after_the_hold_is_projected_from_its_real_start(
    emus: Emulators, emu: Any
) -> None:
    """Past the hold the answer says ``starting`` though the job has run all along: its
    progress is projected from the provider's ``started_at``, so the wait sleeps to just
    before the end instead of creeping up from the moment it first saw the job running."""
    emu.set_scenario(Scenario.fast().with_times(0.05, 3.0))  # two thirds of it in the hold
    async with ReplicateProvider(**emus.client_options("replicate"), wait_s=2) as provider:
        job = await provider.submit(REQUEST, VEO)
        assert job.initial is not None and job.initial.raw_status == "starting"
        policy = WaitPolicy(deadline_s=60, min_interval_s=0.05, max_interval_s=8.0)
        result = await wait(provider, job, policy=policy)
    assert result.status.state is JobState.SUCCEEDED
    # Projected from the moment it was first seen running instead, the sleeps start at the
    # 0.05 s floor and grow by about half each poll: 8 or more polls for the last second.
    assert result.polls <= 5, [status.progress for _, status in result.transitions]


async def test_progress_is_read_from_tqdm_logs_and_never_shows_done_early(
    short_hold: ReplicateProvider, emu: Any
) -> None:
    emu.set_scenario(Scenario.fast().with_times(0.05, 30.0))
    job = await short_hold.submit(REQUEST, VEO)
    status = await short_hold.status(job)
    assert status.state is JobState.RUNNING
    assert "%|" in status.raw["logs"] and status.progress is not None
    assert 0 < status.progress < 1
    # tqdm counts finished steps: the job is within one step (of the bar's 50) past it.
    assert status.progress_step == pytest.approx(1 / 50)
    assert status.progress == pytest.approx(round(status.progress * 50) / 50)
    await short_hold.cancel(job)


async def test_versioned_route_posts_the_version(provider: ReplicateProvider, emu: Any) -> None:
    route = Route.parse(f"replicate:minimax/video-01:{VERSION}")
    request = REQUEST.replace(duration_s=6)
    provider.validate(request, route)
    job = await provider.submit(request, route)
    assert emu.requests[0].path == "/v1/predictions"
    assert emu.jobs[job.id].extra["version"] == VERSION
    result = await wait(provider, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED


async def test_list_outputs_become_several_refs(provider: ReplicateProvider, emu: Any) -> None:
    route = Route.parse("replicate:someone/multi-video")
    job = await provider.submit(REQUEST.replace(extras={"num_outputs": 1}), route)
    result = await wait(provider, job, policy=FAST)
    assert isinstance(result.status.raw["output"], list)
    assert len(result.status.outputs) == 1


async def test_dropped_create_is_ambiguous_and_reconcilable(
    provider: ReplicateProvider, emu: Any
) -> None:
    emu.set_scenario(Scenario.fast(drop_create=1))
    sent_at = utcnow()
    with pytest.raises(AmbiguousSubmitError):
        await provider.submit(REQUEST, VEO)
    assert len(emu.jobs) == 1 and emu.count("create") == 1
    other = await provider.submit(REQUEST.replace(prompt="another prompt"), VEO)
    found = await provider.reconcile(Job(VEO, "", REQUEST, sent_at))
    assert found is not None and found.id in emu.jobs and found.id != other.id
    assert (
        await provider.reconcile(Job(VEO, "", REQUEST.replace(prompt="never sent"), sent_at))
        is None
    )


async def test_hung_create_is_ambiguous(emus: Emulators, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(hang_create=1))
    client = ReplicateProvider(**emus.client_options("replicate"), wait_s=1)
    try:
        with pytest.raises(AmbiguousSubmitError):
            await client.submit(REQUEST, VEO)
    finally:
        await client.aclose()
    assert len(emu.jobs) == 1 and emu.count("create") == 1


async def test_create_429_gives_up_after_the_policy(emus: Emulators, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(create_429=5, retry_after_s=0.01))
    client = ReplicateProvider(
        **emus.client_options("replicate"), retry=RetryPolicy(max_attempts=2)
    )
    try:
        with pytest.raises(ProviderHTTPError) as caught:
            await client.submit(REQUEST, VEO)
    finally:
        await client.aclose()
    assert caught.value.status_code == 429
    assert emu.count("create") == 2 and not emu.jobs


async def test_rejected_input_is_an_http_error(provider: ReplicateProvider, emu: Any) -> None:
    with pytest.raises(ProviderHTTPError) as caught:
        await provider.submit(REQUEST.replace(extras={"prompt": ""}), VEO)
    assert caught.value.status_code == 422 and "Input validation failed" in caught.value.body


@pytest.mark.parametrize("fault", [{"malformed_status": 1}, {"unknown_status": True}])
async def test_unreadable_status_is_a_protocol_error(
    provider: ReplicateProvider, emu: Any, fault: dict[str, Any]
) -> None:
    job = await provider.submit(REQUEST, VEO)
    emu.set_scenario(Scenario.fast(**fault))
    with pytest.raises(ProtocolError) as caught:
        await provider.status(job)
    if fault.get("unknown_status"):  # the message names the field and the word (F14)
        assert "status = 'waiting_for_gpu'" in str(caught.value)


async def test_failure_carries_the_error(provider: ReplicateProvider, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(fail=True, failure_message="NSFW content detected"))
    job = await provider.submit(REQUEST, VEO)
    result = await wait(provider, job, policy=FAST)
    assert result.status.state is JobState.FAILED
    assert result.status.error == "NSFW content detected"


async def test_cancel_running_then_finished_is_safe(
    short_hold: ReplicateProvider, emu: Any
) -> None:
    provider = short_hold
    emu.set_scenario(Scenario.fast().with_times(0.05, 30.0))
    job = await provider.submit(REQUEST, VEO)
    await provider.cancel(job)
    first = await provider.status(job)
    await provider.cancel(job)
    second = await provider.status(job)
    assert first.state is second.state is JobState.CANCELED
    assert first.completed_at == second.completed_at


async def test_providers_send_through_the_loops_one_stock_client(
    emus: Emulators, emu: Any, provider: ReplicateProvider
) -> None:
    seen: list[str] = []

    async def count(request: httpx.Request) -> None:
        seen.append(request.method)

    other = ReplicateProvider(**emus.client_options("replicate"))
    try:
        async with leased() as shared:
            shared.event_hooks["request"].append(count)
            job = await provider.submit(REQUEST, VEO)
            await other.status(job)
    finally:
        await other.aclose()
    assert seen == ["POST", "GET"]


async def test_sdk_client_sees_the_emulator(emus: Emulators, emu: Any) -> None:
    # Pointed at the emulator by hand (emulated=False), the client learns it from the answers.
    async with ReplicateProvider(**{**emus.client_options("replicate"), "emulated": False}) as c:
        assert not c.emulated
        await c.submit(REQUEST, VEO)
        assert c.emulated
