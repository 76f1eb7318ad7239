"""The official ``replicate`` SDK (1.x), unchanged but for the base URL, against the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import replicate
from _runner_support import emulator_fixtures
from replicate.exceptions import ModelError, ReplicateError

from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, Scenario
from abebeats_lab.media.probe import looks_like_mp4

TOKEN = EMULATOR_KEYS["replicate"]
INPUT = {"prompt": "a red kite over dunes", "duration": 4, "aspect_ratio": "16:9"}
VERSION = "c8bcc475" + "1" * 56
POLL_S = 0.01


emus, emu = emulator_fixtures("replicate")


@pytest.fixture
def client(emus: Emulators) -> Iterator[replicate.Client]:
    sdk = replicate.Client(api_token=TOKEN, base_url=emus.url("replicate"))
    sdk.poll_interval = POLL_S
    yield sdk
    sdk._client.close()  # the SDK has no close(); its pooled sockets would leak otherwise


def _video(url: str) -> bytes:
    response = httpx.get(url)
    response.raise_for_status()
    return response.content


def test_sync_create_get_wait_cancel(client: replicate.Client, emu: Any) -> None:
    prediction = client.predictions.create(model="google/veo-3-fast", input=INPUT)
    assert prediction.status == "starting" and prediction.model == "google/veo-3-fast"
    assert client.predictions.get(prediction.id).id == prediction.id
    prediction.wait()
    assert prediction.status == "succeeded"
    assert prediction.metrics and prediction.metrics["predict_time"] > 0
    assert looks_like_mp4(_video(prediction.output))
    assert client.predictions.cancel(prediction.id).status == "succeeded"


def test_sync_cancel_of_a_running_prediction(client: replicate.Client, emu: Any) -> None:
    emu.set_scenario(Scenario.fast().with_times(0.0, 30.0))
    prediction = client.predictions.create(model="google/veo-3-fast", input=INPUT)
    canceled = client.predictions.cancel(prediction.id)
    assert canceled.status == "canceled" and canceled.completed_at
    prediction.wait()
    assert prediction.status == "canceled"


async def test_async_create_get_wait_cancel(client: replicate.Client, emu: Any) -> None:
    prediction = await client.predictions.async_create(version=VERSION, input=INPUT)
    assert prediction.version == VERSION
    assert (await client.predictions.async_get(prediction.id)).id == prediction.id
    await prediction.async_wait()
    assert prediction.status == "succeeded"
    assert looks_like_mp4(_video(prediction.output))
    canceled = await client.predictions.async_cancel(prediction.id)
    assert canceled.status == "succeeded"
    await client._async_client.aclose()


def test_run_with_prefer_wait_needs_no_polling(client: replicate.Client, emu: Any) -> None:
    # A long hold (the SDK's default 60 s, capped by the job) so a busy machine still finishes.
    output = client.run("google/veo-3-fast", input=INPUT)
    assert isinstance(output, str) and looks_like_mp4(_video(output))
    assert emu.count("status") == 0


def test_run_falls_back_to_polling_when_the_hold_expires(
    client: replicate.Client, emu: Any
) -> None:
    emu.set_scenario(Scenario.fast().with_times(0.0, 1.5))
    output = client.run("google/veo-3-fast", input=INPUT, wait=1)
    assert isinstance(output, str) and looks_like_mp4(_video(output))
    assert emu.count("status") >= 1


def test_run_with_a_version_reads_the_version(client: replicate.Client, emu: Any) -> None:
    output = client.run(f"minimax/video-01:{VERSION}", input={"prompt": "a kite"})
    assert isinstance(output, str)
    assert any(r.path.endswith(f"/versions/{VERSION}") for r in emu.requests)


def test_run_raises_model_error_on_failure(client: replicate.Client, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(fail=True, failure_message="emulated failure"))
    with pytest.raises(ModelError, match="emulated failure"):
        client.run("google/veo-3-fast", input=INPUT)


def test_list_is_newest_first(client: replicate.Client, emu: Any) -> None:
    first = client.predictions.create(model="google/veo-3-fast", input=INPUT)
    second = client.predictions.create(model="google/veo-3-fast", input=INPUT)
    page = client.predictions.list()
    assert [p.id for p in page.results] == [second.id, first.id]
    assert page.next is None


def test_deployments_endpoint(client: replicate.Client, emu: Any) -> None:
    prediction = client.deployments.predictions.create("acme/kite-video", input=INPUT)
    assert prediction.model == "acme/kite-video"


def test_problem_details(emus: Emulators, emu: Any) -> None:
    base = emus.url("replicate")
    anonymous = httpx.post(f"{base}/v1/models/google/veo-3/predictions", json={"input": INPUT})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["title"] == "Unauthenticated"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    invalid = httpx.post(
        f"{base}/v1/models/google/veo-3/predictions", json={"input": {}}, headers=auth
    )
    assert (
        invalid.status_code == 422
        and invalid.json()["invalid_fields"][0]["field"] == "input.prompt"
    )
    assert httpx.get(f"{base}/v1/predictions/nope", headers=auth).status_code == 404


def test_throttled_create_has_retry_after(client: replicate.Client, emu: Any) -> None:
    emu.set_scenario(Scenario.fast(create_429=1, retry_after_s=3))
    with pytest.raises(ReplicateError) as caught:
        client.predictions.create(model="google/veo-3-fast", input=INPUT)
    assert caught.value.status == 429 and "throttled" in (caught.value.detail or "")
    response = httpx.post(
        f"{emu.base_url}/v1/models/google/veo-3/predictions",
        json={"input": INPUT},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 201  # the fault budget was one create
    assert not emu.jobs.keys() - {response.json()["id"]}


def test_prefer_wait_headers(emus: Emulators, emu: Any) -> None:
    response = httpx.post(
        f"{emus.url('replicate')}/v1/models/google/veo-3-fast/predictions",
        json={"input": INPUT},
        headers={"Authorization": f"Bearer {TOKEN}", "Prefer": "wait=1"},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.headers["preference-applied"] == "wait=1"
    assert response.headers["location"].endswith(f"/v1/predictions/{response.json()['id']}")
