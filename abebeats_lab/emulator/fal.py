"""fal.ai's queue API on loopback, for any app id: submit, status, SSE stream, result, cancel.

Wire format as fal_client 1.0.3 reads it (provider-apis.md §4, §5.4). Submits go to the full
app id (``/fal-ai/pika/v2.2/text-to-video``); status, result and cancel live under the app
root, its first two path segments (``/fal-ai/pika/requests/{id}``), and the submit answer
carries those URLs. Apps in `MODELS` are checked against their declared schema (a wrong name,
value or type is 422, as fal answers); any other app id is served with every input accepted.
A failed run is ``COMPLETED`` with ``error``/``error_type``; its result answers 422.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from abebeats_lab.emulator.core import EmulatedJob, EmulatorState, drop_connection, hang

__all__ = ["ANY_APP", "MODELS", "AppSpec", "create_app"]

_RATIOS = ("16:9", "9:16", "1:1", "4:5", "5:4", "3:2", "2:3")
_SEED_MAX = 4_294_967_295
_STREAM_TICK_S = 0.05
"""How often the SSE stream looks at the job clock."""
_KEEPALIVE_S = 15.0
"""fal sends a comment line this often on a quiet stream."""
_CANCELED_TYPE = "client_cancelled"
_DEFAULT_ERROR_TYPE = "runner_server_error"
_UNKNOWN_STATUS = "IN_LIMBO"  # a word fal_client answers with ValueError("Unknown status")
_CLIENT_CLOSED = 499
_RENDER_DEFAULTS = {"duration": 5.0, "aspect_ratio": "16:9", "resolution": "720p"}
"""What an app's output is rendered as where its input does not say."""
_MAX_RENDER_S = 30.0
"""A free-form duration past this is rendered at the default (an unchecked app's input)."""
_ADAPTIVE = frozenset({"auto", "adaptive"})
"""Ratio words meaning "the app chooses": rendered at the default ratio."""


@dataclass(frozen=True, slots=True)
class AppSpec:
    """What one fal app accepts (its model page's input schema), as the queue checks it.

    ``enums`` are typed: an app that takes ``duration`` as ``"5"`` refuses ``5`` with 422,
    as fal does. ``free`` inputs take any value of their type; any other name is refused.
    ``schema=False`` is an app this emulator has no schema for: every input is accepted.
    """

    enums: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    free: frozenset[str] = frozenset({"prompt", "seed", "negative_prompt"})
    required: frozenset[str] = frozenset({"prompt"})
    render: Mapping[str, Any] = field(default_factory=dict)
    """How the output is rendered where no input says (e.g. Kling Pro's fixed 1080p)."""
    schema: bool = True


def _pika(**more: Any) -> AppSpec:
    resolutions = more.pop("resolutions", ("720p", "1080p"))
    negative_default = more.pop("negative_default", "ugly, bad, terrible")
    image = more.pop("image", False)
    return AppSpec(
        enums={"aspect_ratio": _RATIOS, "resolution": resolutions, "duration": (5, 10)},
        defaults={
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "duration": 5,
            "negative_prompt": negative_default,
        },
        free=frozenset({"prompt", "seed", "negative_prompt", *(("image_url",) if image else ())}),
        required=frozenset({"prompt", *(("image_url",) if image else ())}),
    )


def _texts(values: range | tuple[int, ...], suffix: str = "") -> tuple[str, ...]:
    return tuple(f"{v}{suffix}" for v in values)


_VEO = AppSpec(
    enums={
        "aspect_ratio": ("16:9", "9:16"),
        "duration": _texts((4, 6, 8), "s"),
        "resolution": ("720p", "1080p"),
    },
    defaults={"aspect_ratio": "16:9", "duration": "8s", "resolution": "720p"},
    free=frozenset({"prompt", "seed", "negative_prompt", "generate_audio", "auto_fix"}),
)


def _kling(resolution: str) -> AppSpec:
    """Kling v3 / O3 on fal: duration as text "3".."15", no seed (provider-apis.md)."""
    return AppSpec(
        enums={"duration": _texts(range(3, 16)), "aspect_ratio": ("16:9", "9:16", "1:1")},
        defaults={"duration": "5", "aspect_ratio": "16:9"},
        free=frozenset(
            {"prompt", "multi_prompt", "negative_prompt", "generate_audio", "cfg_scale"}
        ),
        render={"resolution": resolution},
    )


def _ltx(durations: tuple[int, ...]) -> AppSpec:
    return AppSpec(
        enums={"aspect_ratio": ("16:9", "9:16"), "resolution": ("1080p",), "duration": durations},
        defaults={"aspect_ratio": "16:9", "resolution": "1080p", "duration": durations[0]},
        free=frozenset({"prompt", "seed", "generate_audio"}),
    )


_SEEDANCE = AppSpec(
    enums={
        "duration": _texts(range(4, 16)),
        "aspect_ratio": ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16"),
        "resolution": ("480p", "720p"),
    },
    defaults={"duration": "5", "aspect_ratio": "16:9", "resolution": "720p"},
    free=frozenset({"prompt", "seed", "generate_audio"}),
)
MODELS: dict[str, AppSpec] = {
    "fal-ai/pika/v2.2/text-to-video": _pika(),
    "fal-ai/pika/v2.2/image-to-video": _pika(image=True),
    "fal-ai/pika/v2.1/text-to-video": _pika(),
    "fal-ai/pika/v2/turbo/text-to-video": _pika(negative_default=""),
    "fal-ai/pika/v2.5/text-to-video": _pika(resolutions=("480p", "720p", "1080p")),
    "fal-ai/veo3.1": _VEO,
    "fal-ai/veo3.1/fast": _VEO,
    "fal-ai/kling-video/v3/pro/text-to-video": _kling("1080p"),
    "fal-ai/kling-video/v3/standard/text-to-video": _kling("720p"),
    "fal-ai/kling-video/o3/pro/text-to-video": _kling("1080p"),
    "bytedance/seedance-2.0/text-to-video": _SEEDANCE,
    "bytedance/seedance-2.0/fast/text-to-video": _SEEDANCE,
    "fal-ai/minimax/hailuo-2.3/pro/text-to-video": AppSpec(
        free=frozenset({"prompt", "prompt_optimizer"}),
        render={"duration": 6.0, "resolution": "1080p"},
    ),
    "fal-ai/minimax/hailuo-2.3/standard/text-to-video": AppSpec(
        enums={"duration": ("6", "10")},
        defaults={"duration": "6"},
        free=frozenset({"prompt", "prompt_optimizer"}),
        render={"resolution": "768p"},
    ),
    "alibaba/wan-3.0/text-to-video": AppSpec(
        enums={
            "resolution": ("480p", "720p", "1080p"),
            "aspect_ratio": ("adaptive", "16:9", "4:3", "1:1", "3:4", "9:16"),
            "duration": (5, 10, 15),
        },
        defaults={"resolution": "1080p", "aspect_ratio": "adaptive", "duration": 5},
        free=frozenset({"prompt"}),
    ),
    "lightricks/ltx-2.5/text-to-video/fast": _ltx(tuple(range(6, 21, 2))),
    "lightricks/ltx-2.5/text-to-video/pro": _ltx((6, 8, 10)),
}
"""The apps with a declared schema: Pika's, and the apps capabilities/fal.toml lists (the
emulator keeps its own copy: it checks our client, it does not share its data)."""
ANY_APP = AppSpec(schema=False)
"""Any other app id: served, every input accepted (the caller's extras), prompt required."""


class BadInput(Exception):
    """Input fal would reject with 422; ``loc`` names the field."""

    def __init__(self, loc: str, msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind

    def response(self) -> JSONResponse:
        detail = [{"loc": ["body", self.loc], "msg": self.msg, "type": self.kind}]
        return JSONResponse({"detail": detail}, status_code=422)


def _enum(body: dict[str, Any], name: str, allowed: tuple[Any, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value not in allowed or type(value) is not type(allowed[0]):
        raise BadInput(name, f"must be one of {', '.join(map(str, allowed))}", "enum")
    return value


def _validated(spec: AppSpec, body: Any) -> dict[str, Any]:
    """The full input with defaults filled in, or `BadInput`."""
    if not isinstance(body, dict):
        raise BadInput("body", "expected a JSON object", "type_error")
    allowed = spec.free | set(spec.enums)
    for name in body:
        if spec.schema and name not in allowed:
            raise BadInput(name, "extra inputs are not permitted", "extra_forbidden")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput("prompt", "field required: a non-empty string", "missing")
    for name in sorted(spec.required - {"prompt"}):
        if not isinstance(body.get(name), str):
            raise BadInput(name, "field required", "missing")
    if "seed" in allowed or "seed" in body:
        seed = body.get("seed", 0)
        if type(seed) is not int or not 0 <= seed <= _SEED_MAX:
            raise BadInput("seed", f"must be an integer in 0..{_SEED_MAX}")
    if "generate_audio" in body and not isinstance(body["generate_audio"], bool):
        raise BadInput("generate_audio", "must be a boolean", "bool_type")
    filled = {**spec.defaults, **body}
    for name, values in spec.enums.items():
        filled[name] = _enum(body, name, values, spec.defaults.get(name))
    return filled


def _seconds(value: Any) -> float | None:
    """An app's duration input (``5``, ``"5"``, ``"8s"``) in seconds, if it reads as one."""
    try:
        seconds = float(str(value).removesuffix("s"))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0 < seconds <= _MAX_RENDER_S else None


def _render_shape(spec: AppSpec, payload: Mapping[str, Any]) -> tuple[float, str, str]:
    """Duration, ratio and resolution the output is rendered at, from the app's inputs."""
    shape = {**_RENDER_DEFAULTS, **spec.render}
    duration = _seconds(payload.get("duration"))
    if duration is not None:
        shape["duration"] = duration
    ratio = payload.get("aspect_ratio")
    if isinstance(ratio, str) and ":" in ratio and ratio not in _ADAPTIVE:
        shape["aspect_ratio"] = ratio
    if isinstance(payload.get("resolution"), str):
        shape["resolution"] = payload["resolution"]
    return float(shape["duration"]), str(shape["aspect_ratio"]), str(shape["resolution"])


def _detail(
    status: int, message: str, error_type: str | None = None, **headers: str
) -> JSONResponse:
    body: dict[str, Any] = {"detail": message}
    if error_type:
        body["error_type"] = error_type
    return JSONResponse(body, status_code=status, headers=headers or None)


def _unauthorized(request: Request) -> Response | None:
    header = request.headers.get("authorization", "")
    if header.startswith("Key ") and header[len("Key ") :].strip():
        return None
    return _detail(401, "No key: send Authorization: Key <FAL_KEY>")


def _app_root(model_id: str) -> str:
    parts = model_id.split("/")
    return "/".join(parts[:3] if parts[0] in ("workflows", "comfy") else parts[:2])


class _Fal:
    """Route handlers over one `EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def _base(self, request: Request) -> str:
        return self.state.base_url or str(request.base_url).rstrip("/")

    def _too_many(self) -> JSONResponse:
        retry = f"{self.state.scenario.retry_after_s:g}"
        return _detail(
            429, "Too many concurrent requests", "rate_limited", **{"Retry-After": retry}
        )

    async def submit(self, request: Request) -> Response:
        model_id = request.path_params["model_id"].strip("/")
        self.state.record(request, "create")
        if (problem := _unauthorized(request)) is not None:
            return problem
        if self.state.take_fault("create_429", self.state.scenario.create_429):
            return self._too_many()
        spec = MODELS.get(model_id, ANY_APP)
        try:
            payload = _validated(spec, await request.json())
        except ValueError:
            return BadInput("body", "not valid JSON", "json_invalid").response()
        except BadInput as exc:
            return exc.response()
        job = self.state.new_job(model_id, payload)
        job.extra["shape"] = _render_shape(spec, payload)
        self.state.start_render(job, lambda: self._video(job))
        return await self._answer_submit(request, job)

    async def _answer_submit(self, request: Request, job: EmulatedJob) -> Response:
        scenario = self.state.scenario
        if self.state.take_fault("drop_create", scenario.drop_create):
            return await drop_connection()
        if self.state.take_fault("hang_create", scenario.hang_create):
            return await hang()
        return JSONResponse({**self._urls(request, job), "queue_position": self._position(job)})

    def _urls(self, request: Request, job: EmulatedJob) -> dict[str, str]:
        url = f"{self._base(request)}/{_app_root(job.model)}/requests/{job.id}"
        return {
            "request_id": job.id,
            "response_url": url,
            "status_url": f"{url}/status",
            "cancel_url": f"{url}/cancel",
        }

    def _position(self, job: EmulatedJob) -> int:
        now = time.time()
        return sum(
            1
            for j in self.state.jobs.values()
            if j.created < job.created and j.phase(now) == "queued"
        )

    def _job(self, request: Request) -> EmulatedJob | None:
        job = self.state.get(request.path_params["request_id"])
        root = f"{request.path_params['owner']}/{request.path_params['alias']}"
        return job if job is not None and _app_root(job.model) == root else None

    def _status_fault(self) -> Response | None:
        scenario = self.state.scenario
        if self.state.take_fault("status_429", scenario.status_429):
            return self._too_many()
        if self.state.take_fault("status_5xx", scenario.status_5xx):
            # With x-fal-request-id the answer came from fal, not its ingress: not retried.
            headers = {
                "x-fal-request-id": "emulated-503",
                "X-Fal-Error-Type": "runner_connection_error",
            }
            return _detail(503, "Runner connection error", "runner_connection_error", **headers)
        if self.state.take_fault("malformed_status", scenario.malformed_status):
            return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        return None

    def _stream_fault(self) -> Response | None:
        if self.state.take_fault("stream_429", self.state.scenario.stream_429):
            return self._too_many()
        return self._status_fault()

    def _status(self, request: Request, job: EmulatedJob, logs: bool) -> dict[str, Any]:
        now = time.time()
        phase = job.phase(now)
        body: dict[str, Any] = {**self._urls(request, job)}
        if self.state.scenario.unknown_status:
            return {**body, "status": _UNKNOWN_STATUS}
        if phase == "queued":
            return {**body, "status": "IN_QUEUE", "queue_position": self._position(job)}
        lines = _logs(job, now) if logs else None
        if phase == "running":
            return {**body, "status": "IN_PROGRESS", "logs": lines}
        body.update(status="COMPLETED", logs=lines, metrics={"inference_time": round(job.run_s, 3)})
        if phase == "canceled":
            body.update(error="Request was cancelled by the user", error_type=_CANCELED_TYPE)
        elif phase == "failed":
            body.update(error=self.state.scenario.failure_message, error_type=self._error_type())
        return body

    def _error_type(self) -> str:
        return self.state.scenario.failure_code or _DEFAULT_ERROR_TYPE

    async def status(self, request: Request) -> Response:
        self.state.record(request, "status", request.path_params["request_id"])
        if (problem := _unauthorized(request) or self._status_fault()) is not None:
            return problem
        job = self._job(request)
        if job is None:
            return _detail(404, "Request not found")
        return JSONResponse(self._status(request, job, _wants_logs(request)))

    async def stream(self, request: Request) -> Response:
        self.state.record(request, "stream", request.path_params["request_id"])
        if (problem := _unauthorized(request) or self._stream_fault()) is not None:
            return problem
        job = self._job(request)
        if job is None:
            return _detail(404, "Request not found")
        events = self._events(request, job, _wants_logs(request))
        return StreamingResponse(
            events, media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def _events(self, request: Request, job: EmulatedJob, logs: bool) -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        quiet_since = time.monotonic()
        while True:
            body = self._status(request, job, logs)
            if body != last:
                yield f"data: {json.dumps(body)}\n\n"
                last, quiet_since = body, time.monotonic()
            elif time.monotonic() - quiet_since > _KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            if body["status"] not in ("IN_QUEUE", "IN_PROGRESS"):
                return
            await asyncio.sleep(_STREAM_TICK_S)

    async def result(self, request: Request) -> Response:
        self.state.record(request, "result", request.path_params["request_id"])
        if (problem := _unauthorized(request)) is not None:
            return problem
        if self.state.take_fault("result_429", self.state.scenario.result_429):
            return self._too_many()
        job = self._job(request)
        if job is None:
            return _detail(404, "Request not found")
        phase = job.phase()
        if phase in ("queued", "running"):
            return _detail(400, "Request is still in progress")
        if phase == "canceled":
            return _detail(_CLIENT_CLOSED, "Request was cancelled", _CANCELED_TYPE)
        if phase == "failed":
            error_type = self._error_type()
            return _detail(
                422,
                self.state.scenario.failure_message,
                error_type,
                **{"X-Fal-Error-Type": error_type},
            )
        return JSONResponse({"video": self._video(job)})

    def _video(self, job: EmulatedJob) -> dict[str, Any]:
        duration_s, aspect_ratio, resolution = job.extra["shape"]
        seed = job.payload.get("seed")
        url = self.state.output_for(
            job,
            prompt=job.payload["prompt"],
            seed=seed if isinstance(seed, int) else None,
            duration_s=duration_s,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            audio=job.payload.get("generate_audio") is True,
        )
        size = len(self.state.output_data(job) or b"")
        return {
            "url": url,
            "content_type": "video/mp4",
            "file_name": "output.mp4",
            "file_size": size,
        }

    async def cancel(self, request: Request) -> Response:
        self.state.record(request, "cancel", request.path_params["request_id"])
        if (problem := _unauthorized(request)) is not None:
            return problem
        job = self._job(request)
        if job is None:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        if job.phase() in ("queued", "running"):
            job.canceled_at = time.time()
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)


def _wants_logs(request: Request) -> bool:
    return request.query_params.get("logs", "0").lower() in ("1", "true")


def _logs(job: EmulatedJob, now: float) -> list[dict[str, str]]:
    done = int(job.progress(now) * 100)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return [
        {"message": f"generating: {done}%", "level": "INFO", "source": "user", "timestamp": stamp}
    ]


def create_app(state: EmulatorState) -> Starlette:
    """The fal queue emulator: the apps in `MODELS` by their schema, any other app id too."""
    api = _Fal(state)
    prefix = "/{owner}/{alias}/requests/{request_id}"
    routes = [
        state.file_route(),
        Route(prefix + "/status/stream", api.stream, methods=["GET"]),
        Route(prefix + "/status", api.status, methods=["GET"]),
        Route(prefix + "/cancel", api.cancel, methods=["PUT"]),
        Route(prefix, api.result, methods=["GET"]),
        Route("/{model_id:path}", api.submit, methods=["POST"]),
    ]
    return Starlette(routes=routes)
