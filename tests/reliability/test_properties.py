"""Property tests: no input crashes validation, no response body crashes a status parser.

* Any `VideoRequest`, for every route in the capability data: `capabilities.validate` plus
  the provider's own payload builder either accept it or raise `ValidationError`.
* Any JSON body (random, or shaped like the provider's status object with random values),
  given to each provider's status path, either parses to a `JobStatus` or raises one of our
  `LabError` types. Runway and Pika have pure parsers; Replicate and Veo parse inside their
  SDKs, so those are driven through a loopback server that answers with the generated body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from abebeats_lab import JobState, Route, VideoRequest, capabilities
from abebeats_lab._types import Job, JobStatus
from abebeats_lab.emulator.server import RunningServer, serve
from abebeats_lab.errors import LabError, ValidationError
from abebeats_lab.http import json_body
from abebeats_lab.providers import fal, gemini, replicate, runway, veo
from abebeats_lab.providers.base import utcnow

# The autouse clean-environment fixture is function-scoped; sharing it across examples is fine.
PURE = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
LOOPBACK = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ROUTES = sorted(
    {c.pattern.replace("*", "demo") for c in capabilities.all_routes()}
    | {"replicate:google/veo-3-fast", "replicate:owner/model:" + "a" * 64}
)
VEO_OPERATION = (
    "projects/p/locations/us-central1/publishers/google/models/veo-3.1-fast-generate-001"
    "/operations/op-1"
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
WORDS = ["PENDING", "THROTTLED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "ARCHIVED",
         "starting", "processing", "succeeded", "failed", "canceled", "IN_QUEUE", "IN_PROGRESS",
         "COMPLETED", ""]  # fmt: skip


def _shaped(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with some of the provider's own keys, random values, and random extra keys."""
    return st.fixed_dictionaries({}, optional=keys).flatmap(
        lambda base: st.dictionaries(st.text(max_size=8), json_values, max_size=2).map(
            lambda extra: {**extra, **base}
        )
    )


statuses = st.sampled_from(WORDS) | json_values
urls = st.lists(
    st.text(max_size=30) | st.just("https://cdn.example/v.mp4") | json_values, max_size=3
)
times = st.just("2026-11-21T10:00:00Z") | st.text(max_size=30) | json_values
RUNWAY_BODIES = json_values | _shaped(
    {"id": json_values, "status": statuses, "progress": json_values, "output": urls | json_values,
     "failure": json_values, "failureCode": json_values, "createdAt": times}
)  # fmt: skip
PIKA_BODIES = json_values | _shaped(
    {"status": statuses, "queue_position": json_values, "error": json_values,
     "error_type": json_values, "response_url": json_values}
)  # fmt: skip
REPLICATE_BODIES = json_values | _shaped(
    {"id": st.just("p1") | json_values, "model": json_values, "version": json_values,
     "status": statuses, "input": json_values, "output": urls | json_values,
     "error": json_values, "logs": json_values, "created_at": times, "started_at": times,
     "completed_at": times, "urls": json_values, "metrics": json_values}
)  # fmt: skip
VEO_BODIES = json_values | _shaped(
    {"name": st.just(VEO_OPERATION) | json_values, "done": json_values, "error": json_values,
     "response": json_values | _shaped(
         {"@type": json_values, "videos": json_values, "raiMediaFilteredCount": json_values,
          "raiMediaFilteredReasons": json_values})}
)  # fmt: skip


def _requests() -> st.SearchStrategy[VideoRequest]:
    return st.builds(
        VideoRequest,
        prompt=st.text(max_size=40) | st.text(min_size=2000, max_size=6000),
        duration_s=st.integers(-5, 30),
        aspect_ratio=st.sampled_from(["16:9", "9:16", "1:1", "4:3", "21:9"]) | st.text(max_size=8),
        resolution=st.sampled_from(["360p", "480p", "720p", "1080p", "4k"]) | st.text(max_size=8),
        seed=st.none() | st.integers(-(2**70), 2**70),
        negative_prompt=st.none() | st.text(max_size=20),
        image=st.none()
        | st.sampled_from(
            ["https://x.test/a.png", "data:image/png;base64,AAAA", "gs://b/o.png", "data:,x"]
        )
        | st.text(max_size=20),
        generate_audio=st.booleans(),
        extras=st.dictionaries(st.text(max_size=10), json_values, max_size=2),
    )


def _build_payload(request: VideoRequest, route: Route) -> object:
    """The provider's own translation, which may refuse what the capability data allowed."""
    caps = capabilities.capabilities_for(route)
    builders: dict[str, Callable[[], object]] = {
        "runway": lambda: runway.build_payload(request, route),
        "fal": lambda: fal.build_input(request, caps),
        "pika": lambda: fal.build_input(request, caps),
        "replicate": lambda: (replicate.parse_model(route), replicate.build_input(request, caps)),
        "veo": lambda: veo.build_config(request, route),
        "gemini": lambda: gemini.build_body(request, route),
        "local": lambda: None,
    }
    return builders[route.provider]()


@pytest.mark.parametrize("route_text", ROUTES)
@PURE
@given(request=_requests(), adapt=st.booleans())
def test_any_request_validates_or_raises_validation_error(
    route_text: str, request: VideoRequest, adapt: bool
) -> None:
    route = Route.parse(route_text)
    try:
        if adapt:
            request, _ = capabilities.nearest(request, route)
        capabilities.validate(request, route)
        _build_payload(request, route)
    except ValidationError as exc:
        assert exc.field and str(exc)  # names the field and says what is allowed


def _parsed_or_ours(parse: Callable[[], JobStatus]) -> None:
    try:
        status = parse()
    except LabError as exc:
        assert str(exc)
        return
    assert isinstance(status.state, JobState)


@PURE
@given(body=RUNWAY_BODIES)
def test_runway_parser(body: Any) -> None:
    _parsed_or_ours(lambda: runway.parse_task(_as_response_json(body, "runway")))


@PURE
@given(body=PIKA_BODIES)
def test_fal_parser(body: Any) -> None:
    _parsed_or_ours(lambda: fal.parse_status(_as_response_json(body, "pika")))


@PURE
@given(raw=st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_are_json_or_a_protocol_error(raw: bytes) -> None:
    try:
        assert isinstance(json_body(httpx.Response(200, content=raw), "runway"), dict)
    except LabError as exc:
        assert "runway" in str(exc)


def _as_response_json(body: Any, provider: str) -> dict[str, Any]:
    """The body as it arrives: serialised, then read back by the shared JSON reader."""
    return json_body(httpx.Response(200, content=json.dumps(body).encode()), provider)


class _Answers:
    """A loopback server that answers every request with the body the test set last."""

    def __init__(self) -> None:
        self.body: bytes = b"{}"
        app = Starlette(
            routes=[StarletteRoute("/{path:path}", self.answer, methods=["GET", "POST"])]
        )
        self.server: RunningServer = serve(app)

    async def answer(self, request: Request) -> Response:
        return Response(self.body, media_type="application/json")


@pytest.fixture(scope="module")
def answers() -> Iterator[_Answers]:
    served = _Answers()
    yield served
    served.server.stop()


async def _replicate_status(url: str) -> JobStatus:
    route = Route.parse("replicate:google/veo-3-fast")
    async with replicate.ReplicateProvider(api_key="r8_test", base_url=url) as client:
        return await client.status(Job(route, "p1", VideoRequest("x"), utcnow()))


async def _veo_status(url: str) -> JobStatus:
    route = Route.parse("veo:veo-3.1-fast-generate-001")
    async with veo.VeoProvider(api_key="t", base_url=url, project="p") as client:
        return await client.status(Job(route, VEO_OPERATION, VideoRequest("x"), utcnow()))


@LOOPBACK
@given(body=REPLICATE_BODIES)
def test_replicate_status_path(answers: _Answers, body: Any) -> None:
    answers.body = json.dumps(body).encode()
    _parsed_or_ours(lambda: asyncio.run(_replicate_status(answers.server.url)))


@LOOPBACK
@given(body=VEO_BODIES)
def test_veo_status_path(answers: _Answers, body: Any) -> None:
    answers.body = json.dumps(body).encode()
    _parsed_or_ours(lambda: asyncio.run(_veo_status(answers.server.url)))


@pytest.mark.parametrize("body", [None, [], "text", 1])
def test_replicate_non_object_body_is_a_protocol_error(answers: _Answers, body: Any) -> None:
    answers.body = json.dumps(body).encode()
    with pytest.raises(LabError):
        asyncio.run(_replicate_status(answers.server.url))
