"""One contract, every provider: each client against its emulator over a real loopback socket.

The assertions are identical for every provider; only the route differs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from abebeats_lab import JobState, Route, VideoRequest
from abebeats_lab._types import OutputRef
from abebeats_lab.capabilities import nearest
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    JobTimeout,
    MissingKeyError,
    ValidationError,
)
from abebeats_lab.media.download import save_output
from abebeats_lab.media.render import frame_size
from abebeats_lab.providers import Provider, get_provider
from abebeats_lab.waiting import WaitPolicy, wait

ROUTES = {
    "runway": "runway:gen4.5",
    "replicate": "replicate:google/veo-3-fast",
    "veo": "veo:veo-3.1-fast-generate-001",
    "pika": "pika:fal-ai/pika/v2.2/text-to-video",
    "gemini": "gemini:gemini-omni-flash-preview",
}
FAST = WaitPolicy(deadline_s=30, min_interval_s=0.05, max_interval_s=0.3)


@pytest.fixture(params=sorted(ROUTES))
def provider_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emulator(provider_name: str) -> AsyncIterator[Emulators]:
    with Emulators([provider_name], Scenario.fast()) as emus:
        yield emus


@pytest.fixture
async def client(provider_name: str, emulator: Emulators) -> AsyncIterator[Provider]:
    provider = get_provider(provider_name, **emulator.client_options(provider_name))
    yield provider
    await provider.aclose()


def _request(provider_name: str, **changes: object) -> tuple[Route, VideoRequest]:
    route = Route.parse(ROUTES[provider_name])
    base = VideoRequest(
        "a red kite over dunes", duration_s=5, aspect_ratio="16:9", resolution="720p", seed=7
    )
    request, _ = nearest(base.replace(**changes), route)
    return route, request


async def test_submit_wait_download_probe(
    provider_name: str, emulator: Emulators, client: Provider, tmp_path: Path
) -> None:
    route, request = _request(provider_name)
    client.validate(request, route)
    job = await client.submit(request, route)
    seen: list[JobState] = []
    result = await wait(client, job, policy=FAST, on_update=lambda _, s: seen.append(s.state))
    assert result.status.state is JobState.SUCCEEDED
    assert seen and all(state.from_provider for state in seen)  # never a runner's own word
    refs = await client.outputs(job, result.status)
    assert len(refs) == 1
    output = await save_output(refs[0], tmp_path / "out.mp4")
    width, height = frame_size(request.aspect_ratio, request.resolution)
    assert output.probe.codec == "h264"
    assert (output.probe.width, output.probe.height) == (width, height)
    assert abs(output.probe.duration_s - request.duration_s) < 0.1
    state = emulator.states[provider_name]
    assert state.count("create") == 1
    assert len(state.jobs) == 1
    assert client.emulated


async def test_failure_is_a_terminal_state_with_a_reason(
    provider_name: str, emulator: Emulators, client: Provider
) -> None:
    emulator.set_scenario(Scenario.fast(fail=True, failure_message="content rejected (emulated)"))
    route, request = _request(provider_name)
    job = await client.submit(request, route)
    result = await wait(client, job, policy=FAST)
    assert result.status.state is JobState.FAILED
    assert result.status.error


# Replicate's create holds up to 60 s by default (one request for most jobs); a job can only be
# cancelled once its id is known, so the cancel contract runs with a 1 s hold.
CANCEL_OPTIONS: dict[str, dict[str, object]] = {"replicate": {"wait_s": 1}}


async def test_cancel_stops_the_job_or_says_it_cannot(
    provider_name: str, emulator: Emulators
) -> None:
    emulator.set_scenario(Scenario.fast().with_times(0.05, 30.0))
    options = {**emulator.client_options(provider_name), **CANCEL_OPTIONS.get(provider_name, {})}
    client = get_provider(provider_name, **options)
    route, request = _request(provider_name)
    job = await client.submit(request, route)
    if client.can_cancel:
        confirmed = await client.cancel(job)
        result = await wait(client, job, policy=FAST)
        assert result.status.state is JobState.CANCELED
        # fal only passes the cancel on to the app (CANCELLATION_REQUESTED), which may still
        # finish: a request, never a confirmation. The others answer with the cancelled job.
        assert confirmed is (provider_name != "pika")
    else:
        assert await client.cancel(job) is False
        with pytest.raises(JobTimeout) as caught:
            await wait(client, job, policy=WaitPolicy(deadline_s=0.5, min_interval_s=0.05))
        assert not caught.value.canceled
    await client.aclose()


CANCELS_SENT_AFTER_FINISH = {"runway": 0, "replicate": 1, "veo": 0, "pika": 1, "gemini": 1}
"""Cancel requests that reach the provider for a job that has finished. Runway reads the task
first and sends no DELETE (its DELETE deletes a finished task and its video: "will not be able
to be fetched again"); Replicate answers the unchanged prediction; fal answers
ALREADY_COMPLETED; Vertex has no cancel to send; the Gemini API refuses to cancel a finished
interaction. None of them confirms a cancel, and the job and its video stay."""


async def test_cancel_after_finish_is_harmless(
    provider_name: str, emulator: Emulators, client: Provider
) -> None:
    """A cancel that arrives after the finish never raises; the job keeps its answer, except
    on Runway, whose DELETE of a finished task really deletes it."""
    route, request = _request(provider_name)
    job = await client.submit(request, route)
    result = await wait(client, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED
    assert await client.cancel(job) is False  # nothing left to stop: never a confirmed cancel
    after = await client.status(job)
    assert after.state is JobState.SUCCEEDED  # left as it was
    assert (
        emulator.states[provider_name].count("cancel") == CANCELS_SENT_AFTER_FINISH[provider_name]
    )
    assert after.outputs or await client.outputs(job, after)  # the video is still there


async def test_429_on_create_is_retried_and_creates_one_job(
    provider_name: str, emulator: Emulators, client: Provider
) -> None:
    emulator.set_scenario(Scenario.fast(create_429=2, retry_after_s=0.05))
    route, request = _request(provider_name)
    job = await client.submit(request, route)
    result = await wait(client, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED
    state = emulator.states[provider_name]
    assert state.count("create") == 3
    assert len(state.jobs) == 1


async def test_5xx_burst_on_status_is_ridden_out(
    provider_name: str, emulator: Emulators, client: Provider
) -> None:
    emulator.set_scenario(Scenario.fast(status_5xx=2))
    route, request = _request(provider_name)
    job = await client.submit(request, route)
    result = await wait(client, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED


async def test_invalid_request_never_reaches_the_network(
    provider_name: str, emulator: Emulators, client: Provider
) -> None:
    route, request = _request(provider_name)
    with pytest.raises(ValidationError) as caught:
        client.validate(request.replace(aspect_ratio="7:3"), route)
    assert "aspect_ratio" in str(caught.value) and "16:9" in str(caught.value)
    assert emulator.states[provider_name].requests == []


def test_missing_key_names_the_variable_and_emulate(provider_name: str) -> None:
    with pytest.raises(MissingKeyError) as caught:
        get_provider(provider_name)
    message = str(caught.value)
    assert "--emulate" in message
    assert any(var in message for var in caught.value.env_vars)


async def test_optional_capabilities_answer_on_every_provider(
    provider_name: str, emulator: Emulators, client: Provider
) -> None:
    """Every optional method exists on every provider (the ABC's default where it has none):
    a provider that cannot look a lost create up says it cannot tell, never "not there"
    (which would resubmit and pay twice); the refresh of a finished job's outputs answers."""
    route, request = _request(provider_name)
    job = await client.submit(request, route)
    result = await wait(client, job, policy=FAST)
    hint = replace(job, id="")
    if client.can_reconcile:
        found = await client.reconcile(hint)
        assert found is not None and found.id == job.id
    else:
        with pytest.raises(AmbiguousSubmitError):
            await client.reconcile(hint)
    fresh = await client.refresh_outputs(job)
    assert all(isinstance(ref, OutputRef) for ref in fresh)
    if type(client).refresh_outputs is not Provider.refresh_outputs:  # it signs URLs again
        assert fresh
    assert result.status.state is JobState.SUCCEEDED
    assert emulator.states[provider_name].count("create") == 1
