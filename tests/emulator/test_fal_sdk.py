"""The official fal_client (sync and async) against the fal emulator, for Pika and other apps.

fal_client has no base-URL argument and hard-codes https, so the queue host is pointed here
the way recipes.md describes: ``fal_client.client.QUEUE_URL_FORMAT`` (a module global read at
call time) is set to the emulator's plain-http root. The key comes from ``FAL_KEY``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fal_client
import httpx
import pytest
from fal_client import client as fal_module

from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, Scenario
from abebeats_lab.media.probe import looks_like_mp4

APP = "fal-ai/pika/v2.2/text-to-video"
ARGS: dict[str, Any] = {
    "prompt": "a red kite over dunes",
    "aspect_ratio": "9:16",
    "duration": 5,
    "seed": 4,
}
POLL_S = 0.02
LONG_RUN_S = 30.0


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    with Emulators(["pika"], Scenario.fast()) as emus:
        monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", emus.url("pika") + "/")
        monkeypatch.setenv("FAL_KEY", EMULATOR_KEYS["pika"])
        yield emus


@pytest.fixture
def sdk(emulator: Emulators) -> Iterator[fal_client.SyncClient]:
    client = fal_client.SyncClient()
    yield client
    client._client.close()  # the SDK offers no close(); its cached httpx client holds sockets


def test_submit_status_result(sdk: fal_client.SyncClient, emulator: Emulators) -> None:
    emulator.set_scenario(Scenario.fast().with_times(1.0, 0.2))
    handle = sdk.submit(APP, arguments=ARGS)
    assert (
        handle.status_url
        == f"{emulator.url('pika')}/fal-ai/pika/requests/{handle.request_id}/status"
    )
    assert isinstance(handle.status(), fal_client.Queued)
    result = handle.get(interval=POLL_S)
    video = result["video"]
    assert video["content_type"] == "video/mp4"
    body = httpx.get(video["url"]).content
    assert looks_like_mp4(body) and len(body) == video["file_size"]
    assert sdk.result(APP, handle.request_id) == result
    done = sdk.status(APP, handle.request_id, with_logs=True)
    assert isinstance(done, fal_client.Completed) and done.error is None
    assert isinstance(done.logs, list) and done.metrics["inference_time"] > 0


def test_in_progress_carries_the_logs_key(sdk: fal_client.SyncClient, emulator: Emulators) -> None:
    emulator.set_scenario(Scenario.fast().with_times(0.0, LONG_RUN_S))
    handle = sdk.submit(APP, arguments=ARGS)
    quiet, verbose = handle.status(), handle.status(with_logs=True)
    assert isinstance(quiet, fal_client.InProgress) and quiet.logs is None
    assert isinstance(verbose, fal_client.InProgress) and verbose.logs
    assert set(verbose.logs[0]) >= {"message", "level", "timestamp"}
    handle.cancel()


def test_cancel_in_flight_then_after_completion(
    sdk: fal_client.SyncClient, emulator: Emulators
) -> None:
    emulator.set_scenario(Scenario.fast().with_times(0.05, LONG_RUN_S))
    handle = sdk.submit(APP, arguments=ARGS)
    sdk.cancel(APP, handle.request_id)
    status = handle.status()
    assert isinstance(status, fal_client.Completed) and status.error_type == "client_cancelled"
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        handle.cancel()
    assert caught.value.status_code == 400
    assert caught.value.response.json() == {"status": "ALREADY_COMPLETED"}
    assert emulator.states["pika"].count("cancel") == 2


def test_failed_run_completes_with_error_and_result_422(
    sdk: fal_client.SyncClient, emulator: Emulators
) -> None:
    emulator.set_scenario(Scenario.fast(fail=True, failure_message="NSFW content detected"))
    handle = sdk.submit(APP, arguments=ARGS)
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        handle.get(interval=POLL_S)
    assert caught.value.status_code == 422
    assert caught.value.message == "NSFW content detected" and caught.value.error_type
    status = handle.status()
    assert isinstance(status, fal_client.Completed) and status.error == "NSFW content detected"


def test_invalid_input_is_422_naming_the_field(
    sdk: fal_client.SyncClient, emulator: Emulators
) -> None:
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        sdk.submit(APP, arguments={**ARGS, "aspect_ratio": "7:3"})
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"][0]["loc"] == ["body", "aspect_ratio"]
    with pytest.raises(fal_client.FalClientHTTPError):
        sdk.submit("fal-ai/pika/v2.2/image-to-video", arguments=ARGS)  # no image_url
    assert emulator.states["pika"].jobs == {}


def test_429_is_retried_and_5xx_with_request_id_is_not(
    sdk: fal_client.SyncClient, emulator: Emulators
) -> None:
    emulator.set_scenario(Scenario.fast(create_429=1, status_5xx=1, retry_after_s=0.01))
    handle = sdk.submit(APP, arguments=ARGS)
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        handle.status()
    assert caught.value.status_code == 503 and "x-fal-request-id" in caught.value.response_headers
    assert handle.get(interval=POLL_S)["video"]["url"]
    state = emulator.states["pika"]
    assert (state.count("create"), len(state.jobs)) == (2, 1)


def test_unknown_status_word_is_rejected_by_the_sdk(
    sdk: fal_client.SyncClient, emulator: Emulators
) -> None:
    handle = sdk.submit(APP, arguments=ARGS)
    emulator.set_scenario(Scenario.fast(unknown_status=True))
    with pytest.raises(ValueError, match="Unknown status"):
        handle.status()


def test_missing_key_header_is_401(emulator: Emulators) -> None:
    response = httpx.post(f"{emulator.url('pika')}/{APP}", json=ARGS)
    assert response.status_code == 401 and "detail" in response.json()


async def test_async_client_submit_result_cancel(emulator: Emulators) -> None:
    client = fal_client.AsyncClient()
    try:
        handle = await client.submit(APP, arguments=ARGS)
        result = await handle.get(interval=POLL_S)
        assert result["video"]["url"].startswith(emulator.url("pika"))
        emulator.set_scenario(Scenario.fast().with_times(0.05, LONG_RUN_S))
        slow = await client.submit(APP, arguments=ARGS)
        await client.cancel(APP, slow.request_id)
        status = await client.status(APP, slow.request_id)
        assert isinstance(status, fal_client.Completed) and status.error_type == "client_cancelled"
    finally:
        await (await client._client).aclose()


KLING = "fal-ai/kling-video/v3/pro/text-to-video"
KLING_ARGS: dict[str, Any] = {"prompt": "a red kite over dunes", "duration": "5"}


def test_a_non_pika_app_end_to_end_under_its_app_root(
    sdk: fal_client.SyncClient, emulator: Emulators
) -> None:
    handle = sdk.submit(KLING, arguments={**KLING_ARGS, "aspect_ratio": "9:16"})
    root = f"{emulator.url('pika')}/fal-ai/kling-video/requests/{handle.request_id}"
    assert handle.status_url == f"{root}/status" and handle.response_url == root
    result = handle.get(interval=POLL_S)
    body = httpx.get(result["video"]["url"]).content
    assert looks_like_mp4(body) and len(body) == result["video"]["file_size"]
    assert sdk.result(KLING, handle.request_id) == result
    assert emulator.states["pika"].jobs[handle.request_id].model == KLING


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({**KLING_ARGS, "duration": 5}, "duration"),  # Kling takes its duration as text
        ({**KLING_ARGS, "seed": 4}, "seed"),  # and has no seed
    ],
)
def test_a_non_pika_app_refuses_what_its_schema_lacks(
    sdk: fal_client.SyncClient, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(fal_client.client.FalClientHTTPError) as refused:
        sdk.submit(KLING, arguments=arguments)
    assert refused.value.status_code == 422
    assert field in str(refused.value.message)


def test_an_app_without_a_declared_schema_is_served_with_any_input(
    sdk: fal_client.SyncClient,
) -> None:
    app = "someone/new-video-model/text-to-video"
    arguments = {"prompt": "a kite", "num_frames": 49, "duration": "4"}
    result = sdk.subscribe(app, arguments=arguments, client_timeout=LONG_RUN_S)
    assert looks_like_mp4(httpx.get(result["video"]["url"]).content)
