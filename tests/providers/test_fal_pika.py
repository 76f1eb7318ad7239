"""PikaProvider: fal queue payloads, status parsing, the SSE stream and faults, on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from abebeats_lab._types import Job, JobState, Route, VideoRequest
from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, EmulatorState, Scenario
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    MissingKeyError,
    ProtocolError,
    ProviderHTTPError,
)
from abebeats_lab.http import RetryPolicy
from abebeats_lab.media.download import save_output
from abebeats_lab.providers.fal import PikaProvider, app_root, build_input, parse_status
from abebeats_lab.waiting import WaitPolicy, wait

T2V = Route("pika", "fal-ai/pika/v2.2/text-to-video")
I2V = Route("pika", "fal-ai/pika/v2.2/image-to-video")
TURBO = Route("pika", "fal-ai/pika/v2/turbo/text-to-video")
FAST = WaitPolicy(deadline_s=30, min_interval_s=0.02, max_interval_s=0.2)
POLL_ONLY = WaitPolicy(deadline_s=30, min_interval_s=0.02, max_interval_s=0.2, use_stream=False)
REQUEST = VideoRequest(
    "a red kite over dunes", duration_s=5, aspect_ratio="4:5", resolution="720p", seed=7
)
IMAGE = "https://example.invalid/first-frame.png"


@pytest.fixture
def emulator() -> Iterator[Emulators]:
    with Emulators(["pika"], Scenario.fast()) as emus:
        yield emus


@pytest.fixture
async def client(emulator: Emulators) -> AsyncIterator[PikaProvider]:
    provider = PikaProvider(**emulator.client_options("pika"))
    yield provider
    await provider.aclose()


def _state(emulator: Emulators) -> EmulatorState:
    return emulator.states["pika"]


# -- payload translation ---------------------------------------------------------------


def test_input_uses_fal_field_names_and_merges_extras() -> None:
    request = REQUEST.replace(
        negative_prompt="blur", image=IMAGE, resolution="1080p", extras={"duration": 10}
    )
    assert build_input(request) == {
        "prompt": "a red kite over dunes",
        "aspect_ratio": "4:5",
        "resolution": "1080p",
        "duration": 10,
        "seed": 7,
        "negative_prompt": "blur",
        "image_url": IMAGE,
    }


def test_status_lives_under_the_app_root() -> None:
    assert app_root("fal-ai/pika/v2.2/text-to-video") == "fal-ai/pika"
    assert app_root("workflows/me/flow/run") == "workflows/me/flow"


@pytest.mark.parametrize(
    ("route", "request_"),
    [
        (T2V, REQUEST),
        (I2V, REQUEST.replace(image=IMAGE, duration_s=10)),
        (TURBO, REQUEST.replace(resolution="1080p")),
    ],
)
async def test_every_route_input_is_accepted(
    emulator: Emulators, client: PikaProvider, route: Route, request_: VideoRequest
) -> None:
    client.validate(request_, route)
    job = await client.submit(request_, route)
    assert _state(emulator).requests[-1].path == f"/{route.model}"
    assert _state(emulator).jobs[job.id].payload["aspect_ratio"] == request_.aspect_ratio


async def test_submit_keeps_the_returned_urls_so_resume_works(
    emulator: Emulators, client: PikaProvider
) -> None:
    job = await client.submit(REQUEST, T2V)
    base = f"{emulator.url('pika')}/fal-ai/pika/requests/{job.id}"
    assert dict(job.handles) == {
        "request_id": job.id,
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
    }
    async with PikaProvider(**emulator.client_options("pika")) as fresh:
        result = await wait(fresh, job, policy=POLL_ONLY)
    assert result.status.state is JobState.SUCCEEDED
    assert result.status.started_at is None and result.status.completed_at is None


async def test_foreign_urls_in_handles_are_not_sent_our_key(emulator: Emulators) -> None:
    options = emulator.client_options("pika")
    async with PikaProvider(**options, retry=RetryPolicy(max_attempts=1)) as client:
        job = await client.submit(REQUEST, T2V)
        elsewhere = "http://127.0.0.1:9/fal-ai/pika/requests/x/status"  # discard port: never ours
        moved = Job(
            job.route,
            job.id,
            job.request,
            job.submitted_at,
            handles={**job.handles, "status_url": elsewhere},
        )
        assert (await client.status(moved)).state in (
            JobState.QUEUED,
            JobState.RUNNING,
            JobState.SUCCEEDED,
        )
    assert _state(emulator).count("status", job.id) == 1


# -- status parsing --------------------------------------------------------------------


def test_queue_words_map_to_states() -> None:
    queued = parse_status({"status": "IN_QUEUE", "queue_position": 3})
    assert (queued.state, queued.queue_position) == (JobState.QUEUED, 3)
    assert parse_status({"status": "IN_PROGRESS", "logs": None}).state is JobState.RUNNING
    done = parse_status({"status": "COMPLETED", "logs": None, "metrics": {"inference_time": 4.2}})
    assert (done.state, done.created_at, done.started_at) == (JobState.SUCCEEDED, None, None)


def test_completed_with_an_error_is_failed_or_canceled() -> None:
    failed = parse_status({"status": "COMPLETED", "error": "NSFW", "error_type": "content_policy"})
    assert (failed.state, failed.error, failed.error_code) == (
        JobState.FAILED,
        "NSFW",
        "content_policy",
    )
    assert (
        parse_status({"status": "COMPLETED", "error_type": "runner_server_error"}).state
        is JobState.FAILED
    )
    canceled = parse_status(
        {"status": "COMPLETED", "error": "cancelled", "error_type": "client_cancelled"}
    )
    assert canceled.state is JobState.CANCELED


@pytest.mark.parametrize("body", [{"status": "IN_LIMBO"}, {}, {"status": None}])
def test_unknown_words_are_protocol_errors(body: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        parse_status(body)


async def test_unknown_status_from_the_server_is_a_protocol_error(
    emulator: Emulators, client: PikaProvider
) -> None:
    job = await client.submit(REQUEST, T2V)
    emulator.set_scenario(Scenario.fast(unknown_status=True))
    with pytest.raises(ProtocolError, match="IN_LIMBO"):
        await client.status(job)
    with pytest.raises(ProtocolError, match="IN_LIMBO"):
        await wait(client, job, policy=FAST)  # the stream says the same


async def test_malformed_status_body_is_a_protocol_error(
    emulator: Emulators, client: PikaProvider
) -> None:
    job = await client.submit(REQUEST, T2V)
    emulator.set_scenario(Scenario.fast(malformed_status=1))
    with pytest.raises(ProtocolError, match="expected JSON"):
        await client.status(job)


# -- the SSE stream ----------------------------------------------------------------------


async def test_wait_follows_the_sse_stream_instead_of_polling(
    emulator: Emulators, client: PikaProvider, tmp_path: Path
) -> None:
    emulator.set_scenario(Scenario.fast().with_times(0.5, 0.3))
    job = await client.submit(REQUEST, T2V)
    result = await wait(client, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED
    assert result.polls == 1
    assert (_state(emulator).count("stream"), _state(emulator).count("status")) == (1, 0)
    assert [s.state for _, s in result.transitions] == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    [ref] = await client.outputs(job, result.status)
    output = await save_output(ref, tmp_path / "out.mp4")
    assert (output.probe.width, output.probe.height) == (720, 900)


async def test_a_broken_stream_falls_back_to_polling(
    emulator: Emulators, client: PikaProvider
) -> None:
    emulator.set_scenario(Scenario.fast(malformed_status=1))  # the stream open gets an HTML page
    job = await client.submit(REQUEST, T2V)
    result = await wait(client, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED
    assert _state(emulator).count("stream") == 1 and _state(emulator).count("status") >= 1


async def test_stream_reports_cancellation(emulator: Emulators, client: PikaProvider) -> None:
    emulator.set_scenario(Scenario.fast(cancel_elsewhere_after_s=0.1).with_times(0.0, 30.0))
    job = await client.submit(REQUEST, T2V)
    result = await wait(client, job, policy=FAST)
    assert (result.status.state, result.status.error_code) == (
        JobState.CANCELED,
        "client_cancelled",
    )


# -- faults and results ------------------------------------------------------------------


async def test_dropped_submit_is_ambiguous_and_never_repeated(
    emulator: Emulators, client: PikaProvider
) -> None:
    emulator.set_scenario(Scenario.fast(drop_create=1))
    with pytest.raises(AmbiguousSubmitError):
        await client.submit(REQUEST, T2V)
    assert (_state(emulator).count("create"), len(_state(emulator).jobs)) == (1, 1)


async def test_failed_run_has_reason_and_its_result_is_422(
    emulator: Emulators, client: PikaProvider
) -> None:
    emulator.set_scenario(
        Scenario.fast(fail=True, failure_message="NSFW content", failure_code="content_policy")
    )
    job = await client.submit(REQUEST, T2V)
    status = (await wait(client, job, policy=FAST)).status
    assert (status.state, status.error, status.error_code) == (
        JobState.FAILED,
        "NSFW content",
        "content_policy",
    )
    with pytest.raises(ProviderHTTPError) as caught:
        await client.outputs(job, status)
    assert caught.value.status_code == 422


async def test_refresh_outputs_reads_the_result_again(
    emulator: Emulators, client: PikaProvider
) -> None:
    job = await client.submit(REQUEST, T2V)
    status = (await wait(client, job, policy=FAST)).status
    first = await client.outputs(job, status)
    again = await client.refresh_outputs(job)
    assert first == again and first[0].content_type == "video/mp4"
    assert _state(emulator).count("result", job.id) == 2


async def test_cancel_of_unknown_or_finished_requests_is_harmless(
    emulator: Emulators, client: PikaProvider
) -> None:
    job = await client.submit(REQUEST, T2V)
    await wait(client, job, policy=FAST)
    await client.cancel(job)
    ghost = Job(job.route, "no-such-request", job.request, job.submitted_at)
    await client.cancel(ghost)
    assert _state(emulator).count("cancel") == 2


async def test_status_5xx_and_429_are_ridden_out_by_polling(
    emulator: Emulators, client: PikaProvider
) -> None:
    emulator.set_scenario(Scenario.fast(status_429=1, status_5xx=1, retry_after_s=0.01))
    job = await client.submit(REQUEST, T2V)
    result = await wait(client, job, policy=POLL_ONLY)
    assert result.status.state is JobState.SUCCEEDED


def test_key_alias_and_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingKeyError, match="FAL_KEY"):
        PikaProvider()
    monkeypatch.setenv("PIKA_API_KEY", EMULATOR_KEYS["pika"])
    assert "emulated-fal-key" not in repr(PikaProvider())


# -- Retry-After on every status path (issue 13 §7) ---------------------------------------

HINT_S = 1.0
"""The emulator's ``Retry-After``; fal answered a throttled stream with 2."""
CLOCK_SLACK_S = 0.01
"""The emulator stamps requests with the wall clock and the client sleeps on the monotonic."""


def _times(state: EmulatorState, *kinds: str) -> list[float]:
    return [r.at for r in state.requests if r.kind in kinds]


async def test_a_throttled_stream_holds_the_next_status_request_for_its_retry_after(
    emulator: Emulators, client: PikaProvider
) -> None:
    emulator.set_scenario(Scenario.fast(stream_429=1, retry_after_s=HINT_S))
    job = await client.submit(REQUEST, T2V)
    result = await wait(client, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED
    state = _state(emulator)
    [throttled] = _times(state, "stream")
    asked = _times(state, "status")
    assert asked, "the wait fell back to polling"
    assert min(asked) >= throttled + HINT_S - CLOCK_SLACK_S


async def test_a_throttled_poll_holds_the_next_one_for_its_retry_after(
    emulator: Emulators, client: PikaProvider
) -> None:
    emulator.set_scenario(Scenario.fast(status_429=1, retry_after_s=HINT_S))
    job = await client.submit(REQUEST, T2V)
    result = await wait(client, job, policy=POLL_ONLY)
    assert result.status.state is JobState.SUCCEEDED
    first, second, *_ = _times(_state(emulator), "status")
    assert second >= first + HINT_S - CLOCK_SLACK_S


async def test_a_throttled_result_fetch_waits_its_retry_after(
    emulator: Emulators, client: PikaProvider
) -> None:
    emulator.set_scenario(Scenario.fast(result_429=1, retry_after_s=HINT_S))
    job = await client.submit(REQUEST, T2V)
    status = (await wait(client, job, policy=FAST)).status
    [ref] = await client.outputs(job, status)
    assert ref.url
    first, second = _times(_state(emulator), "result")
    assert second >= first + HINT_S - CLOCK_SLACK_S
