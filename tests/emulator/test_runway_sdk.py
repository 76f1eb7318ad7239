"""The official runwayml SDK (sync and async) against the Runway emulator, base URL changed only.

If these pass, the emulator speaks what Runway's own client expects: paths, headers, the
camelCase task union with ``createdAt``/``estimatedCost``/``cost``, 204 on delete, and
retryable 429/503 answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import runwayml
from runwayml import AsyncRunwayML, RunwayML
from runwayml.lib import polling

from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, Scenario
from abebeats_lab.media.probe import looks_like_mp4

KEY = EMULATOR_KEYS["runway"]
PROMPT = "a red kite over dunes"
POLL_S = 0.02
IMAGE = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
def emulator() -> Iterator[Emulators]:
    with Emulators(["runway"], Scenario.fast(retry_after_s=0.01)) as emus:
        yield emus


@pytest.fixture
def sdk(emulator: Emulators) -> Iterator[RunwayML]:
    with RunwayML(api_key=KEY, base_url=emulator.url("runway")) as client:
        yield client


@pytest.fixture
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(polling, "POLL_TIME", POLL_S)
    monkeypatch.setattr(polling, "POLL_JITTER", 0)


def _until_done(sdk: RunwayML, task_id: str) -> Any:
    seen = []
    while True:
        task = sdk.tasks.retrieve(task_id)
        seen.append(task.status)
        if task.status in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return task, seen
        time.sleep(POLL_S)


def test_create_poll_download(sdk: RunwayML, emulator: Emulators) -> None:
    created = sdk.text_to_video.create(
        model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5, seed=3
    )
    assert created.estimated_cost.credits == 12 * 5
    task, seen = _until_done(sdk, created.id)
    assert task.status == "SUCCEEDED"
    assert "RUNNING" in seen
    assert task.cost.credits == 60
    assert task.created_at.tzinfo is not None
    video = httpx.get(task.output[0])
    assert video.status_code == 200 and looks_like_mp4(video.content)
    assert emulator.states["runway"].count("create") == 1


def test_running_task_reports_linear_progress(sdk: RunwayML, emulator: Emulators) -> None:
    emulator.set_scenario(Scenario.fast().with_times(0.0, 30.0))
    created = sdk.text_to_video.create(
        model="gen4.5", prompt_text=PROMPT, ratio="720:1280", duration=2
    )
    first = sdk.tasks.retrieve(created.id)
    time.sleep(0.1)
    second = sdk.tasks.retrieve(created.id)
    assert first.status == second.status == "RUNNING"
    assert 0 <= first.progress < second.progress < 1
    assert second.estimated_cost.credits == 24


def test_wait_for_task_output_sync(sdk: RunwayML, fast_polling: None) -> None:
    created = sdk.text_to_video.create(
        model="veo3.1_fast", prompt_text=PROMPT, ratio="1280:720", duration=4, audio=True
    )
    task = created.wait_for_task_output(timeout=20)
    assert task.status == "SUCCEEDED"
    assert task.output[0].startswith("http://127.0.0.1:")


def test_image_to_video_gen4_turbo(sdk: RunwayML, fast_polling: None, emulator: Emulators) -> None:
    created = sdk.image_to_video.create(model="gen4_turbo", prompt_image=IMAGE, ratio="960:960")
    task = created.wait_for_task_output(timeout=20)
    assert task.status == "SUCCEEDED"
    job = emulator.states["runway"].jobs[created.id]
    assert job.payload["promptImage"] == IMAGE and "promptText" not in job.payload


def test_failed_task_raises_task_failed_with_code(
    sdk: RunwayML, emulator: Emulators, fast_polling: None
) -> None:
    emulator.set_scenario(
        Scenario.fast(fail=True, failure_message="rejected", failure_code="SAFETY.INPUT.TEXT")
    )
    created = sdk.text_to_video.create(
        model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5
    )
    with pytest.raises(polling.TaskFailedError) as caught:
        created.wait_for_task_output(timeout=20)
    details: Any = caught.value.task_details
    assert (details.failure, details.failure_code, details.cost.credits) == (
        "rejected",
        "SAFETY.INPUT.TEXT",
        0,
    )


def test_delete_cancels_running_then_deletes_finished(sdk: RunwayML, emulator: Emulators) -> None:
    emulator.set_scenario(Scenario.fast().with_times(0.05, 30.0))
    created = sdk.text_to_video.create(
        model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5
    )
    assert sdk.tasks.delete(created.id) is None
    assert sdk.tasks.retrieve(created.id).status == "CANCELLED"
    sdk.tasks.delete(created.id)
    with pytest.raises(runwayml.NotFoundError):
        sdk.tasks.retrieve(created.id)
    assert emulator.states["runway"].count("cancel") == 2


def test_bad_input_is_400_naming_the_field(sdk: RunwayML, emulator: Emulators) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": "gen4.5", "prompt_text": PROMPT, "ratio": "1920:1080", "duration": 5}, "ratio"),
        (
            {"model": "gen4.5", "prompt_text": PROMPT, "ratio": "1280:720", "duration": 11},
            "duration",
        ),
        (
            {"model": "gen4.5", "prompt_text": "x" * 1001, "ratio": "1280:720", "duration": 5},
            "promptText",
        ),
        (
            {"model": "veo3.1", "prompt_text": PROMPT, "ratio": "1280:720", "duration": 5},
            "duration",
        ),
        ({"model": "gen4_turbo", "prompt_text": PROMPT, "ratio": "1280:720"}, "model"),
    ]
    for params, field in cases:
        with pytest.raises(runwayml.BadRequestError) as caught:
            sdk.text_to_video.create(**params)
        assert caught.value.status_code == 400
        assert isinstance(caught.value.body, dict) and caught.value.body["error"].startswith(field)
    assert emulator.states["runway"].jobs == {}


def test_prompt_limit_counts_utf16_units(sdk: RunwayML) -> None:
    emoji = "\U0001f600"  # two UTF-16 code units
    sdk.text_to_video.create(model="gen4.5", prompt_text=emoji * 500, ratio="1280:720", duration=5)
    with pytest.raises(runwayml.BadRequestError):
        sdk.text_to_video.create(
            model="gen4.5", prompt_text=emoji * 500 + "a", ratio="1280:720", duration=5
        )


def test_ill_formed_key_is_401(emulator: Emulators) -> None:
    bad = RunwayML(api_key="key_short", base_url=emulator.url("runway"), max_retries=0)
    with bad, pytest.raises(runwayml.AuthenticationError):
        bad.text_to_video.create(model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5)


def test_sdk_retries_429_and_503(sdk: RunwayML, emulator: Emulators) -> None:
    emulator.set_scenario(Scenario.fast(create_429=1, status_5xx=2, retry_after_s=0.01))
    created = sdk.text_to_video.create(
        model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5
    )
    assert sdk.tasks.retrieve(created.id).status in ("PENDING", "RUNNING", "SUCCEEDED")
    state = emulator.states["runway"]
    assert (state.count("create"), state.count("status"), len(state.jobs)) == (2, 3, 1)


def test_over_concurrency_is_throttled_then_runs(sdk: RunwayML, emulator: Emulators) -> None:
    emulator.set_scenario(Scenario.fast(concurrency=1).with_times(0.0, 0.6))
    first = sdk.text_to_video.create(
        model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5
    )
    second = sdk.text_to_video.create(
        model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5
    )
    assert sdk.tasks.retrieve(second.id).status == "THROTTLED"
    _, seen = _until_done(sdk, second.id)
    assert seen[-1] == "SUCCEEDED" and "RUNNING" in seen
    assert sdk.tasks.retrieve(first.id).status == "SUCCEEDED"


async def test_async_client_create_wait_delete(emulator: Emulators, fast_polling: None) -> None:
    async with AsyncRunwayML(api_key=KEY, base_url=emulator.url("runway")) as client:
        created = await client.text_to_video.create(
            model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5
        )
        task = await created.wait_for_task_output(timeout=20)
        assert task.status == "SUCCEEDED"
        fetched = await client.tasks.retrieve(created.id)
        assert fetched.status == "SUCCEEDED"
        await client.tasks.delete(created.id)
        with pytest.raises(runwayml.NotFoundError):
            await client.tasks.retrieve(created.id)


async def test_async_waiter_raises_on_cancelled(emulator: Emulators, fast_polling: None) -> None:
    emulator.set_scenario(Scenario.fast(cancel_elsewhere_after_s=0.0).with_times(0.05, 30.0))
    async with AsyncRunwayML(api_key=KEY, base_url=emulator.url("runway")) as client:
        created = await client.text_to_video.create(
            model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5
        )
        with pytest.raises(polling.TaskFailedError) as caught:
            await created.wait_for_task_output(timeout=20)
        assert caught.value.task_details.status == "CANCELLED"
