"""FalProvider (``fal:<app-id>``): each app's inputs from capability data, on the fal emulator.

The emulator checks every app in its table against that app's declared schema (a wrong input
name, value or type is 422, as fal answers), so a row whose mapping is wrong fails here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from abebeats_lab import Settings, VideoRequest, capabilities
from abebeats_lab._types import JobState, Route
from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, EmulatorState, Scenario
from abebeats_lab.errors import MissingKeyError, ProviderHTTPError, ValidationError
from abebeats_lab.media.probe import probe
from abebeats_lab.providers import get_provider
from abebeats_lab.providers.fal import FalProvider, PikaProvider, build_input
from abebeats_lab.run import api as runner
from abebeats_lab.waiting import WaitPolicy, wait

KLING = Route("fal", "fal-ai/kling-video/v3/pro/text-to-video")
VEO_FAST = Route("fal", "fal-ai/veo3.1/fast")
UNLISTED = Route("fal", "someone/new-video-model/text-to-video")
FAST = WaitPolicy(deadline_s=30, min_interval_s=0.02, max_interval_s=0.2)
REQUEST = VideoRequest("a red kite over dunes", duration_s=5, aspect_ratio="9:16", seed=7)
FAL_ROUTES = [c.pattern for c in capabilities.all_routes() if c.pattern.startswith("fal:")]
CONCRETE = [p for p in FAL_ROUTES if "*" not in p]


@pytest.fixture
def emulator() -> Iterator[Emulators]:
    with Emulators(["fal"], Scenario.fast()) as emus:
        yield emus


@pytest.fixture
async def client(emulator: Emulators) -> AsyncIterator[FalProvider]:
    provider = FalProvider(**emulator.client_options("fal"))
    yield provider
    await provider.aclose()


def _state(emulator: Emulators) -> EmulatorState:
    return emulator.states["fal"]


def test_kling_takes_duration_as_text_and_no_seed() -> None:
    body = build_input(REQUEST.replace(resolution="1080p"), capabilities.capabilities_for(KLING))
    assert body["duration"] == "5" and "seed" not in body and "resolution" not in body
    assert body["prompt"] == REQUEST.prompt and body["aspect_ratio"] == "9:16"


def test_veo_on_fal_takes_seconds_with_a_unit_and_an_audio_switch() -> None:
    request = REQUEST.replace(duration_s=8, aspect_ratio="16:9", resolution="720p")
    body = build_input(request, capabilities.capabilities_for(VEO_FAST))
    assert (body["duration"], body["generate_audio"], body["seed"]) == ("8s", False, 7)


def test_an_app_without_a_row_gets_the_prompt_and_the_extras_only() -> None:
    caps = capabilities.capabilities_for(UNLISTED)
    assert not caps.checked and caps.price.usd_per_s is None
    request = REQUEST.replace(extras={"num_frames": 49})
    assert build_input(request, caps) == {"prompt": REQUEST.prompt, "num_frames": 49}


def test_fal_and_pika_are_one_client_with_their_own_key_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIKA_API_KEY", EMULATOR_KEYS["fal"])
    assert isinstance(get_provider("pika"), PikaProvider)
    with pytest.raises(MissingKeyError, match="FAL_KEY"):
        get_provider("fal")
    monkeypatch.setenv("FAL_KEY", EMULATOR_KEYS["fal"])
    fal = get_provider("fal")
    assert isinstance(fal, FalProvider) and not isinstance(fal, PikaProvider)


@pytest.mark.parametrize("pattern", CONCRETE)
async def test_every_fal_row_is_accepted_by_its_app_schema(
    emulator: Emulators, client: FalProvider, pattern: str
) -> None:
    route = Route.parse(pattern)
    request, _ = capabilities.with_defaults(VideoRequest("a paper boat", seed=3), route)
    client.validate(request, route)
    job = await client.submit(request, route)
    assert _state(emulator).requests[-1].path == f"/{route.model}"
    result = await wait(client, job, policy=FAST)
    assert result.status.state is JobState.SUCCEEDED, result.status.error


async def test_a_wrong_input_type_is_the_apps_422(client: FalProvider) -> None:
    with pytest.raises(ProviderHTTPError) as refused:
        await client.submit(REQUEST.replace(extras={"duration": 5}), KLING)
    assert refused.value.status_code == 422 and "duration" in str(refused.value)


async def test_compare_on_a_kling_route_and_an_unlisted_app(tmp_path: Path) -> None:
    result = await runner.compare(
        "a red kite over dunes",
        [str(KLING), str(UNLISTED)],
        Settings(),
        run_dir=tmp_path,
        emulate=True,
        policy=FAST,
    )
    rows = {row.route: row for row in result.rows}
    assert all(row.state == "succeeded" for row in rows.values()), [r.error for r in rows.values()]
    kling = rows[str(KLING)]
    assert kling.settings["duration_s"] == 5 and kling.price_source.startswith("UNCONFIRMED")
    assert probe(tmp_path / str(kling.output_path)).height == 1080
    assert rows[str(UNLISTED)].cost_estimate_usd is None
    (note,) = result.notes
    assert str(UNLISTED) in note and "unchecked" in note


@pytest.mark.parametrize("app", ["../x", "foo", "fal-ai/../x", "fal-ai//x", "fal-ai/x?y=1"])
async def test_an_app_id_that_is_not_owner_slash_app_is_refused_before_any_request(
    tmp_path: Path, app: str
) -> None:
    """An unlisted app is sent as given, so its id must stay one path in fal's queue URL."""
    with pytest.raises(ValidationError) as caught:
        await runner.compare("a kite", [f"fal:{app}"], run_dir=tmp_path / "x")
    assert "fal-ai/pika/v2.2/text-to-video" in str(caught.value)  # the form, by example
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("pattern", [*CONCRETE, str(UNLISTED)])
def test_every_listed_app_and_an_unlisted_one_pass_the_app_id_check(pattern: str) -> None:
    route = Route.parse(pattern)
    request = VideoRequest.of("a kite", Settings())
    caps = FalProvider.validate(capabilities.with_defaults(request, route)[0], route)
    assert caps.pattern in (pattern, "fal:*")
