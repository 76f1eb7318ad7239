"""Runway's developer API on loopback: text/image-to-video creates, task polling, delete.

Wire format as runwayml 5.24.0 reads it (provider-apis.md §1, §5.1): camelCase JSON, a task
union discriminated on ``status`` carrying ``createdAt``, ``estimatedCost`` while in flight and
``cost`` once terminal. What each model accepts is the `MODELS` table, not code branches.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from abebeats_lab.emulator.core import EmulatedJob, EmulatorState, drop_connection, hang

__all__ = ["API_VERSION", "MODELS", "ModelSpec", "create_app"]

API_VERSION = "2024-11-06"
_KEY = re.compile(r"^Bearer key_[0-9a-f]{128}$")
_SEED_MAX = 4_294_967_295
_DEFAULT_FAILURE_CODE = "INTERNAL"
_UNKNOWN_STATUS = "ARCHIVED"  # a word the task union does not have
_T2V, _I2V = "text_to_video", "image_to_video"
_WIDE = ("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672")
_VEO = ("1280:720", "720:1280", "1080:1920", "1920:1080")
_RANGE_2_10 = tuple(range(2, 11))
_DEFAULT_SHAPE = ("16:9", "720p")
"""What a create without a ``ratio`` renders (an image-to-video ratio follows the image)."""

# Runway's pixel ratio -> (aspect ratio, resolution) the rendered output is given.
RATIO_SHAPES = {
    "1280:720": ("16:9", "720p"),
    "720:1280": ("9:16", "720p"),
    "1920:1080": ("16:9", "1080p"),
    "1080:1920": ("9:16", "1080p"),
    "960:960": ("1:1", "720p"),
    "1440:1440": ("1:1", "1080p"),
    "1104:832": ("4:3", "720p"),
    "832:1104": ("3:4", "720p"),
    "1584:672": ("21:9", "720p"),
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What one model accepts on one endpoint (runwayml 5.24.0 create params)."""

    ratios: tuple[str, ...]
    durations: tuple[int, ...]
    credits_per_s: int
    required: frozenset[str]
    optional: frozenset[str]
    default_duration: int | None = None
    audio_credits_per_s: int | None = None
    prompt_max: int = 1000


def _spec(
    ratios: tuple[str, ...],
    durations: tuple[int, ...],
    credits: int,
    required: str,
    optional: str,
    **more: Any,
) -> ModelSpec:
    return ModelSpec(
        ratios, durations, credits, frozenset(required.split()), frozenset(optional.split()), **more
    )


_GEN_OPT = "seed contentModeration outputFormat proresProfile"
_VEO_OPT = "duration seed audio negativePrompt"
_KLING_1080 = ("1920:1080", "1080:1920", "1440:1440")
_KLING_720 = ("1280:720", "720:1280", "960:960")
_SEEDANCE_720 = ("1280:720", "720:1280", "960:960", "1112:834", "834:1112")
_SEEDANCE_1080 = (*_SEEDANCE_720, "1920:1080", "1080:1920", "1440:1440")
_WAN = ("1280:720", "720:1280", "960:960", "1104:832", "832:1104", "1920:1080", "1080:1920")
_RANGE_3_15 = tuple(range(3, 16))
_RANGE_4_15 = tuple(range(4, 16))
_RANGE_3_10 = tuple(range(3, 11))
_STAND_IN_CREDITS = 10
"""Credits per second this emulator bills for resold models whose real rate is in no stored
Runway source (Kling, Seedance, Wan, Omni): a stand-in, never a price."""
_KLING_OPT = "audio cfgScale duration promptText providerSettings"
_KLING_O3_OPT = "audio duration promptText providerSettings"
_SEEDANCE_OPT = "audio duration ratio seed referenceAudio"
_WAN_OPT = "audio duration ratio referenceAudio referenceVideos"


def _resold(
    ratios: tuple[str, ...], durations: tuple[int, ...], t2v: tuple[str, str], i2v: tuple[str, str]
) -> dict[str, ModelSpec]:
    """A resold model's two specs (runwayml 5.24.0 unions): ``(required, optional)`` per
    endpoint, billed at the stand-in rate."""
    return {
        _T2V: _spec(ratios, durations, _STAND_IN_CREDITS, *t2v, prompt_max=_RESOLD_PROMPT_MAX),
        _I2V: _spec(ratios, durations, _STAND_IN_CREDITS, *i2v, prompt_max=_RESOLD_PROMPT_MAX),
    }


_RESOLD_PROMPT_MAX = 3500
"""Seedance's documented promptText limit; the SDK states none for Kling and Wan."""
_RESOLD: dict[str, dict[str, ModelSpec]] = {
    "kling3.0_pro": _resold(
        _KLING_1080, _RANGE_3_15, ("ratio", _KLING_OPT), ("promptImage", _KLING_OPT + " ratio")
    ),
    "kling3.0_standard": _resold(
        _KLING_720, _RANGE_3_15, ("ratio", _KLING_OPT), ("promptImage", _KLING_OPT + " ratio")
    ),
    "klingO3_pro": _resold(
        _KLING_1080,
        _RANGE_3_15,
        ("ratio", _KLING_O3_OPT),
        ("promptImage", _KLING_O3_OPT + " ratio references"),
    ),
    "klingO3_standard": _resold(
        _KLING_720,
        _RANGE_3_15,
        ("ratio", _KLING_O3_OPT),
        ("promptImage", _KLING_O3_OPT + " ratio references"),
    ),
    "seedance2": _resold(
        _SEEDANCE_1080,
        _RANGE_4_15,
        ("promptText", _SEEDANCE_OPT + " references referenceVideos"),
        ("promptImage", _SEEDANCE_OPT + " promptText"),
    ),
    "seedance2_fast": _resold(
        _SEEDANCE_720,
        _RANGE_4_15,
        ("promptText", _SEEDANCE_OPT + " references referenceVideos"),
        ("promptImage", _SEEDANCE_OPT + " promptText"),
    ),
    "seedance2_mini": _resold(
        _SEEDANCE_720,
        _RANGE_4_15,
        ("promptText", _SEEDANCE_OPT + " references referenceVideos"),
        ("promptImage", _SEEDANCE_OPT + " promptText"),
    ),
    "wan3": _resold(
        _WAN,
        (5, 10, 15),
        ("promptText", _WAN_OPT + " references"),
        ("promptImage promptText", _WAN_OPT),
    ),
    "gemini_omni_flash": _resold(
        _VEO[:2],
        _RANGE_3_10,
        ("promptText", "duration ratio"),
        ("promptImage", "duration promptText ratio"),
    ),
}
MODELS: dict[tuple[str, str], ModelSpec] = {
    (_T2V, "gen4.5"): _spec(_VEO[:2], _RANGE_2_10, 12, "promptText ratio duration", _GEN_OPT),
    (_I2V, "gen4.5"): _spec(
        _WIDE, _RANGE_2_10, 12, "promptImage promptText ratio duration", "seed contentModeration"
    ),
    (_I2V, "gen4_turbo"): _spec(
        _WIDE,
        _RANGE_2_10,
        5,
        "promptImage ratio",
        "promptText duration seed contentModeration",
        default_duration=5,
    ),
    (_T2V, "veo3.1"): _spec(
        _VEO,
        (4, 6, 8),
        20,
        "promptText ratio",
        _VEO_OPT,
        default_duration=8,
        audio_credits_per_s=40,
    ),
    (_I2V, "veo3.1"): _spec(
        _VEO,
        (4, 6, 8),
        20,
        "promptImage ratio",
        "promptText " + _VEO_OPT,
        default_duration=8,
        audio_credits_per_s=40,
    ),
    (_T2V, "veo3.1_fast"): _spec(
        _VEO,
        (4, 6, 8),
        10,
        "promptText ratio",
        _VEO_OPT,
        default_duration=8,
        audio_credits_per_s=15,
    ),
    (_I2V, "veo3.1_fast"): _spec(
        _VEO,
        (4, 6, 8),
        10,
        "promptImage ratio",
        "promptText " + _VEO_OPT,
        default_duration=8,
        audio_credits_per_s=15,
    ),
    **{
        (endpoint, model): spec
        for model, specs in _RESOLD.items()
        for endpoint, spec in specs.items()
    },
}


class BadInput(Exception):
    """A create body the real API would answer with 400; the message names the field."""


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _auth_problem(request: Request) -> Response | None:
    if not _KEY.match(request.headers.get("authorization", "")):
        return _error(401, "Invalid API key: send Authorization: Bearer key_...")
    version = request.headers.get("x-runway-version")
    if version != API_VERSION:
        return _error(400, f"X-Runway-Version: expected {API_VERSION!r}, got {version!r}")
    return None


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _check_fields(body: dict[str, Any], spec: ModelSpec, model: str) -> None:
    allowed = spec.required | spec.optional | {"model"}
    for name in body:
        if name not in allowed:
            raise BadInput(f"{name}: not accepted by model {model}")
    for name in sorted(spec.required):
        if name not in body:
            raise BadInput(f"{name}: required for model {model}")


def _check_values(body: dict[str, Any], spec: ModelSpec) -> int:
    prompt = body.get("promptText")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise BadInput("promptText: must be a non-empty string")
    if isinstance(prompt, str) and _utf16_len(prompt) > spec.prompt_max:
        raise BadInput(f"promptText: must be at most {spec.prompt_max} UTF-16 code units")
    if "ratio" in body and body["ratio"] not in spec.ratios:
        raise BadInput(f"ratio: must be one of {', '.join(spec.ratios)}")
    duration = body.get("duration", spec.default_duration)
    if type(duration) is not int or duration not in spec.durations:
        raise BadInput(f"duration: must be one of {', '.join(map(str, spec.durations))}")
    seed = body.get("seed", 0)
    if type(seed) is not int or not 0 <= seed <= _SEED_MAX:
        raise BadInput(f"seed: must be an integer in 0..{_SEED_MAX}")
    if "audio" in body and not isinstance(body["audio"], bool):
        raise BadInput("audio: must be a boolean")
    image = body.get("promptImage")
    if image is not None and not (isinstance(image, str | list) and image):
        raise BadInput("promptImage: must be a URL, a data URI or a list of {uri, position}")
    return duration


def _validated(endpoint: str, body: Any) -> tuple[ModelSpec, int]:
    if not isinstance(body, dict):
        raise BadInput("body: expected a JSON object")
    model = body.get("model")
    spec = MODELS.get((endpoint, model)) if isinstance(model, str) else None
    if spec is None:
        known = sorted(m for e, m in MODELS if e == endpoint)
        raise BadInput(f"model: {model!r} is not available on /v1/{endpoint}; use one of {known}")
    _check_fields(body, spec, str(model))
    return spec, _check_values(body, spec)


def _credits(job: EmulatedJob) -> int:
    spec: ModelSpec = job.extra["spec"]
    rate = (
        spec.audio_credits_per_s
        if job.payload.get("audio") and spec.audio_credits_per_s
        else spec.credits_per_s
    )
    return rate * int(job.extra["duration"])


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Runway:
    """Route handlers over one `EmulatorState`."""

    def __init__(self, state: EmulatorState, *, canceled_tasks_404: bool) -> None:
        self.state = state
        self.canceled_tasks_404 = canceled_tasks_404

    def _too_many(self) -> JSONResponse:
        retry = f"{self.state.scenario.retry_after_s:g}"
        return _error(
            429, "Too many requests: daily generation limit reached", **{"Retry-After": retry}
        )

    async def create(self, request: Request) -> Response:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        self.state.record(request, "create")
        if (problem := _auth_problem(request)) is not None:
            return problem
        if self.state.take_fault("create_429", self.state.scenario.create_429):
            return self._too_many()
        try:
            body = await request.json()
            spec, duration = _validated(endpoint, body)
        except ValueError:
            return _error(400, "body: not valid JSON")
        except BadInput as exc:
            return _error(400, str(exc))
        job = self.state.new_job(body["model"], body)
        job.extra.update(spec=spec, duration=duration)
        self.state.start_render(job, lambda: self._output_url(job))
        return await self._answer_create(job)

    async def _answer_create(self, job: EmulatedJob) -> Response:
        scenario = self.state.scenario
        if self.state.take_fault("drop_create", scenario.drop_create):
            return await drop_connection()
        if self.state.take_fault("hang_create", scenario.hang_create):
            return await hang()
        return JSONResponse({"id": job.id, "estimatedCost": {"credits": _credits(job)}})

    def _status_fault(self) -> Response | None:
        scenario = self.state.scenario
        if self.state.take_fault("status_429", scenario.status_429):
            return self._too_many()
        if self.state.take_fault("status_5xx", scenario.status_5xx):
            # Retry-After on shedding is UNCONFIRMED for Runway; it keeps SDK retries quick.
            retry = f"{scenario.retry_after_s:g}"
            return _error(503, "Service unavailable: load shedding", **{"Retry-After": retry})
        if self.state.take_fault("malformed_status", scenario.malformed_status):
            return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        return None

    async def retrieve(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        self.state.record(request, "status", task_id)
        if (problem := _auth_problem(request) or self._status_fault()) is not None:
            return problem
        job = self.state.get(task_id)
        if job is None:
            return _error(404, f"Task {task_id} not found")
        return JSONResponse(self._task(job))

    def _task(self, job: EmulatedJob) -> dict[str, Any]:
        now = time.time()
        base: dict[str, Any] = {"id": job.id, "createdAt": _iso(job.created)}
        phase = job.phase(now)
        if self.state.scenario.unknown_status:
            return {**base, "status": _UNKNOWN_STATUS}
        if phase == "queued":
            throttled = job.hold_until is not None and now < job.hold_until
            return {
                **base,
                "status": "THROTTLED" if throttled else "PENDING",
                "estimatedCost": self._estimate(job),
            }
        if phase == "running":
            progress = round(job.progress(now), 4) if self.state.scenario.progress else 0.0
            return {
                **base,
                "status": "RUNNING",
                "progress": progress,
                "estimatedCost": self._estimate(job),
            }
        return {**base, **self._terminal(job, phase)}

    @staticmethod
    def _estimate(job: EmulatedJob) -> dict[str, float]:
        return {"credits": float(_credits(job))}

    def _terminal(self, job: EmulatedJob, phase: str) -> dict[str, Any]:
        scenario = self.state.scenario
        if phase == "canceled":
            return {"status": "CANCELLED", "cost": {"credits": 0}}
        if phase == "failed":
            code = scenario.failure_code or _DEFAULT_FAILURE_CODE
            return {
                "status": "FAILED",
                "failure": scenario.failure_message,
                "failureCode": code,
                "cost": {"credits": 0},
            }
        return {
            "status": "SUCCEEDED",
            "output": [self._output_url(job)],
            "cost": {"credits": _credits(job)},
        }

    def _output_url(self, job: EmulatedJob) -> str:
        # Every GET signs a fresh URL, as Runway does ("fetch the task again to get fresh URLs").
        self.state.refresh_output(job)
        aspect, resolution = RATIO_SHAPES.get(job.payload.get("ratio", ""), _DEFAULT_SHAPE)
        return self.state.output_for(
            job,
            prompt=str(job.payload.get("promptText", "")),
            seed=job.payload.get("seed"),
            duration_s=float(job.extra["duration"]),
            aspect_ratio=aspect,
            resolution=resolution,
            audio=bool(job.payload.get("audio", False)),
        )

    async def delete(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        self.state.record(request, "cancel", task_id)
        if (problem := _auth_problem(request)) is not None:
            return problem
        job = self.state.get(task_id)
        if job is None:
            return _error(404, f"Task {task_id} not found")
        if job.phase() in ("queued", "running"):
            job.canceled_at = time.time()
            job.deleted = self.canceled_tasks_404
        else:
            job.deleted = True
        return Response(status_code=204)


def create_app(state: EmulatorState, *, canceled_tasks_404: bool = False) -> Starlette:
    """The Runway emulator. ``canceled_tasks_404`` makes tasks vanish on cancel too.

    Whether Runway still shows a cancelled task (as ``CANCELLED``) or answers 404 is
    UNCONFIRMED; the default keeps it visible, the switch lets clients be tested on both.
    """
    api = _Runway(state, canceled_tasks_404=canceled_tasks_404)
    routes = [
        Route("/v1/text_to_video", api.create, methods=["POST"]),
        Route("/v1/image_to_video", api.create, methods=["POST"]),
        Route("/v1/tasks/{task_id}", api.retrieve, methods=["GET"]),
        Route("/v1/tasks/{task_id}", api.delete, methods=["DELETE"]),
        state.file_route(),
    ]
    return Starlette(routes=routes)
