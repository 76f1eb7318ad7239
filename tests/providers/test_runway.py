"""RunwayProvider: payload translation, status parsing and faults, against the Runway emulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from abebeats_lab import capabilities
from abebeats_lab._types import JobState, OutputRef, Route, VideoRequest
from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, EmulatorState, Scenario
from abebeats_lab.emulator.runway import create_app
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    MissingKeyError,
    ProtocolError,
    ProviderHTTPError,
    ValidationError,
)
from abebeats_lab.media.download import DownloadHTTPError, save_output
from abebeats_lab.providers.runway import RunwayProvider, build_payload, parse_task, runway_ratio
from abebeats_lab.waiting import WaitPolicy, wait

GEN45 = Route("runway", "gen4.5")
VEO_FAST = Route("runway", "veo3.1_fast")
TURBO = Route("runway", "gen4_turbo")
FAST = WaitPolicy(deadline_s=30, min_interval_s=0.02, max_interval_s=0.2)
IMAGE = "data:image/png;base64,iVBORw0KGgo="
REQUEST = VideoRequest(
    "a red kite over dunes", duration_s=5, aspect_ratio="16:9", resolution="720p", seed=7
)


@pytest.fixture
def emulator() -> Iterator[Emulators]:
    with Emulators(["runway"], Scenario.fast()) as emus:
        yield emus


@pytest.fixture
async def client(emulator: Emulators) -> AsyncIterator[RunwayProvider]:
    provider = RunwayProvider(**emulator.client_options("runway"))
    yield provider
    await provider.aclose()


def _state(emulator: Emulators) -> EmulatorState:
    return emulator.states["runway"]


# -- payload translation ---------------------------------------------------------------


def test_gen45_payload_is_camel_case_without_fields_the_model_lacks() -> None:
    request = REQUEST.replace(
        negative_prompt="blur", extras={"contentModeration": {"publicFigureThreshold": "low"}}
    )
    assert build_payload(request, GEN45) == {
        "model": "gen4.5",
        "promptText": "a red kite over dunes",
        "ratio": "1280:720",
        "duration": 5,
        "seed": 7,
        "contentModeration": {"publicFigureThreshold": "low"},
    }


def test_veo_payload_carries_audio_negative_prompt_and_1080p_ratio() -> None:
    request = REQUEST.replace(
        duration_s=4,
        aspect_ratio="9:16",
        resolution="1080p",
        negative_prompt="blur",
        generate_audio=True,
    )
    body = build_payload(request, VEO_FAST)
    assert (body["ratio"], body["audio"], body["negativePrompt"]) == ("1080:1920", True, "blur")


def test_ratio_table_refuses_combinations_runway_lacks() -> None:
    assert runway_ratio(REQUEST.replace(aspect_ratio="21:9")) == "1584:672"
    with pytest.raises(ValidationError, match="aspect_ratio"):
        runway_ratio(REQUEST.replace(aspect_ratio="4:3", resolution="1080p"))


@pytest.mark.parametrize(
    ("route", "request_"),
    [
        (GEN45, REQUEST),
        (GEN45, REQUEST.replace(image=IMAGE)),
        (
            VEO_FAST,
            REQUEST.replace(
                duration_s=6, resolution="1080p", negative_prompt="blur", generate_audio=True
            ),
        ),
        (TURBO, REQUEST.replace(image=IMAGE, aspect_ratio="4:3")),
        (Route("runway", "veo3.1"), REQUEST.replace(duration_s=8, image=IMAGE)),
    ],
)
async def test_every_route_payload_is_accepted_by_the_emulator(
    emulator: Emulators, client: RunwayProvider, route: Route, request_: VideoRequest
) -> None:
    client.validate(request_, route)
    job = await client.submit(request_, route)
    record = _state(emulator).requests[-1]
    assert record.path == ("/v1/image_to_video" if request_.image else "/v1/text_to_video")
    assert _state(emulator).jobs[job.id].payload == build_payload(request_, route)


RESOLD = [
    c.pattern
    for c in capabilities.all_routes()
    if c.pattern.startswith("runway:") and c.price.usd_per_s is None
]
"""Runway's resold models (Kling, Seedance, Wan, Omni): no Runway price in any stored source."""


def test_resold_kling_sends_no_seed_and_its_own_square_ratio() -> None:
    request = REQUEST.replace(aspect_ratio="1:1", resolution="1080p", generate_audio=True)
    body = build_payload(request, Route("runway", "kling3.0_pro"))
    assert body == {
        "model": "kling3.0_pro",
        "ratio": "1440:1440",
        "promptText": REQUEST.prompt,
        "duration": 5,
        "audio": True,
    }


@pytest.mark.parametrize("pattern", RESOLD)
@pytest.mark.parametrize("image", [None, IMAGE])
async def test_every_resold_model_runs_text_and_image_to_video(
    emulator: Emulators, client: RunwayProvider, pattern: str, image: str | None
) -> None:
    route = Route.parse(pattern)
    unset = REQUEST.replace(image=image, duration_s=None, resolution=None)
    request_, _ = capabilities.with_defaults(unset, route)
    client.validate(request_, route)
    job = await client.submit(request_, route)
    record = _state(emulator).requests[-1]
    assert record.path == ("/v1/image_to_video" if image else "/v1/text_to_video")
    assert (_state(emulator).jobs[job.id].payload.get("promptImage")) == image
    result = await wait(client, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED, result.status.error


async def test_a_seed_sent_to_kling_anyway_is_runways_400(client: RunwayProvider) -> None:
    request = REQUEST.replace(resolution="1080p", extras={"seed": 7})
    with pytest.raises(ProviderHTTPError) as refused:
        await client.submit(request, Route("runway", "kling3.0_pro"))
    assert refused.value.status_code == 400 and "seed" in str(refused.value)


# -- status parsing --------------------------------------------------------------------


def _task(**fields: Any) -> dict[str, Any]:
    return {"id": "t1", "createdAt": "2026-08-01T12:00:00.000Z", **fields}


def test_task_words_map_to_states() -> None:
    words = {
        "PENDING": JobState.QUEUED,
        "THROTTLED": JobState.QUEUED,
        "CANCELLED": JobState.CANCELED,
    }
    for word, state in words.items():
        status = parse_task(_task(status=word))
        assert (status.state, status.raw_status) == (state, word)
    running = parse_task(_task(status="RUNNING", progress=0.42))
    assert (running.state, running.progress) == (JobState.RUNNING, 0.42)
    assert running.created_at == datetime(2026, 8, 1, 12, tzinfo=UTC)


def test_succeeded_and_failed_carry_outputs_and_reasons() -> None:
    done = parse_task(_task(status="SUCCEEDED", output=["https://cdn/x.mp4"]))
    assert [ref.url for ref in done.outputs] == ["https://cdn/x.mp4"]
    failed = parse_task(
        _task(status="FAILED", failure="Prompt rejected", failureCode="SAFETY.INPUT.TEXT")
    )
    assert (failed.state, failed.error, failed.error_code) == (
        JobState.FAILED,
        "Prompt rejected",
        "SAFETY.INPUT.TEXT",
    )


@pytest.mark.parametrize(
    "body", [_task(status="PAUSED"), _task(), _task(status="SUCCEEDED", output=[])]
)
def test_unknown_or_incomplete_tasks_are_protocol_errors(body: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        parse_task(body)


async def test_unknown_status_from_the_server_is_a_protocol_error(
    emulator: Emulators, client: RunwayProvider
) -> None:
    job = await client.submit(REQUEST, GEN45)
    emulator.set_scenario(Scenario.fast(unknown_status=True))
    with pytest.raises(ProtocolError, match="ARCHIVED"):
        await client.status(job)


async def test_malformed_status_body_is_a_protocol_error(
    emulator: Emulators, client: RunwayProvider
) -> None:
    job = await client.submit(REQUEST, GEN45)
    emulator.set_scenario(Scenario.fast(malformed_status=1))
    with pytest.raises(ProtocolError, match="expected JSON"):
        await client.status(job)
    assert (await client.status(job)).state in (
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    )


async def test_throttled_is_queued_then_runs(emulator: Emulators, client: RunwayProvider) -> None:
    emulator.set_scenario(Scenario.fast(concurrency=1).with_times(0.0, 0.6))
    await client.submit(REQUEST, GEN45)
    second = await client.submit(REQUEST, GEN45)
    first_seen = await client.status(second)
    assert (first_seen.state, first_seen.raw_status) == (JobState.QUEUED, "THROTTLED")
    result = await wait(client, second, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED
    assert any(s.state is JobState.RUNNING for _, s in result.transitions)


# -- faults ----------------------------------------------------------------------------


async def test_dropped_create_is_ambiguous_and_never_repeated(
    emulator: Emulators, client: RunwayProvider
) -> None:
    emulator.set_scenario(Scenario.fast(drop_create=1))
    with pytest.raises(AmbiguousSubmitError):
        await client.submit(REQUEST, GEN45)
    assert (_state(emulator).count("create"), len(_state(emulator).jobs)) == (1, 1)


async def test_hung_create_is_ambiguous_after_the_timeout(emulator: Emulators) -> None:
    emulator.set_scenario(Scenario.fast(hang_create=1))
    options = emulator.client_options("runway")
    async with RunwayProvider(**options, timeout=httpx.Timeout(0.3)) as client:
        with pytest.raises(AmbiguousSubmitError):
            await client.submit(REQUEST, GEN45)
    assert (_state(emulator).count("create"), len(_state(emulator).jobs)) == (1, 1)


async def test_failure_reason_and_code_reach_the_status(
    emulator: Emulators, client: RunwayProvider
) -> None:
    emulator.set_scenario(
        Scenario.fast(fail=True, failure_message="rejected", failure_code="SAFETY.INPUT.TEXT")
    )
    job = await client.submit(REQUEST, GEN45)
    status = (await wait(client, job, policy=FAST)).status
    assert (status.state, status.error, status.error_code) == (
        JobState.FAILED,
        "rejected",
        "SAFETY.INPUT.TEXT",
    )


async def test_expired_output_url_is_refreshed(
    emulator: Emulators, client: RunwayProvider, tmp_path: Path
) -> None:
    emulator.set_scenario(Scenario.fast(expire_outputs_after=1))
    job = await client.submit(REQUEST, GEN45)
    result = await wait(client, job, policy=FAST)
    [ref] = await client.outputs(job, result.status)
    await save_output(ref, tmp_path / "first.mp4")
    with pytest.raises(DownloadHTTPError) as caught:
        await save_output(ref, tmp_path / "again.mp4")
    assert caught.value.expired

    fresh: list[OutputRef] = []

    async def refresh() -> OutputRef:
        fresh.extend(await client.refresh_outputs(job))
        return fresh[0]

    output = await save_output(ref, tmp_path / "again.mp4", refresh=refresh)
    assert output.probe.duration_s == pytest.approx(5, abs=0.1)
    assert fresh[0].url != ref.url
    # ok, expired, expired again (inside save_output), then the fresh URL
    assert _state(emulator).count("download") == 4


async def test_cancel_then_404_reads_as_canceled(tmp_path: Path) -> None:
    state = EmulatorState("runway", Scenario.fast().with_times(0.05, 30.0))
    transport = httpx.ASGITransport(app=create_app(state, canceled_tasks_404=True))
    async with (
        httpx.AsyncClient(transport=transport) as http,
        RunwayProvider(
            api_key=EMULATOR_KEYS["runway"], base_url="http://runway.test", http_client=http
        ) as client,
    ):
        job = await client.submit(REQUEST, GEN45)
        assert await client.cancel(job)  # in flight: the DELETE cancels it, confirmed
        status = await client.status(job)
        assert (status.state, status.raw_status) == (JobState.CANCELED, "DELETED")
        # A second cancel reads the task first, meets the 404 of our own delete: harmless,
        # and no second DELETE is sent.
        assert await client.cancel(job)
    assert state.count("cancel") == 1


async def test_unknown_task_404_is_an_error_not_a_cancel(
    emulator: Emulators, client: RunwayProvider
) -> None:
    job = await client.submit(REQUEST, GEN45)
    ghost = type(job)(
        # Well-formed (ids of another shape never reach the server) but unknown to it.
        route=job.route,
        id=str(uuid.uuid4()),
        request=job.request,
        submitted_at=job.submitted_at,
    )
    with pytest.raises(ProviderHTTPError) as caught:
        await client.status(ghost)
    assert caught.value.status_code == 404


# -- keys ------------------------------------------------------------------------------


async def test_wrong_key_is_401_and_never_printed(emulator: Emulators) -> None:
    async with RunwayProvider(api_key="key_sekrit", base_url=emulator.url("runway")) as client:
        assert "sekrit" not in repr(client)
        with pytest.raises(ProviderHTTPError) as caught:
            await client.submit(REQUEST, GEN45)
    assert caught.value.status_code == 401 and "sekrit" not in str(caught.value)
    assert _state(emulator).jobs == {}


def test_key_alias_and_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingKeyError, match="RUNWAYML_API_SECRET"):
        RunwayProvider()
    monkeypatch.setenv("RUNWAY_API_KEY", EMULATOR_KEYS["runway"])
    assert RunwayProvider().name == "runway"
